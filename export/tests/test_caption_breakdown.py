"""export/experiments/caption_breakdown.py: the checker's verdicts grouped by kind of caption."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from conftest import load_experiment

from st2v_export.toy import world
from st2v_export.toy.ablation import protocol_clips, write_frames


@pytest.fixture(scope="module")
def breakdown():
    return load_experiment("caption_breakdown")


def test_a_scene_belongs_to_one_group_of_each_grouping(breakdown):
    spec = world.parse_caption("a small red star and a blue circle moving left on a gradient "
                               "background")
    assert breakdown.groups_of(spec) == ["all", "two shapes", "first shape: star",
                                         "first shape: small", "gradient background",
                                         "straight motion"]
    spec = world.parse_caption("a large green square bouncing on a white background")
    assert breakdown.groups_of(spec)[1:] == ["one shape", "first shape: square",
                                             "first shape: large", "plain background",
                                             "motion: bouncing"]


def test_true_clips_pass_and_a_frozen_one_fails_in_its_groups(breakdown, tmp_path):
    clips = protocol_clips(4, "train")
    for index, clip in enumerate(clips):
        frames = clip["frames"] if index else np.repeat(clip["frames"][:1], 16, axis=0)
        write_frames(frames, tmp_path / f"{index:02d}")
    (tmp_path / "notes").mkdir()  # not a video: ignored

    counts = breakdown.tally([(tmp_path, "train")])

    assert counts["all"] == {"videos": 4, "colour": 4, "motion": 3}
    frozen = breakdown.groups_of(clips[0]["spec"])
    for group, count in counts.items():
        assert count["colour"] == count["videos"]
        assert count["motion"] == count["videos"] - (group in frozen)
    table = breakdown.markdown(counts)
    assert table.splitlines()[2] == "| all | 4 | 4 | 3 |"


def test_a_source_names_its_split(breakdown, tmp_path):
    assert breakdown.parse_source(f"{tmp_path}:heldout") == (tmp_path, "heldout")
    for bad in (str(tmp_path), f"{tmp_path}:test", ":train"):
        with pytest.raises(argparse.ArgumentTypeError, match="DIR:heldout"):
            breakdown.parse_source(bad)


def test_each_shape_of_a_two_shape_caption_is_judged_on_its_own(breakdown, tmp_path):
    clips = protocol_clips(24, "train")
    last = next(i for i, c in enumerate(clips) if len({s.colour for s in c["spec"].shapes}) == 2)
    spec = clips[last]["spec"]
    unused = next(c for c in world.PALETTE if c not in {s.colour for s in spec.shapes}
                  and c != spec.background)
    for index, clip in enumerate(clips[:last + 1]):
        frames = clip["frames"].copy()
        if index == last:  # the second shape repainted in a colour the caption does not ask
            second = (frames == world.PALETTE[spec.shapes[1].colour]).all(axis=-1)
            frames[second] = world.PALETTE[unused]
        write_frames(frames, tmp_path / f"{index:02d}")

    counts = breakdown.tally([(tmp_path, "train")])
    first, second = (counts[group] for group in breakdown.SHAPE_GROUPS)
    assert first["videos"] == second["videos"] == counts["two shapes"]["videos"] >= 1
    assert first["colour"] == first["videos"]
    assert second["colour"] == second["videos"] - 1
    assert counts["two shapes"]["colour"] == counts["two shapes"]["videos"] - 1
