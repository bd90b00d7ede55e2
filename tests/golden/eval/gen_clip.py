"""Golden values of `st2v eval`'s CLIP score on the tiny model set, computed the reference way:
OpenCLIP's tokenizer (`open_clip.tokenize`), the tiny set's `clip_text_encoder` and
`image_encoder` graphs through onnxruntime, unit-normalised embeddings, 100 x cosine per frame.

Writes a short procedural video as PNG frames (lossless: Rust reads the same pixels) and the
expected scores. Run from the repository root:

    .venv/bin/python tests/golden/eval/gen_clip.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import open_clip
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
TINY = ROOT / "models" / "tiny"
OUT = Path(__file__).resolve().parent
VIDEO = OUT / "clip_video"
PROMPTS = ["a yellow square moving right on a blue background", "rain"]
FRAMES = 6
SIZE = 64


def frame(index: int) -> np.ndarray:
    """A gradient background with a square moving 3 px per frame (uint8 HWC)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([(x * 3 + index * 5) % 200, (y * 2) % 180, (x + y) % 160 + 60], axis=-1)
    image[20:32, 6 + 3 * index : 18 + 3 * index] = (250, 240, 40)
    return image.astype(np.uint8)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def main() -> None:
    manifest = json.loads((TINY / "manifest.json").read_text())
    session = lambda role: ort.InferenceSession(  # noqa: E731
        str(TINY / manifest["graphs"][role]["file"]), providers=["CPUExecutionProvider"]
    )
    VIDEO.mkdir(exist_ok=True)
    frames = [frame(i) for i in range(FRAMES)]
    for i, image in enumerate(frames):
        Image.fromarray(image).save(VIDEO / f"{i:05d}.png")
    images = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2) / 255.0 * 2.0 - 1.0
    image_embeds = unit(session("image_encoder").run(None, {"images": images})[0])
    texts = {}
    for prompt in PROMPTS:
        ids = open_clip.tokenize([prompt]).numpy().astype(np.int64)
        text = unit(session("clip_text_encoder").run(None, {"input_ids": ids})[0])[0]
        per_frame = (100.0 * image_embeds @ text).astype(np.float64)
        texts[prompt] = {
            "ids_head": ids[0, :12].tolist(),
            "per_frame": [round(float(v), 7) for v in per_frame],
            "score": round(float(per_frame.mean()), 7),
        }
    golden = {
        "made_by": "tests/golden/eval/gen_clip.py",
        "open_clip": open_clip.__version__,
        "onnxruntime": ort.__version__,
        "clip_text_encoder_sha256": manifest["graphs"]["clip_text_encoder"]["sha256"],
        "image_encoder_sha256": manifest["graphs"]["image_encoder"]["sha256"],
        "frames": FRAMES,
        "prompts": texts,
    }
    (OUT / "clip.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(json.dumps(golden, indent=1))


if __name__ == "__main__":
    main()
