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


def run_record(run_dir: Path) -> dict | None:
    """`record_of` the run in a directory (None without one)."""
    try:
        payload = read_checkpoint(run_dir)
    except ValueError:
        return None
    return record_of(payload, run_dir)


def record_of(payload: dict, run: Path) -> dict:
    """Step, seed, batch, learning rate, the share of edge-crossing clips when not 0 (stage 2's
    `--crossing-share`), whether the CAM saw decoded frames when it did (`--decoded-conditions`),
    the binding loss's weight when not 0 (stage 1's `--binding-weight`), the share of drafts
    restored when not 0 (the enhancer's `--draft-share`),
    the run it started from (`--init`), that run's own
    ancestors (`ancestry`, nearest first) and the last held-out metrics of the run whose
    checkpoint is `payload` (`run`: its directory or its checkpoint file)."""
    run_dir = Path(run)
    if run_dir.is_file():
        run_dir = run_dir.parent
    config = payload["config"]
    record = {
        "step": payload["step"],
        "seed": config["seed"],
        "batch": config["batch"],
        "peak_lr": config["peak_lr"],
        "init": config.get("init"),
    }
    if config.get("crossing_share"):
        record["crossing_share"] = config["crossing_share"]
    if config.get("decoded_conditions"):
        record["decoded_conditions"] = True
    if config.get("binding_weight"):
        record["binding_weight"] = config["binding_weight"]
    if config.get("draft_share"):
        record["draft_share"] = config["draft_share"]
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        record["metrics"] = json.loads(metrics_path.read_text())
    extras = {k: v for k, v in payload.get("extras", {}).items() if k in ("initialised_from",)}
    return {**record, **extras, "ancestry": config.get("ancestry", [])}


def lineage(run: str, record: dict) -> list[dict]:
    """The ancestry a run started from the run `record` describes keeps: that record, named
    `run`, then its own ancestry. So a set exported from runs of runs still names the first runs
    behind it, after their directories are gone."""
    record = dict(record)
    parents = record.pop("ancestry", [])
    return [{"run": run, **record}, *parents]
