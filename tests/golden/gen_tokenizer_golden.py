"""Generates tokenizer_golden.json: CLIP token ids of test prompts, padded/truncated to 77, from
the two reference tokenizers StreamingT2V uses:

* `modelscope`: transformers' CLIPTokenizer loaded from a directory (vocab.json + merges.txt built
  from open_clip's BPE vocabulary), padding "!" (id 0), max_length 77, truncation — the
  ModelScope text-to-video pipeline's settings (stages 1 and 2);
* `open_clip`: `open_clip.tokenize` (zero padding; truncation keeps <|endoftext|> last) — the
  enhancer's FrozenOpenCLIPEmbedder (stage 3).

Run: cd /work/main && .venv/bin/python tests/golden/gen_tokenizer_golden.py
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
from pathlib import Path

import open_clip
from transformers import CLIPTokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "export"))
from st2v_export.tokenizer import (  # noqa: E402
    BOS,
    EOS,
    MAX_LENGTH,
    build_vocab,
    bytes_to_unicode,
    default_vocab_path,
    read_merges,
)

PROMPTS = [
    "a photo of a cat",
    "A RED Car, driving fast!!!",
    "it's 3:45 p.m. -- isn't it? (yes; really)",
    "  multiple   spaces\tand\nnewlines  ",
    "café naïve Straße 東京 🚀",
    "",
    "a cat, ",
    "Fireworks over the city at night, 4k, cinematic lighting, trending on artstation",
    " ".join(["an astronaut riding a horse on the moon"] * 12),
]


def write_hf_tokenizer_dir(directory: Path) -> None:
    merges = read_merges(default_vocab_path())
    vocab = build_vocab(merges)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [" ".join(merge) for merge in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n")
    config = {
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": "!",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps(config))


def main() -> None:
    assert len(bytes_to_unicode()) == 256
    with tempfile.TemporaryDirectory() as scratch:
        write_hf_tokenizer_dir(Path(scratch))
        hf = CLIPTokenizer.from_pretrained(scratch)
        cases = []
        for prompt in PROMPTS:
            modelscope = hf(prompt, padding="max_length", max_length=MAX_LENGTH, truncation=True)
            cases.append(
                {
                    "prompt": prompt,
                    "modelscope": modelscope["input_ids"],
                    "open_clip": [int(i) for i in open_clip.tokenize([prompt])[0]],
                }
            )
    golden = {
        "_generator": "tests/golden/gen_tokenizer_golden.py",
        "max_length": MAX_LENGTH,
        "pad_id": 0,
        "bos_id": 49406,
        "eos_id": 49407,
        "vocab_source": f"open_clip_torch {open_clip.__version__} bpe_simple_vocab_16e6.txt.gz",
        "cases": cases,
    }
    out = HERE / "tokenizer_golden.json"
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
