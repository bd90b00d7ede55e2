"""Golden values of `st2v eval --flow raft` on the tiny model set: mawe.py's computation with
the PyTorch RAFT the tiny set's `raft` graph was exported from (rebuilt from the recorded seed),
so the test covers the graph, the resize, the normalisation, the warp and the ratios together.

As mawe.py: frames resized to the RAFT size with torchvision (bilinear, antialias=False), the
weights' transforms (uint8 -> [0, 1] -> normalise 0.5/0.5), the last of 12 flow updates, the
forward warp and error of gen_mawe.py's reference functions. Frames: tests/golden/eval/clip_video
(written by gen_clip.py). Run from the repository root:

    .venv/bin/python tests/golden/eval/gen_mawe_raft.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "export"))
sys.path.insert(0, str(HERE))

from gen_mawe import reference_pair_terms, reference_ratios, sig  # noqa: E402
from st2v_export.components import Components  # noqa: E402
from st2v_export.modules.raft import RaftFlow, raft_config  # noqa: E402
from st2v_export.presets import TINY  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    manifest = json.loads((ROOT / "models" / "tiny" / "manifest.json").read_text())
    seed = manifest["provenance"]["seed"]
    model = RaftFlow(Components(TINY, seed, weights=None).raft).eval()
    size = raft_config(TINY.enhancer).size
    files = sorted((HERE / "clip_video").glob("*.png"))
    frames = [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    resized = [TF.resize(f, [size, size], antialias=False) for f in frames]
    normalised = [TF.normalize(TF.convert_image_dtype(f, torch.float), [0.5] * 3, [0.5] * 3) for f in resized]
    pairs = []
    with torch.no_grad():
        for i in range(len(frames) - 1):
            flow = model(normalised[i][None], normalised[i + 1][None])[0].numpy()
            error, mean_flow, known, _ = reference_pair_terms(resized[i][None], resized[i + 1][None].to(torch.float32), flow)
            pairs.append({"warp_error": sig(error), "mean_flow": sig(mean_flow), "known_pixels": known})
    ratios, mawe = reference_ratios([p["warp_error"] for p in pairs], [p["mean_flow"] for p in pairs])
    for pair, ratio in zip(pairs, ratios, strict=True):
        pair["ratio"] = ratio
    golden = {
        "made_by": "tests/golden/eval/gen_mawe_raft.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "raft_sha256": manifest["graphs"]["raft"]["sha256"],
        "size": size,
        "frames": len(frames),
        "pairs": pairs,
        "mawe": mawe,
    }
    (HERE / "mawe_raft.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(json.dumps(golden, indent=1))


if __name__ == "__main__":
    main()
