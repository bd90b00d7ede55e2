"""Generates tokenizer_golden.json: CLIP token ids of test prompts from the two reference tokenizers
StreamingT2V uses:

* `modelscope`: transformers' CLIPTokenizer as the ModelScope text-to-video pipeline loads it
  (stages 1 and 2): the Python ("slow") tokenizer of transformers 4.x with ftfy installed, as in
  the reference environment, over the open_clip BPE vocabulary, padding "!" (id 0), max_length 77,
  truncation. transformers 5 dropped that tokenizer (its CLIPTokenizer no longer calls ftfy), so
  `Transformers4ClipTokenizer` below re-states what it does: split the raw prompt on the added
  tokens (<|startoftext|>, <|endoftext|> and the pad token "!"), then for each piece
  `ftfy.fix_text`, whitespace squeeze, lower-case, the CLIP word regex (which matches a literal
  <|startoftext|> / <|endoftext|> as the special token) and the BPE (the installed
  transformers CLIPTokenizer's, same vocabulary and merges). It was checked
  against transformers 4.46.3's CLIPTokenizer on every prompt below (zero differences).
* `open_clip`: `open_clip.tokenize` (ftfy.fix_text, html.unescape twice, whitespace squeeze,
  lower-case; zero padding; truncation keeps <|endoftext|> last) -- the enhancer's
  FrozenOpenCLIPEmbedder (stage 3). Its special tokens are named <start_of_text> / <end_of_text>,
  so a literal <|startoftext|> in a prompt is ordinary text there.

Two lists of cases:

* `cases`: a few hand-written prompts with all 77 ids (export/tests/test_tokenizer.py also reads
  them against the bare tokenizer.json files, which do no ftfy cleanup);
* `generated`: a few hundred seeded prompts by class (unicode categories, emoji sequences, HTML
  entities, control characters, mojibake, width/ligatures/quotes, mixed scripts, special-token
  literals, lengths), each stored compactly: the ids up to and including <|endoftext|> (the rest is
  padding with id 0), `modelscope` omitted where it equals `open_clip`.

Run: cd /work/main && .venv/bin/python tests/golden/gen_tokenizer_golden.py
A wider check, not committed: `... gen_tokenizer_golden.py --seed 7 --scale 10 --out /tmp/big.json`,
then `ST2V_TOKENIZER_GOLDEN=/tmp/big.json cargo test --lib tokenizer::golden`.
"""

from __future__ import annotations

import argparse
import html.entities
import json
import random
import sys
import tempfile
import unicodedata
from pathlib import Path

import ftfy
import open_clip
import regex
from transformers import CLIPTokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "export"))
from st2v_export.tokenizer import (  # noqa: E402
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    MAX_LENGTH,
    PAD,
    PAD_ID,
    build_vocab,
    bytes_to_unicode,
    default_vocab_path,
    read_merges,
)

SEED = 20240611
# More prompts per class (--scale) for a wider check than the committed fixture.
SCALE = 1

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
    """vocab.json + merges.txt + config for transformers' CLIPTokenizer (used by gen_stage1_parity)."""
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
        "pad_token": PAD,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps(config))


# --------------------------------------------------------------------------------------------
# The references


def framed(tokens: list[int]) -> list[int]:
    ids = [BOS_ID] + tokens[: MAX_LENGTH - 2] + [EOS_ID]
    return ids + [PAD_ID] * (MAX_LENGTH - len(ids))


class Transformers4ClipTokenizer:
    """transformers 4.x's Python CLIPTokenizer with ftfy installed, configured as ModelScope's
    (bos <|startoftext|>, eos = unk <|endoftext|>, pad "!"); the BPE of each word is the installed
    transformers CLIPTokenizer's (same vocabulary and merges)."""

    ADDED = regex.compile(r"(<\|startoftext\|>|<\|endoftext\|>|!)")
    WORDS = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )

    def __init__(self, hf: CLIPTokenizer) -> None:
        self.bpe = hf.backend_tokenizer.model
        self.byte_encoder = bytes_to_unicode()
        self.special = {BOS: BOS_ID, EOS: EOS_ID, PAD: PAD_ID}

    def _tokenize(self, text: str) -> list[int]:
        text = regex.sub(r"\s+", " ", ftfy.fix_text(text)).strip().lower()
        ids = []
        for word in self.WORDS.findall(text):
            if word in (BOS, EOS):
                ids.append(self.special[word])
                continue
            word = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(token.id for token in self.bpe.tokenize(word))
        return ids

    def __call__(self, text: str) -> list[int]:
        ids = []
        for piece in self.ADDED.split(text):
            if piece in self.special:
                ids.append(self.special[piece])
            elif piece:
                ids.extend(self._tokenize(piece))
        return framed(ids)


def open_clip_ids(text: str) -> list[int]:
    return [int(i) for i in open_clip.tokenize([text])[0]]


# --------------------------------------------------------------------------------------------
# Generated prompts

WORDS = (
    "a cat dog bird running jumping on the street at night sunset over mountains river city lights "
    "cinematic 4k photo of an astronaut riding horse moon beach waves forest rain snow slow motion "
    "drone shot portrait close-up golden hour neon futuristic old man woman child playing guitar"
).split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def category_pools() -> dict[str, list[str]]:
    """Assigned code points (in this Python's Unicode version) by general category."""
    pools: dict[str, list[str]] = {}
    for code in range(0x110000):
        category = unicodedata.category(chr(code))
        if category in ("Cn", "Cs"):
            continue
        pools.setdefault(category, []).append(chr(code))
    return pools


def gen_unicode_categories(rng: random.Random, pools: dict[str, list[str]]) -> list[str]:
    out = []
    categories = sorted(pools)
    for i in range(64 * SCALE):
        picked = [categories[i % len(categories)]] + rng.sample(categories, 2)
        pieces = [words(rng, rng.randint(0, 3))]
        for category in picked:
            run = "".join(rng.choice(pools[category]) for _ in range(rng.randint(1, 4)))
            pieces.append(run)
            if rng.random() < 0.5:
                pieces.append(words(rng, 1))
        glue = " " if rng.random() < 0.6 else ""
        out.append(glue.join(pieces))
    return out


EMOJI = [
    "😀", "🚀", "🐱", "🌊", "🔥", "❤️", "♥", "☺︎", "☺️", "👍🏽", "👋🏿", "🧑🏻‍🚀", "👩‍💻",
    "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "🇺🇸", "🇯🇵", "🇪🇺", "1️⃣", "#️⃣", "*️⃣",
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", "🫠", "🦄", "🌈", "✨",
    "©️", "™", "🆗", "🅰️", "⌚", "⭐", "🤷‍♀️", "🙇🏼‍♂️", "👁️‍🗨️", "❤️‍🔥", "🐕‍🦺",
]


def gen_emoji(rng: random.Random) -> list[str]:
    out = []
    for _ in range(36 * SCALE):
        parts = []
        for _ in range(rng.randint(1, 4)):
            emoji = rng.choice(EMOJI) * rng.choice([1, 1, 1, 2, 3])
            parts.append(emoji if rng.random() < 0.5 else emoji + words(rng, 1))
            parts.append(words(rng, rng.randint(0, 2)))
        out.append((" " if rng.random() < 0.7 else "").join(parts))
    return out


LEGACY_NAMES = sorted(name for name in html.entities.html5 if not name.endswith(";"))
NAMED = sorted(name for name in html.entities.html5 if name.endswith(";"))
ENTITY_EXTRAS = [
    "&EACUTE;", "&NTILDE;", "&nTILDE;", "&SZLIG;", "&AMP;", "&LT;", "&COPY;", "&Eacute;",
    "&#0;", "&#1;", "&#9;", "&#13;", "&#65;", "&#128;", "&#x80;", "&#x9F;", "&#x81;", "&#150;",
    "&#xD800;", "&#xdfff;", "&#x110000;", "&#99999999999999;", "&#x1F600;", "&#X41;", "&#65",
    "&#x41", "&#xZZ;", "&#;", "&#x;", "&;", "& amp;", "&unknown;", "&notit;", "&notin;",
    "&ampfoo", "&amp;amp;", "&amp;lt;", "&amp;amp;eacute;", "&lt;b&gt;", "&nbsp;", "&nbsp",
    "&copy2024", "&frac12;", "&fjlig;", "&NotEqualTilde;", "&ThickSpace;", "&zwj;", "&shy;",
    "&abcdefghijklmnopqrstuvwxyzabcdefghij;", "&#x0000041;", "&#0000065;", "&#xFFFE;", "&#xFDD0;",
    "&#x1F;", "&#x7F;", "&#11;", "&#x2028;", "&#x85;", "&quot", "&QUOT;", "&apos;", "&APOS;",
]


def gen_html_entities(rng: random.Random) -> list[str]:
    out = []
    for i in range(48 * SCALE):
        parts = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.35:
                entity = "&" + rng.choice(NAMED)
            elif kind < 0.5:
                entity = "&" + rng.choice(LEGACY_NAMES) + rng.choice(["", "x", "it", " "])
            else:
                entity = rng.choice(ENTITY_EXTRAS)
            parts.append(entity if rng.random() < 0.5 else words(rng, 1) + entity)
            parts.append(words(rng, rng.randint(0, 2)))
        prompt = " ".join(parts)
        if i % 8 == 0:
            prompt = "a < b and " + prompt
        elif i % 8 == 1:
            prompt = prompt + "\nline two &amp; <tag> &eacute;"
        elif i % 8 == 2:
            prompt = "x<y\n" + prompt
        out.append(prompt)
    return out


CONTROLS = (
    [chr(c) for c in range(0x00, 0x20)]
    + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
    + ["\u00ad", "\u061c", "\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2028",
       "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2060", "\u2061", "\u2066",
       "\u2067", "\u2068", "\u2069", "\u206a", "\u206b", "\u206f", "\ufeff", "\ufff9", "\ufffa",
       "\ufffb", "\ufffc", "\ufffd", "\U000e0001", "\U000e0020", "\U000e0041", "\U000e007f",
       "\U0001d173", "\r\n", "\x1b[31m", "\x1b[1;32;44m", "\x1b[0m", "\x1b[2J", "\x1b]0;title\x07",
       "\u3000", "\u00a0", "\u2003", "\u202f", "\u1680"]
)


def gen_control(rng: random.Random) -> list[str]:
    out = []
    for i in range(40 * SCALE):
        parts = []
        for _ in range(rng.randint(2, 6)):
            parts.append(words(rng, rng.randint(0, 2)))
            parts.append("".join(rng.choice(CONTROLS) for _ in range(rng.randint(1, 3))))
        out.append(("" if i % 3 else " ").join(parts))
    out += ["\x00", "\u200b\u200b", "\ufeff\ufeff", "\x1b[0m", "\x85", "\r\n\r\n", "\x80\x81\x9f",
            "a \x88 b \x1a c", "\x93quoted\x94 \x1a\x81"]
    return out


SOURCES = [
    "café crème brûlée à la mode",
    "voilà le travail, à bientôt",
    "Straße über Größe — schön",
    "“quoted” and ‘single’ … ellipsis",
    "price: 5 € or £4 — 10% off™",
    "niño español año señor",
    "às vezes àquele lugar",
    "Zażółć gęślą jaźń",
    "příliš žluťoučký kůň",
    "İstanbul’da güzel bir gün",
    "Привет, мир — кот на улице",
    "Καλημέρα κόσμε",
    "東京の夜景 🚀 ネオン",
    "emoji 😀🐱 party 🎉",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "naïve façade déjà vu",
    "½ cup • 2×3 ± 1°",
    "ÀÉÎÕÜ ÇÑ",
    "l’humanité de l’été",
]


def sloppy(encoding: str):
    codec = f"sloppy-{encoding}" if encoding.startswith("windows") else encoding
    return lambda data: data.decode(codec)


def lossy_1252(data: bytes) -> str:
    return data.decode("windows-1252", errors="replace")


def cesu8(text: str) -> bytes:
    out = bytearray()
    for char in text:
        if ord(char) > 0xFFFF:
            for unit in char.encode("utf-16-be").hex(" ", 2).split():
                out += chr(int(unit, 16)).encode("utf-8", "surrogatepass")
        else:
            out += char.encode("utf-8")
    return bytes(out)


def gen_mojibake(rng: random.Random, pools: dict[str, list[str]]) -> list[str]:
    decoders = [
        sloppy("windows-1252"), sloppy("windows-1252"), lambda b: b.decode("latin-1"),
        sloppy("windows-1251"), sloppy("windows-1250"), sloppy("windows-1253"),
        sloppy("windows-1254"), sloppy("windows-1257"), lambda b: b.decode("iso-8859-2"),
        lambda b: b.decode("macroman"), lambda b: b.decode("cp437"), lossy_1252,
    ]
    out = []
    for i, source in enumerate(SOURCES * SCALE):
        for _ in range(2):
            decode = rng.choice(decoders)
            try:
                out.append(decode(source.encode("utf-8")))
            except UnicodeDecodeError:
                out.append(lossy_1252(source.encode("utf-8")))
        bake = sloppy("windows-1252")(source.encode("utf-8"))
        variant = i % 5
        if variant == 0:  # U+A0 lost to a space
            out.append(bake.replace("\xa0", " "))
        elif variant == 1:  # twice
            out.append(sloppy("windows-1252")(bake.encode("utf-8")))
        elif variant == 2:  # embedded in correct text
            out.append(f"{rng.choice(SOURCES)} / {bake} / {words(rng, 2)}")
        elif variant == 3:  # upper-cased after the damage
            out.append(bake.upper())
        else:  # curly quotes added on top
            out.append(bake.replace("'", "’") + " it's “fine”")
    # Random non-ASCII text, all or part of it through a random wrong decoding.
    categories = ["Ll", "Lu", "Lo", "So", "Po", "Sc", "Sm", "Nd", "Mn"]
    for _ in range(12 * SCALE):
        text = " ".join(
            words(rng, 1) + "".join(rng.choice(pools[rng.choice(categories)]) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 4))
        )
        start = rng.randint(0, len(text) - 1)
        end = rng.randint(start + 1, len(text))
        decode = rng.choice(decoders)
        try:
            middle = decode(text[start:end].encode("utf-8"))
        except UnicodeDecodeError:
            middle = lossy_1252(text[start:end].encode("utf-8"))
        out.append(text[:start] + middle + text[end:])
    out += [
        sloppy("windows-1252")(cesu8("a cat 😀 on the moon 🚀")),
        (cesu8("java 😀") + b" \xc0\x80 null").decode("latin-1"),
        "Ã la mode, fÃ cil, Ã s vezes",
        "â€œ like this â€\ufffd",
        "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.",
        "Ã\xa0 perturber la rÃ©flexion",
        "ÃºnicamÃ©ntÃ© Ã±",
        "â€\x9d quote and â€\x9c",
        "Â¡Hola! Â¿QuÃ© tal?",
        "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
        "×² and ¾",
        "√±≠ and ‚Äôs",
        "вЂ™ and вЂњ",
        "Ã©?Ã?",
    ]
    return out


def gen_width_quotes(rng: random.Random) -> list[str]:
    fixed = [
        "ＬＯＵＤ　ＮＯＩＳＥＳ！！",
        "Ｕﾀｰﾝ ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ",
        "ﾍﾝｶｸ ﾎﾟｯﾌﾟ ｺｰﾝ",
        "ﾡﾢﾣ ￦￥￡￠ ￩￪￫￬ ￭￮ ｟ｘ｠",
        "ﬂuﬃeﬆ ﬁne ﬀ ﬄ ﬅ Ĳssel ĳs ŉ",
        "Ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ Ǳ ǲ ǳ ǅ ǆ",
        "“curly” ‘quotes’ „low“ ‚low‘ ‛rev‟ ʼapostrophe",
        "it’s can’t we’re they’ve I’m you’ll he’d",
        "it‘S IT’S ITʼLL",
        "′prime″ ‹angle› «guillemets»",
        "１２３ ＡＢＣ ａｂｃ ［ｘ］",
        "℃ ℉ ™ ℠ № Ⅻ ⅻ ① ⑩ ㍿ ㎏",
        "x² y³ ½ ¼ ¾ ⁵ ₂",
    ]
    out = list(fixed)
    pool = "".join(fixed)
    for _ in range(12 * SCALE):
        out.append(words(rng, 2) + " " + "".join(rng.choice(pool) for _ in range(rng.randint(3, 10))))
    return out


SCRIPT_SAMPLES = [
    "résumé", "re\u0301sume\u0301", "ΟΔΟΣ", "ΣΊΣΥΦΟΣ", "Σ", "ὈΔΥΣΣΕΎΣ", "İSTANBUL", "ıi",
    "STRASSE", "straße", "ẞ", "ﬅ", "ſtraſſe", "'ſ", "it'ſ", "МОСКВА", "Ꙋ", "ԱՐԱՐԱՏ", "ᲛᲐᲠᲢᲘ",
    "ᎠᎴᏅ", "𐐀𐐁", "𞤀𞤁", "שלום", "مَرْحَبًا", "क़लम", "क\u093cलम", "ত\u09bc", "ไทย", "한국어",
    "\u1100\u1161\u11a8", "か\u3099", "が", "日本語", "中文", "𠀀𠀁", "ệ", "e\u0323\u0302", "Å",
    "A\u030a", "Ω", "K", "µ", "𝐀𝐁𝐂", "Ⓐⓑ", "ǅ", "ᾼ", "ΐ", "ŉ", "Ǆ", "Ꭰ", "ꭰ", "ℌ", "ǰ",
    "\u0345", "ʼ", "Ⅻ", "ↀ", "١٢٣", "߀", "𝟘", "𑁦", "🄰", "ᵃ", "ʰ", "ꟸ",
]


def gen_mixed_scripts(rng: random.Random) -> list[str]:
    out = []
    for _ in range(34 * SCALE):
        parts = [rng.choice(SCRIPT_SAMPLES) for _ in range(rng.randint(2, 5))]
        parts.insert(rng.randint(0, len(parts)), words(rng, rng.randint(1, 3)))
        out.append((" " if rng.random() < 0.7 else "").join(parts))
    return out


SPECIAL_TOKENS = [
    "<|startoftext|>", "<|endoftext|>", "<start_of_text>", "<end_of_text>", "<|STARTOFTEXT|>",
    "<|EndOfText|>", "<START_OF_TEXT>", "&lt;|endoftext|&gt;", "＜|endoftext|＞", "<|endoftext|",
    "<| endoftext |>", "<<|endoftext|>>", "<ſtart_of_text>",
]


def gen_special_tokens(rng: random.Random) -> list[str]:
    out = [
        "<|startoftext|>",
        "<|endoftext|>",
        "a cat <|endoftext|> a dog",
        "a cat<|endoftext|>dog",
        "?<|endoftext|> and !<|startoftext|>",
        "!<|STARTOFTEXT|> ?<|STARTOFTEXT|> x<|STARTOFTEXT|>",
        "<start_of_text> a cat <end_of_text>",
        "?<end_of_text> 's<end_of_text> 1<end_of_text>",
        "<|startoftext|><|endoftext|><|startoftext|>",
        "wow!!! <|endoftext|>!!!",
    ]
    for _ in range(18 * SCALE):
        parts = []
        for _ in range(rng.randint(1, 3)):
            parts.append(rng.choice(["", "", "?", "!", "x", "'s", "1", "(", "-"]) + rng.choice(SPECIAL_TOKENS))
            parts.append(words(rng, rng.randint(0, 2)))
        out.append((" " if rng.random() < 0.6 else "").join(parts))
    return out


def gen_lengths(rng: random.Random) -> list[str]:
    return [
        "",
        " ",
        "\t\n \r\n",
        "\u200b\ufeff\x00",
        "&nbsp;&nbsp;",
        "!",
        "!!!!!!!!",
        "！！！",
        "¡!¿?",
        words(rng, 80),
        words(rng, 400),
        "a" * 500,
        "supercalifragilisticexpialidocious" * 12,
        "1234567890" * 12,
        "🚀" * 100,
        "東京" * 60,
        " ".join(rng.choice(SOURCES) for _ in range(30)),
        ", ".join(words(rng, 3) for _ in range(40)) + "!",
    ]


def generated_prompts(seed: int = SEED) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pools = category_pools()
    classes = [
        ("unicode_categories", gen_unicode_categories(rng, pools)),
        ("emoji", gen_emoji(rng)),
        ("html_entities", gen_html_entities(rng)),
        ("control", gen_control(rng)),
        ("mojibake", gen_mojibake(rng, pools)),
        ("width_ligatures_quotes", gen_width_quotes(rng)),
        ("mixed_scripts", gen_mixed_scripts(rng)),
        ("special_tokens", gen_special_tokens(rng)),
        ("length", gen_lengths(rng)),
    ]
    return [(name, prompt) for name, prompts in classes for prompt in prompts]


# --------------------------------------------------------------------------------------------


def compact(ids: list[int]) -> list[int]:
    """The ids up to and including the last <|endoftext|>; the rest is padding."""
    end = len(ids) - ids[::-1].index(EOS_ID)
    assert all(i == PAD_ID for i in ids[end:]), ids
    return ids[:end]


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--scale", type=int, default=1, help="random prompts per class, times")
    parser.add_argument("--out", type=Path, default=HERE / "tokenizer_golden.json")
    args = parser.parse_args()
    SCALE = args.scale
    assert len(bytes_to_unicode()) == 256
    with tempfile.TemporaryDirectory() as scratch:
        write_hf_tokenizer_dir(Path(scratch))
        modelscope = Transformers4ClipTokenizer(CLIPTokenizer.from_pretrained(scratch))
    cases = [
        {"prompt": prompt, "modelscope": modelscope(prompt), "open_clip": open_clip_ids(prompt)}
        for prompt in PROMPTS
    ]
    generated = []
    for name, prompt in generated_prompts(args.seed):
        case = {"class": name, "prompt": prompt, "open_clip": compact(open_clip_ids(prompt))}
        ms = compact(modelscope(prompt))
        if ms != case["open_clip"]:
            case["modelscope"] = ms
        generated.append(case)
    golden = {
        "_generator": "tests/golden/gen_tokenizer_golden.py",
        "max_length": MAX_LENGTH,
        "pad_id": PAD_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "vocab_source": f"open_clip_torch {open_clip.__version__} bpe_simple_vocab_16e6.txt.gz",
        "references": {
            "open_clip": f"open_clip.tokenize (open_clip_torch {open_clip.__version__})",
            "modelscope": "transformers 4.x CLIPTokenizer (Python) with ftfy, pad '!'",
            "ftfy": ftfy.__version__,
            "unicode": unicodedata.unidata_version,
        },
        "generated_format": "ids up to <|endoftext|>, padded with pad_id to max_length; "
        "modelscope absent = same as open_clip",
        "cases": cases,
        "generated": generated,
    }
    out = args.out
    out.write_text(dump(golden))
    print(f"wrote {len(cases)} + {len(generated)} cases to {out} ({out.stat().st_size} bytes)")


def dump(golden: dict) -> str:
    """One case per line: small and diffable."""
    head = {k: v for k, v in golden.items() if k not in ("cases", "generated")}
    lines = json.dumps(head, indent=1, ensure_ascii=False)[:-2].split("\n")
    for key in ("cases", "generated"):
        rows = [json.dumps(case, ensure_ascii=False) for case in golden[key]]
        lines[-1] += ","
        lines.append(f' "{key}": [')
        lines.append(",\n".join("  " + row for row in rows))
        lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
