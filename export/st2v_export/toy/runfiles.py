"""The files of a toy training run directory: the checkpoint, the log and the metrics, written
atomically (a temporary file, then a rename) so a stop at any moment leaves the last good one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .task import TrainError

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = 1


def atomic_save(payload: dict, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json(data, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temporary, path)


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (a DIR or DIR/checkpoint.pt), checked for its format."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError(f"no training checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a toy training checkpoint (format {CHECKPOINT_FORMAT})")
    return payload
