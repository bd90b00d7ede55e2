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
