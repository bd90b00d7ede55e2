"""export/experiments/stage2_from_truth.py: a true continuation is judged perfect in motion and
without seam jumps, a frozen one is not, for the README protocol's clips and for `--crossing`'s;
the engine command continues the written true frames (no engine run: a stand-in writes the
world's own next frames)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_experiment

import st2v_export
from st2v_export.toy import world
from st2v_export.toy.data import crossings
from st2v_export.toy.video_eval import heldout_clips

EXPORT_DIR = Path(st2v_export.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def truth():
    return load_experiment("stage2_from_truth")


def _stand_in(tmp_path, mode: str, crossing: bool):
    """An executable with st2v's extend arguments that writes the input frames, then 32 more: the
    world's own continuation (`true`) or the last input frame repeated (`frozen`)."""
    script = tmp_path / f"st2v-{mode}-{crossing}"
    script.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
sys.path.insert(0, {str(EXPORT_DIR)!r})
sys.path.insert(0, {str(EXPORT_DIR / "experiments")!r})
from stage2_from_truth import crossing_clips, protocol_clips
from st2v_export.toy import world
import numpy as np
from PIL import Image
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
index = int(value("--seed"))
clip = (crossing_clips if {crossing!r} else protocol_clips)(index + 1)[index]
assert clip["caption"] == value("--prompt")
given = sorted(Path(value("--input")).glob("*.png"))
assert len(given) == 16 and value("--frames") == "32" and "--no-enhance" in args
true = world.render(clip["spec"], 48, 64, clip["start"])
assert np.array_equal(true[:16], clip["frames"])
frames = true if {mode!r} == "true" else np.concatenate(
    [true[:16], np.repeat(true[15:16], 32, axis=0)])
out = Path(value("--out"))
out.mkdir()  # as st2v: the parent must exist
for i, frame in enumerate(frames):
    Image.fromarray(frame).save(out / f"frame_{{i:05d}}.png")
""")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("crossing", [False, True])
def test_the_worlds_own_continuation_passes_and_a_frozen_one_does_not(truth, tmp_path, crossing):
    clips = truth.crossing_clips(3) if crossing else truth.protocol_clips(3)
    results = {}
    for mode in ("true", "frozen"):
        st2v = _stand_in(tmp_path, mode, crossing)
        reports = truth.continue_truth(st2v, tmp_path, tmp_path / mode, clips, 25)
        results[mode] = truth.summarize(reports)
    assert results["true"]["motion"] == 1.0 and results["true"]["seam_jumps"] == 0
    assert results["true"]["seams"] > 0
    assert results["frozen"]["motion"] < 1.0


def test_first_chunks_judge_the_first_sixteen_frames(truth, tmp_path):
    clips = heldout_clips(2, 48, 64)
    for index, clip in enumerate(clips):
        frames = np.concatenate([clip["frames"][:16], np.zeros((32, 64, 64, 3), np.uint8)])
        truth.write_frames(frames, tmp_path / f"{index:02d}")
    reports = truth.first_chunks(tmp_path, 2, "heldout")
    assert all(r["adherence"]["motion_ok"] and r["adherence"]["background_ok"] for r in reports)


def test_crossing_clips_end_just_before_a_shape_crosses_an_edge(truth):
    for index, clip in enumerate(truth.crossing_clips(10)):
        assert clip["spec"].motion in world.DIRECTIONS and world.is_heldout(clip["spec"])
        delay = index % truth.CROSSING_DELAYS  # the crossing, frames after the true 16
        assert clip["start"] + 16 + delay in crossings(clip["spec"], 64)
        assert np.array_equal(clip["frames"], world.render(clip["spec"], 16, 64, clip["start"]))
