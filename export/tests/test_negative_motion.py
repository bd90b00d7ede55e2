"""export/experiments/negative_motion.py: the opposite captions, and the negative prompt reaching
the engine's command line (a stand-in engine, no model run)."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
from conftest import load_experiment
from PIL import Image

from st2v_export.toy.ablation import generate
from st2v_export.toy.world import DIRECTIONS, parse_caption


@pytest.fixture(scope="module")
def negative():
    return load_experiment("negative_motion")


def test_every_direction_and_growth_has_its_opposite_and_bouncing_has_none(negative):
    assert negative.OPPOSITES["up-left"] == "down-right"
    assert negative.OPPOSITES["growing"] == "shrinking"
    for motion, opposite in negative.OPPOSITES.items():
        assert negative.OPPOSITES[opposite] == motion != opposite
    assert set(DIRECTIONS) < set(negative.OPPOSITES)
    assert negative.opposite_caption("a red star bouncing on a green background") == ""


def test_the_opposite_caption_changes_only_the_motion(negative):
    text = "a large yellow star and a white circle moving down-left on a cyan background"
    opposite = negative.opposite_caption(text)
    assert opposite == text.replace("down-left", "up-right")
    spec, flipped = parse_caption(text), parse_caption(opposite)
    assert (flipped.shapes, flipped.background, flipped.motion) == (spec.shapes, spec.background,
                                                                   "up-right")


def test_generate_hands_the_negative_prompt_to_the_engine(tmp_path):
    frame = tmp_path / "frame.png"
    Image.fromarray(np.full((4, 4, 3), 7, dtype=np.uint8)).save(frame)
    argv = tmp_path / "argv"
    engine = tmp_path / "st2v"
    # The stand-in records its arguments and writes one frame into --out's directory.
    engine.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(argv))}\n'
                      'while [ "$1" != --out ]; do shift; done\n'
                      f'cp {shlex.quote(str(frame))} "$2/frame_00000.png"\n')
    engine.chmod(0o755)
    out = tmp_path / "video"
    out.mkdir()

    left = "a red circle moving left on a blue background"
    video = generate(engine, tmp_path, "a red circle moving right on a blue background", 48, 3,
                     None, out, negative_prompt=left)

    args = argv.read_text().splitlines()
    assert args[args.index("--negative-prompt") + 1] == left
    assert args[args.index("--seed") + 1] == "3" and "--no-enhance" in args
    assert video.shape == (1, 4, 4, 3) and int(video.max()) == 7
    generate(engine, tmp_path, "a red circle moving right on a blue background", 48, 3, None, out)
    args = argv.read_text().splitlines()
    assert args[args.index("--negative-prompt") + 1] == ""
