"""Toy world: deterministic rendering, caption grammar, held-out split, and the checker validated
on the renderer's own clips (clean ones pass, corrupted ones are flagged). Fast (numpy only).

Run: cd /work/main && PYTHONPATH=export .venv/bin/python -m pytest export/tests/test_toy_world.py -q
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from st2v_export.toy import checker, world
from st2v_export.toy.__main__ import main as toy_main
from st2v_export.toy.world import SceneSpec, ShapeSpec

SEAMS_48 = [16, 24, 32, 40]


def _spec(motion, *shapes, background="white", layout=world.DEFAULT_LAYOUT) -> SceneSpec:
    return SceneSpec(tuple(ShapeSpec(*s) for s in shapes), motion, background, layout)


def _background_for(index: int, colours: set[str]) -> str:
    options = [b for b in world.BACKGROUNDS if b not in colours]
    return options[index % len(options)]


def _toroidal_error(measured: np.ndarray, truth: np.ndarray, size: int) -> np.ndarray:
    difference = np.mod(measured - truth + size / 2, size) - size / 2
    return np.linalg.norm(difference, axis=-1)


# ----------------------------------------------------------------------------------- rendering


def test_clip_is_a_pure_function_of_seed_index_and_split():
    frames, text, spec = world.clip(7, 3, frames=16)
    again, text_again, spec_again = world.clip(7, 3, frames=16)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, again) and text == text_again and spec == spec_again
    assert text == world.caption(spec)
    assert not np.array_equal(frames, world.clip(7, 4, frames=16)[0])
    assert not np.array_equal(frames, world.clip(8, 3, frames=16)[0])
    assert world.clip(7, 3, split="heldout")[2] != spec


def test_render_of_a_window_matches_the_long_render_and_other_sizes_scale():
    spec = _spec("circling", ("star", "red", "large"), ("square", "blue", "small"))
    whole = world.render(spec, 40)
    assert np.array_equal(world.render(spec, 16, start=24), whole[24:])
    big = world.render(spec, 4, size=128)
    assert big.shape == (4, 128, 128, 3)
    report = checker.check_video(big, spec)
    assert report["shapes"][0]["shape_accuracy"] == 1.0 and report["shapes"][1]["size_ok"]


def test_two_shapes_never_overlap():
    for motion in world.MOTIONS:
        spec = _spec(motion, ("circle", "red", "large"), ("diamond", "green", "large"))
        frames = world.render(spec, 120)
        red = (frames == world.PALETTE["red"]).all(-1).sum(axis=(1, 2))
        green = (frames == world.PALETTE["green"]).all(-1).sum(axis=(1, 2))
        centres, radii = world.trajectory(spec, 120)
        expected_red = np.array([world.shape_area("circle", r) for r in radii[0]])
        assert np.all(np.abs(red / expected_red - 1) < 0.15), motion  # nothing covered
        assert np.all(green > 0), motion
        gap = _toroidal_error(centres[0], centres[1], 64)
        assert np.all(gap >= radii[0] + radii[1] - 1e-6), motion


# ------------------------------------------------------------------------------------ captions


def _every_grammar_form():
    sizes = [("small",), ("medium",), ("large",)]
    for i, motion in enumerate(world.MOTIONS):
        for two, background in itertools.product((False, True), ("plain", *world.GRADIENTS)):
            first = ShapeSpec(world.SHAPES[i % 5], world.COLOURS[i % 10], sizes[i % 3][0])
            shapes = [first]
            if two:
                shapes.append(ShapeSpec(world.SHAPES[(i + 1) % 5], world.COLOURS[(i + 4) % 10],
                                        sizes[(i + 1) % 3][0]))
            if background == "plain":
                background = _background_for(i, {s.colour for s in shapes})
            yield SceneSpec(tuple(shapes), motion, background, layout=(0.1, 0.9))


def test_caption_and_parse_are_inverse_for_every_grammar_form():
    forms = list(_every_grammar_form())
    assert len(forms) == len(world.MOTIONS) * 2 * 3
    for spec in forms:
        text = world.caption(spec)
        assert world.parse_caption(text) == spec.described(), text
        assert world.caption(world.parse_caption(text)) == text


def test_captions_read_as_the_issue_writes_them():
    examples = {
        "a small red circle moving left on a blue background":
            _spec("left", ("circle", "red", "small"), background="blue"),
        "a large yellow star bouncing on a gradient background":
            _spec("bouncing", ("star", "yellow", "large"), background="vertical gradient"),
        "a red square and a green circle moving right on a white background":
            _spec("right", ("square", "red"), ("circle", "green")),
        "An Orange diamond  moving up-left on a horizontal gradient background.":
            _spec("up-left", ("diamond", "orange"), background="horizontal gradient"),
    }
    for text, spec in examples.items():
        assert world.parse_caption(text) == spec, text
    assert world.caption(examples["a small red circle moving left on a blue background"]) == (
        "a small red circle moving left on a blue background")
    assert world.caption(_spec("growing", ("circle", "orange"), background="black")) == (
        "an orange circle growing on a black background")


@pytest.mark.parametrize("text", [
    "a red circle moving sideways on a blue background",
    "a red hexagon moving left on a blue background",
    "a red circle moving left on a red background",
    "a red circle and a red square moving left on a blue background",
    "a red circle, a green square and a blue star moving left on a white background",
    "a red circle moving left",
])
def test_text_outside_the_grammar_or_the_world_is_refused(text):
    with pytest.raises(ValueError):
        world.parse_caption(text)


# --------------------------------------------------------------------------------------- split


def test_heldout_rule_holds_out_triples_but_keeps_every_pair():
    triples = world.heldout_triples()
    assert len(triples) == 86
    assert all(world.is_heldout_triple(*t) for t in triples)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        options = [world.COLOURS, world.SHAPES, world.MOTIONS]
        other = options[3 - a - b]
        for pair in itertools.product(options[a], options[b]):
            held = sum((t[a], t[b]) == pair for t in triples)
            assert held < len(other), pair  # the pair still occurs with some third value


def test_train_sampler_never_yields_a_heldout_triple_and_heldout_always_does():
    rng = np.random.default_rng(0)
    heldout = set(world.heldout_triples())
    seen = set()
    for _ in range(3000):
        spec = world.sample_spec(rng, "train")
        triples = {(s.colour, s.shape, spec.motion) for s in spec.shapes}
        assert not triples & heldout, world.caption(spec)
        seen |= triples
    assert len(seen) > 0.95 * (600 - len(heldout))  # the sampler covers the training triples
    for _ in range(300):
        assert world.is_heldout(world.sample_spec(rng, "heldout"))
    for index in range(50):
        assert not world.is_heldout(world.clip(1, index, frames=1)[2])


def test_straight_motions_start_on_the_side_they_move_away_from():
    rng = np.random.default_rng(2)
    starts = {m: [] for m in world.DIRECTIONS}
    while min(map(len, starts.values())) < 40:
        spec = world.sample_spec(rng, "train")
        if spec.motion in starts:
            starts[spec.motion].append(spec.layout)
    for motion, layouts in starts.items():
        direction = np.array(world.DIRECTIONS[motion])
        offsets = np.array(layouts) - (0.5 - world.ENTRY_OFFSET * direction)
        assert np.abs(offsets).max() <= world.ENTRY_JITTER + 1e-4, motion
        assert np.abs(offsets).max() > world.ENTRY_JITTER / 2, motion  # jittered, not fixed
        # 16 frames keep the shape on the side it moved to, away from the torus' seam.
        spec = replace(world.parse_caption(f"a red circle moving {motion} on a blue background"),
                       layout=tuple(np.array(layouts[0])))
        centres, _ = world.trajectory(spec, 16)
        travel = (centres[0, -1] - centres[0, 0]) / 64
        assert np.all(np.sign(travel) == direction) and np.all(np.abs(travel) < 0.5), motion


# ------------------------------------------------------------------------------------- checker


def _accuracy_clips():
    """Every motion x shape once (colours, sizes, backgrounds cycling), then two-shape scenes."""
    rng = np.random.default_rng(1)
    for i, (motion, shape) in enumerate(itertools.product(world.MOTIONS, world.SHAPES)):
        first = ShapeSpec(shape, world.COLOURS[i % 10], world.SIZES[i % 3])
        shapes = (first,)
        if i % 5 == 0:
            second = ShapeSpec(world.SHAPES[(i // 5) % 5], world.COLOURS[(i + 5) % 10],
                               world.SIZES[(i + 1) % 3])
            shapes = (first, second)
        draft = SceneSpec(shapes, motion, _background_for(i, {s.colour for s in shapes}))
        spec = replace(draft, layout=world._sample_layout(rng, draft))
        yield spec, (16, 24, 48)[i % 3]


def test_checker_is_right_on_rendered_clips():
    colour_hits = shape_hits = total = 0
    worst_centroid_error = 0.0
    motions_ok = {m: True for m in world.MOTIONS}
    for spec, count in _accuracy_clips():
        frames = world.render(spec, count)
        seams = list(range(16, count, 8)) or [8]
        report = checker.check_video(frames, world.caption(spec), seams)
        centres, _ = world.trajectory(spec, count)
        assert report["seam_jumps"] == 0, world.caption(spec)
        for k, shape in enumerate(report["shapes"]):
            colour_hits += shape["colour_accuracy"] * count
            shape_hits += shape["shape_accuracy"] * count
            total += count
            motions_ok[spec.motion] &= shape["motion_ok"]
            assert shape["size_ok"] in (True, None), world.caption(spec)
            track = np.array([d[k]["centroid"] for d in report["per_frame"]])
            worst_centroid_error = max(worst_centroid_error,
                                       _toroidal_error(track, centres[k], 64).max())
        assert report["ok"], (world.caption(spec), report["flags"])
        assert report["background"]["accuracy"] == 1.0
    assert colour_hits / total >= 0.99 and shape_hits / total >= 0.99
    assert all(motions_ok.values()), motions_ok
    assert worst_centroid_error < 1.0


def test_report_is_json_serialisable_and_per_frame_detection_finds_each_shape():
    spec = _spec("up-right", ("triangle", "purple", "large"), ("star", "cyan", "small"),
                 background="horizontal gradient")
    frames = world.render(spec, 16)
    report = json.loads(json.dumps(checker.check_video(frames, spec, [8])))
    assert report["ok"] and report["adherence"] == {
        "colour_ok": True, "shape_ok": True, "size_ok": True, "motion_ok": True,
        "background_ok": True}
    detected = checker.detect_shapes(frames[0], spec)
    assert [(d["colour"], d["shape"]) for d in detected] == [("purple", "triangle"),
                                                             ("cyan", "star")]


def _teleported(frames: np.ndarray, at: int, offset=(9, 13)) -> np.ndarray:
    out = frames.copy()
    out[at:] = np.roll(frames[at:], offset, axis=(1, 2))
    return out


@pytest.mark.parametrize("motion", ["left", "down-right", "circling", "bouncing", "growing"])
def test_teleport_at_a_seam_is_the_only_seam_flagged(motion):
    spec = _spec(motion, ("square", "green", "small"), background="vertical gradient")
    frames = world.render(spec, 48)
    clean = checker.check_video(frames, spec, SEAMS_48)
    assert clean["seam_jumps"] == 0
    report = checker.check_video(_teleported(frames, 24), spec, SEAMS_48)
    seams = report["shapes"][0]["seams"]
    assert [s["frame"] for s in seams if s["jumps"]] == [24]
    assert "shape0:seam_jump" in report["flags"] and not report["ok"]


def test_colour_change_mid_video_is_flagged():
    spec = _spec("right", ("circle", "red", "large"), background="blue")
    frames = world.render(spec, 48)
    recoloured = world.render(replace(spec, shapes=(ShapeSpec("circle", "yellow", "large"),)),
                              48)
    frames[24:] = recoloured[24:]
    report = checker.check_video(frames, spec, SEAMS_48)
    shape = report["shapes"][0]
    assert shape["colour_accuracy"] == 0.5 and shape["found_fraction"] == 1.0
    assert shape["identity"]["colour_drift_max"] > checker.COLOUR_DRIFT_MAX
    assert {"shape0:colour", "shape0:colour_drift"} <= set(report["flags"])
    assert shape["motion_ok"] and shape["seam_jumps"] == 0  # the same shape, only recoloured


def test_noise_is_flagged():
    spec = _spec("left", ("circle", "red", "small"), background="blue")
    noise = np.random.default_rng(0).integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    report = checker.check_video(noise, spec, [16])
    assert not report["ok"] and {"shape0:missing", "background"} <= set(report["flags"])
    assert report["shapes"][0]["found_fraction"] < 0.1
    assert report["background"]["accuracy"] == 0.0


def test_a_wrong_background_is_flagged_when_over_a_tenth_of_the_frames_lack_it():
    spec = _spec("right", ("circle", "red", "large"), background="blue")
    frames = world.render(spec, 20)
    frames[18:] = world.render(replace(spec, background="green"), 20)[18:]  # 2 of 20 frames
    report = checker.check_video(frames, spec)
    assert report["background"] == {"accuracy": 0.9, "ok": True}
    frames[17] = frames[18]
    report = checker.check_video(frames, spec)
    assert report["background"] == {"accuracy": 0.85, "ok": False}
    assert "background" in report["flags"] and report["shapes"][0]["colour_ok"]


def test_wrong_caption_is_flagged():
    spec = _spec("left", ("circle", "red", "small"), background="blue")
    frames = world.render(spec, 24)
    for wrong in ("a small red circle moving right on a blue background",
                  "a small green circle moving left on a blue background",
                  "a small red star moving left on a blue background",
                  "a large red circle moving left on a blue background",
                  "a small red circle moving left on a white background"):
        assert not checker.check_video(frames, wrong)["ok"], wrong


def test_a_wrong_shape_is_reported_as_what_it_was_read_as(tmp_path, capsys):
    spec = _spec("left", ("square", "red", "large"), background="blue")
    frames = world.render(spec, 16)
    right = checker.check_video(frames, spec)["shapes"][0]
    assert right["shape_ok"] and right["shape_detected"] == "square"
    asked = "a large red diamond moving left on a blue background"
    wrong = checker.check_video(frames, asked)["shapes"][0]
    assert not wrong["shape_ok"] and wrong["shape_detected"] == "square"
    empty = np.zeros_like(frames) + np.array(world.PALETTE["blue"], dtype=np.uint8)
    assert checker.check_video(empty, asked)["shapes"][0]["shape_detected"] is None
    out = tmp_path / "clip"
    assert toy_main(["render", "--caption", world.caption(spec), "--frames", "16",
                     "--out", str(out)]) == 0
    capsys.readouterr()
    assert toy_main(["check", str(out), "--caption", asked]) == 1
    assert "shape 0% (read as a square)" in capsys.readouterr().out


def test_long_clips_keep_their_motion_at_every_frame_pair():
    count = 240
    for i, motion in enumerate(world.MOTIONS):
        spec = _spec(motion, (world.SHAPES[i % 5], world.COLOURS[i % 10], world.SIZES[i % 3]),
                     background=_background_for(i, {world.COLOURS[i % 10]}))
        report = checker.check_video(world.render(spec, count), spec, list(range(16, count, 8)))
        shape = report["shapes"][0]
        assert report["ok"], (motion, report["flags"])
        if motion in world.DIRECTIONS:
            assert shape["motion"]["pair_direction_fraction"] == 1.0, motion
        if motion == "bouncing":
            assert shape["motion"]["bounces"] >= 20
        if motion == "circling":
            assert shape["motion"]["turn_deg"] > 3 * 360
            assert min(shape["motion"]["turn_thirds_deg"]) > 360
        if motion in world.DIRECTIONS or motion == "circling":
            for start in range(0, count, 48):  # every window shows the same motion
                window = checker.check_video(world.render(spec, 16, start=start), spec)
                assert window["shapes"][0]["motion"]["detected"] == motion, (motion, start)


# ----------------------------------------------------------------------------------------- CLI


def test_cli_renders_and_checks_a_png_directory(tmp_path, capsys):
    out = tmp_path / "clip"
    text = "a small red circle and a large cyan star bouncing on a horizontal gradient background"
    assert toy_main(["render", "--caption", text, "--frames", "24", "--out", str(out)]) == 0
    assert len(list(out.glob("frame_*.png"))) == 24
    report_file = tmp_path / "report.json"
    code = toy_main(["check", str(out), "--chunk-starts", "16,20", "--json", str(report_file)])
    printed = capsys.readouterr().out
    assert code == 0 and "verdict: ok" in printed
    assert json.loads(report_file.read_text())["chunk_starts"] == [16, 20]
    wrong = "a small red circle and a large cyan star circling on a horizontal gradient background"
    assert toy_main(["check", str(out), "--caption", wrong]) == 1
    assert "FLAGGED" in capsys.readouterr().out
