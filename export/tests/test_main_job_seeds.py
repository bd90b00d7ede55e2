"""export/experiments/main_job_seeds.py: the verdict of tests/toy_set.rs on any seed's frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_experiment

BLUE, RED = (40, 70, 210), (220, 40, 40)


@pytest.fixture(scope="module")
def seeds():
    return load_experiment("main_job_seeds")


def _video(positions: list[int]) -> np.ndarray:
    """80x80 frames: a 10-pixel red square at each column (wrapping), on blue."""
    frames = np.empty((len(positions), 80, 80, 3), dtype=np.uint8)
    frames[:] = BLUE
    for frame, x in zip(frames, positions):
        frame[35:45, [(x + k) % 80 for k in range(10)]] = RED
    return frames


def test_a_shape_travelling_right_through_the_wrap_passes(seeds):
    result = seeds.verdict(_video([2 * k + 60 for k in range(48)]))
    assert result == {"travel_per_16_frames": [32, 32, 30], "leftward_steps": 0, "ok": True}


def test_a_shape_that_stops_or_turns_back_in_a_chunk_fails(seeds):
    stops = [min(k, 35) for k in range(48)]
    result = seeds.verdict(_video(stops))
    assert result["travel_per_16_frames"] == [16, 16, 3] and not result["ok"]
    back = [k if k < 40 else 80 - k for k in range(48)]
    result = seeds.verdict(_video(back))
    assert result["leftward_steps"] == 7 and not result["ok"]


def test_frames_without_red_read_as_the_largest_right_shift_as_in_rust(seeds):
    empty = np.zeros((80, 80, 3), dtype=np.uint8)
    assert seeds.horizontal_shift(seeds.red_columns(empty), seeds.red_columns(empty)) == 8
