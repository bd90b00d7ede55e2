#!/usr/bin/env bash
# Reproduces the README's `st2v eval` sample: a toy-world clip (export/st2v_export/toy), the same
# clip with a 10-frame jump into frame 24 (a chunk boundary), both scored side by side.
# Usage: docs/eval-sample.sh [OUT_DIR]   (run from the repository root after scripts/setup.sh --dev)
set -euo pipefail
out=${1:-$(mktemp -d)}
caption="a small red circle moving right on a blue background"
PYTHONPATH=export .venv/bin/python -m st2v_export.toy render --caption "$caption" --frames 58 --out "$out/src"
mkdir -p "$out/smooth" "$out/jump"
frames=("$out"/src/*.png)
for i in $(seq 0 47); do
    name=$(printf "%05d.png" "$i")
    cp "${frames[$i]}" "$out/smooth/$name"
    source=$(( i < 24 ? i : i + 10 ))
    cp "${frames[$source]}" "$out/jump/$name"
done
./target/release/st2v eval "$out/smooth" "$out/jump" --prompt "$caption" --models models/tiny \
    --json "$out/eval.json" --plot "$out/eval.svg" --quiet --force
echo "report: $out/eval.json, plot: $out/eval.svg"
