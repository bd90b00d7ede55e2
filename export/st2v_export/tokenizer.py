"""The CLIP BPE tokenizer as a `tokenizer.json` for the engine (tokenizers-rs).

Built from the vocabulary that ships in the open_clip_torch wheel
(`open_clip/bpe_simple_vocab_16e6.txt.gz`), reproducing OpenAI CLIP's SimpleTokenizer and
transformers' CLIPTokenizer: NFC + whitespace squeeze + lower-case, the CLIP word regex,
byte-level BPE with the `</w>` end-of-word suffix, and <|startoftext|> ... <|endoftext|>.
Padding (id 0, "!") and truncation to 77 are applied by the engine from the manifest.

Two files: `tokenizer.json` is open_clip's tokenizer (the enhancer's); `tokenizer_modelscope.json`
is transformers' CLIPTokenizer as ModelScope configures it, whose pad token "!" is an added token:
every "!" in a prompt becomes its own id 0 instead of merging ("!!!" -> 0 0 0, not 995).
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
BOS_ID = 49406
EOS_ID = 49407
PAD_ID = 0
PAD = "!"
MAX_LENGTH = 77
VOCAB_SIZE = 49408
TOKENIZER_FILE = "tokenizer.json"
MODELSCOPE_TOKENIZER_FILE = "tokenizer_modelscope.json"
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The gz file lists merges after a header line; CLIP uses the first 49152 - 256 - 2 of them.
MERGE_COUNT = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def default_vocab_path() -> Path:
    return Path(str(resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"))


def read_merges(vocab_path: Path) -> list[tuple[str, str]]:
    lines = gzip.open(vocab_path, "rt", encoding="utf-8").read().split("\n")
    return [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    characters = list(bytes_to_unicode().values())
    tokens = characters + [c + "</w>" for c in characters] + ["".join(m) for m in merges]
    tokens += [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(vocab_path: Path | None = None, pad_is_added_token: bool = False) -> Tokenizer:
    merges = read_merges(vocab_path or default_vocab_path())
    vocab = build_vocab(merges)
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=EOS,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)]
    )
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tokenizer.add_special_tokens([BOS, EOS])
    if pad_is_added_token:
        tokenizer.add_special_tokens([AddedToken(PAD, special=True, normalized=False)])
    return tokenizer


def write_tokenizers(out_dir: Path, vocab_path: Path | None = None) -> None:
    build_tokenizer(vocab_path).save(str(out_dir / TOKENIZER_FILE), pretty=False)
    modelscope = build_tokenizer(vocab_path, pad_is_added_token=True)
    modelscope.save(str(out_dir / MODELSCOPE_TOKENIZER_FILE), pretty=False)


def manifest_entry(file: str) -> dict:
    """ModelScope's CLIPTokenizer pads with "!" (id 0); open_clip pads with 0: the same id."""
    return {
        "file": file,
        "max_length": MAX_LENGTH,
        "pad_id": PAD_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
    }
