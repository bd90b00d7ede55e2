#!/usr/bin/env bash
# Stages 1 and 2 of the toy set on a GPU machine, for a session whose task is lent one
# (TRAINING.md, "On a GPU machine"): the scale the CPU runs lacked, in minutes.
#
# Here (the repo root; pip reaches PyPI), once:
#   export/experiments/gpu_train.sh pack RUNS STAGE1_RUN STAGE2_RUN
#     -> .gpu/: the pure-Python wheels the device image lacks (diffusers, open_clip_torch, ftfy,
#        wcwidth) and weights-only copies of RUNS/vae, RUNS/clip and the two runs the stages
#        start from (about 35 MB; `.gpu` is git-ignored, carry it).
# There (the `run` tool with carry [".gpu"]):
#   export/experiments/gpu_train.sh train STAGE1_SECONDS STAGE2_SECONDS
#     -> $OUT/runs/stage1 and $OUT/runs/stage2 (checkpoints, logs, held-out metrics), each run
#        sized to its seconds from a measured step rate; then, here, RUNS with them in place of
#        stage1/stage2 exports as usual (`toy export --runs`).
# BATCH (default 64 clips), WORKERS (12 rendering processes), DEVICE (cuda) and LR (5e-4)
# override the defaults; `DEVICE=cpu BATCH=2 WORKERS=1 ... train 20 20` is the dry run. PYTHON:
# the interpreter (pack: .venv/bin/python, the repo's; train: python3, the device's torch).
set -euo pipefail

here=.gpu
toy() { "$PYTHON" -m st2v_export.toy "$@"; }

weights_only() {  # RUN_DIR DEST_DIR: the checkpoint without its optimizer state (an --init)
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
from pathlib import Path
from st2v_export.toy.runfiles import atomic_save, read_checkpoint
payload = read_checkpoint(Path(sys.argv[1]))
payload["optimizer"] = None
Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
atomic_save(payload, Path(sys.argv[2]) / "checkpoint.pt")
EOF
}

pack() {
    local runs=$1 stage1=$2 stage2=$3
    PYTHON=${PYTHON:-.venv/bin/python}
    export PYTHONPATH=export
    mkdir -p "$here/whl"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d "$here/whl" \
        diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
    weights_only "$runs/vae" "$here/runs/vae"
    weights_only "$runs/clip" "$here/runs/clip"
    weights_only "$stage1" "$here/init/stage1"
    weights_only "$stage2" "$here/init/stage2"
    du -sh "$here"
}

steps_for() {  # MODEL SECONDS INIT RUNS: steps that fit SECONDS at the rate of 30 measured ones
    local probe
    probe=$(mktemp -d)
    toy train --model "$1" --steps 30 --log-every 10 --eval-every 0 --eval-frames 1 \
        --out "$probe/run" --init "$3" --runs "$4" --batch "$BATCH" --workers "$WORKERS" \
        --device "$DEVICE" >&2
    "$PYTHON" - "$probe/run/log.jsonl" "$2" <<'EOF'
import json, sys
rate = [json.loads(line) for line in open(sys.argv[1])][-1]["steps_per_s"]
print(max(10, int(rate * float(sys.argv[2]) * 0.9)))
EOF
    rm -rf "$probe"
}

stage() {  # MODEL SECONDS INIT RUNS
    local steps
    steps=$(steps_for "$1" "$2" "$3" "$4")
    echo "== $1: $steps steps of $BATCH clips on $DEVICE"
    toy train --model "$1" --steps "$steps" --out "$OUT/runs/$1" --init "$3" --runs "$4" \
        --batch "$BATCH" --workers "$WORKERS" --device "$DEVICE" --lr "$LR" \
        --log-every 50 --checkpoint-every 500 --eval-frames 8
}

train() {
    local stage1_seconds=$1 stage2_seconds=$2
    : "${OUT:?OUT must name the directory the runs go to}"
    BATCH=${BATCH:-64} WORKERS=${WORKERS:-12} DEVICE=${DEVICE:-cuda} LR=${LR:-5e-4}
    PYTHON=${PYTHON:-python3}
    if ! "$PYTHON" -c "import diffusers, open_clip" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target /tmp/site "$here"/whl/*.whl
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH=export:${PYTHONPATH:-} PYTHONUNBUFFERED=1
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    mkdir -p "$OUT/runs"
    stage stage1 "$stage1_seconds" "$here/init/stage1" "$here/runs"
    # Stage 2 reads its text encoder from RUNS/stage1: the stage-1 run just trained.
    ln -sfn "$(realpath "$here/runs/vae")" "$OUT/runs/vae"
    ln -sfn "$(realpath "$here/runs/clip")" "$OUT/runs/clip"
    stage stage2 "$stage2_seconds" "$here/init/stage2" "$OUT/runs"
    rm "$OUT/runs/vae" "$OUT/runs/clip"  # links do not travel back
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    train) shift; train "$@" ;;
    *) echo "usage: $0 pack RUNS STAGE1_RUN STAGE2_RUN | train STAGE1_SECONDS STAGE2_SECONDS" >&2
       exit 2 ;;
esac
