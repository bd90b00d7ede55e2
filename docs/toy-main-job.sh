#!/usr/bin/env bash
# Reproduces the README's strip of the main job: `st2v generate` on the default set (models/toy)
# with the README's prompt, every 4th of the 48 enhanced frames side by side.
# Usage: docs/toy-main-job.sh [OUT_PNG]   (run from the repository root after scripts/setup.sh)
set -euo pipefail
out=${1:-docs/toy-main-job.png}
st2v=${ST2V:-./target/release/st2v}
frames=$(mktemp -d -t st2v-frames-XXXXXX)
trap 'rm -rf "$frames"' EXIT
"$st2v" generate --prompt "a red circle moving right on a blue background" --frames 48 \
    --quiet --out "$frames/"
.venv/bin/python - "$frames" "$out" <<'PY'
import sys
from pathlib import Path
from PIL import Image

frames = sorted(Path(sys.argv[1]).glob("*.png"))[::4]
tiles = [Image.open(path).convert("RGB") for path in frames]
width, height = tiles[0].size
strip = Image.new("RGB", (width * len(tiles) + 2 * (len(tiles) - 1), height), "white")
for index, tile in enumerate(tiles):
    strip.paste(tile, (index * (width + 2), 0))
strip.save(sys.argv[2], optimize=True)
print(f"{len(tiles)} frames -> {sys.argv[2]}")
PY
