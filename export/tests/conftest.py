"""Puts export/ on sys.path so tests import `st2v_export`; shared fixtures of the export tests.

Run: cd /work/main && .venv/bin/python -m pytest export/tests -q
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

EXPORT_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = EXPORT_DIR.parent
TINY_SET = REPO_ROOT / "models" / "tiny"
sys.path.insert(0, str(EXPORT_DIR))

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def tiny_manifest() -> dict:
    """The committed tiny model set's manifest."""
    return json.loads((TINY_SET / "manifest.json").read_text())


def fit_steps(task, batch: dict, steps: int, lr: float) -> tuple[float, float]:
    """A toy training task's loss on `batch` (fixed sampling noise) before and after `steps`
    Adam steps on it."""
    import torch

    parameters = [p for g in task.parameter_groups() for p in g["params"]]
    optimizer = torch.optim.Adam(parameters, lr=lr)

    def loss() -> torch.Tensor:
        return task.loss(batch, torch.Generator().manual_seed(0))[0]

    with torch.no_grad():
        before = loss().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        task.after_step()
    with torch.no_grad():
        after = loss().item()
    return before, after


@pytest.fixture
def fit():
    """`fit_steps`: does a few steps on one batch lower a toy task's loss?"""
    return fit_steps


@pytest.fixture(scope="session")
def toy_video_runs(tmp_path_factory):
    """One-step vae, clip, stage1 and stage2 runs of the toy preset under one RUNS directory
    (shared: each costs a training step and an evaluation)."""
    from st2v_export.toy.train import TrainConfig, train

    root = tmp_path_factory.mktemp("toy_video_runs")
    for model, batch in (("vae", 2), ("clip", 4), ("stage1", 2), ("stage2", 2)):
        train(TrainConfig(model, 1, root / model, batch=batch, eval_frames=1), log=lambda _: None)
    return root


def load_experiment(name: str):
    """A script of export/experiments as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXPORT_DIR / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
