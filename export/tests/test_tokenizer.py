"""The CLIP tokenizer files against tests/golden/tokenizer_golden.json, whose ids come from
open_clip.tokenize and transformers' CLIPTokenizer (generator: tests/golden/gen_tokenizer_golden.py)."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from conftest import REPO_ROOT, TINY_SET
from st2v_export import tokenizer

GOLDEN = json.loads((REPO_ROOT / "tests" / "golden" / "tokenizer_golden.json").read_text())


def _framed(ids: list[int]) -> list[int]:
    """The engine's framing: truncate to 77 keeping <|endoftext|> last, pad with id 0."""
    if len(ids) > tokenizer.MAX_LENGTH:
        ids = ids[: tokenizer.MAX_LENGTH - 1] + [tokenizer.EOS_ID]
    return ids + [tokenizer.PAD_ID] * (tokenizer.MAX_LENGTH - len(ids))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizers")
    tokenizer.write_tokenizers(out)
    return out


@pytest.mark.parametrize(
    ("file", "reference"),
    [(tokenizer.TOKENIZER_FILE, "open_clip"), (tokenizer.MODELSCOPE_TOKENIZER_FILE, "modelscope")],
)
@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda case: case["prompt"][:24])
def test_ids_match_the_reference_tokenizers(written, file, reference, case):
    loaded = Tokenizer.from_file(str(written / file))
    assert _framed(loaded.encode(case["prompt"]).ids) == case[reference]


def test_vocabulary_and_known_encoding(written):
    loaded = Tokenizer.from_file(str(written / tokenizer.TOKENIZER_FILE))
    assert loaded.get_vocab_size() == 49408
    assert loaded.encode("a photo of a cat").ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_modelscope_tokenizer_splits_the_pad_character():
    ids = tokenizer.build_tokenizer(pad_is_added_token=True).encode("wow!!!").ids
    merged = tokenizer.build_tokenizer().encode("wow!!!").ids
    assert ids[-4:] == [0, 0, 0, tokenizer.EOS_ID]
    assert tokenizer.PAD_ID not in merged


@pytest.mark.parametrize("file", [tokenizer.TOKENIZER_FILE, tokenizer.MODELSCOPE_TOKENIZER_FILE])
def test_committed_tiny_set_ships_the_same_tokenizers(written, file):
    assert json.loads((TINY_SET / file).read_text()) == json.loads((written / file).read_text())
