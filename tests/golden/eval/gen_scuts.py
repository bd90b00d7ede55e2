#!/usr/bin/env python3
"""Writes tests/golden/eval/scuts.json, the golden fixture of src/eval/scuts.rs (SCuts metric).

Run: .venv/bin/python tests/golden/eval/gen_scuts.py   (from the repository root; CPU only)

Made with scenedetect 0.7.2, opencv-python (cv2) 5.0.0 and numpy 2.4.6 on x86-64 (AVX-512); the
versions are recorded inside the JSON under "versions".

The StreamingT2V paper's SCuts metric counts the scene cuts that PySceneDetect's AdaptiveDetector
finds with its default parameters. This script builds small synthetic videos procedurally, with
integer arithmetic only, so that tests/golden/eval/synthetic.rs rebuilds the exact same RGB frames
from the same spec. Each video goes through scenedetect's real path: a SceneManager (default auto
downscale, default INTER_LINEAR resize) with a StatsManager and AdaptiveDetector() defaults, fed by
scenedetect's own VideoCaptureAdapter around an in-memory stand-in for cv2.VideoCapture that hands
out BGR frames as OpenCV would decode them. The StatsManager is attached only to read the
per-frame metrics; it does not change content_val (the edge component has weight 0).

Spec of a video (all integers; "//" and "%" are floor division / modulo, as Rust's div_euclid /
rem_euclid):
  {"shots": [{"start": frame, "scene": SCENE, "gain": [g0, g1]?}, ...]}
A shot lasts from its start to the next shot's start (or the end). t = frame - start is the
shot-local frame, L its length. SCENE:
  base [r, g, b]; grad [[xr, xg, xb], [yr, yg, yb]]?; pan [px, py]?;
  tex {"amp", "cell", "seed", "seed_step"}?; sprite {"size", "color", "x0", "y0", "vx", "vy"}?
  X = x + px*t, Y = y + py*t
  value_c = clamp(base_c + (xc*X)//W + (yc*Y)//H + noise_c, 0, 255)
  noise_c = (((n >> 8c) & 255) * (2*amp + 1)) >> 8) - amp,
            n = hash32(X//cell, Y//cell, seed + seed_step*t)     (c = 0 for R, 1 G, 2 B)
  sprite: left = (x0 + vx*t) % (W + size) - size, top = (y0 + vy*t) % (H + size) - size; pixels
          with left <= x < left+size and top <= y < top+size take `color`.
  gain (default [256, 256]): g = g0 + ((g1 - g0)*t) // max(L - 1, 1); out = (value*g) >> 8.
hash32 (all mod 2^32): h = a*0x9E3779B1 + b*0x85EBCA77 + s*0xC2B2AE3D; h ^= h >> 15;
  h *= 0x2C1B3C6D; h ^= h >> 12; h *= 0x297A2D39; h ^= h >> 15.
"""

import json
import platform
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import scenedetect
from scenedetect import AdaptiveDetector, SceneManager, StatsManager
from scenedetect.backends.opencv import VideoCaptureAdapter
from scenedetect.scene_manager import compute_downscale_factor

HERE = Path(__file__).resolve().parent
M32 = 0xFFFFFFFF


def hash32(a, b, s):
    a = a.astype(np.uint64) & M32
    b = b.astype(np.uint64) & M32
    s = np.uint64(s & M32)
    h = (a * np.uint64(0x9E3779B1) + b * np.uint64(0x85EBCA77) + s * np.uint64(0xC2B2AE3D)) & M32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & M32
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & M32
    h ^= h >> np.uint64(15)
    return h.astype(np.int64)


def render(spec, width, height, frame):
    """RGB frame `frame` of the video `spec`, as a (height, width, 3) uint8 array."""
    shots = spec["shots"]
    idx = max(i for i, s in enumerate(shots) if s["start"] <= frame)
    shot = shots[idx]
    end = shots[idx + 1]["start"] if idx + 1 < len(shots) else spec["frames"]
    t = frame - shot["start"]
    length = end - shot["start"]
    sc = shot["scene"]
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    px, py = sc.get("pan", [0, 0])
    xx = x + px * t
    yy = y + py * t
    out = np.zeros((height, width, 3), np.int64)
    tex = sc.get("tex")
    n = None
    if tex is not None:
        n = hash32(xx // tex["cell"], yy // tex["cell"], tex["seed"] + tex["seed_step"] * t)
    for c in range(3):
        v = np.full((height, width), sc["base"][c], np.int64)
        if "grad" in sc:
            v = v + (sc["grad"][0][c] * xx) // width + (sc["grad"][1][c] * yy) // height
        if n is not None:
            amp = tex["amp"]
            v = v + ((((n >> (8 * c)) & 255) * (2 * amp + 1)) >> 8) - amp
        out[:, :, c] = np.clip(v, 0, 255)
    sp = sc.get("sprite")
    if sp is not None:
        size = sp["size"]
        left = (sp["x0"] + sp["vx"] * t) % (width + size) - size
        top = (sp["y0"] + sp["vy"] * t) % (height + size) - size
        inside = (x >= left) & (x < left + size) & (y >= top) & (y < top + size)
        for c in range(3):
            out[:, :, c] = np.where(inside, sp["color"][c], out[:, :, c])
    g0, g1 = shot.get("gain", [256, 256])
    g = g0 + ((g1 - g0) * t) // max(length - 1, 1)
    out = (out * g) >> 8
    return out.astype(np.uint8)


class MemoryCapture:
    """Duck-typed cv2.VideoCapture over procedurally rendered frames (BGR, like a decoder)."""

    def __init__(self, spec, width, height, count, fps=30.0):
        self.spec, self.width, self.height, self.count, self.fps = spec, width, height, count, fps
        self.pos = 0  # frames grabbed so far
        self.grabbed = None

    def isOpened(self):
        return True

    def grab(self):
        if self.pos >= self.count:
            return False
        self.grabbed = render(self.spec, self.width, self.height, self.pos)
        self.pos += 1
        return True

    def retrieve(self):
        return True, np.ascontiguousarray(self.grabbed[:, :, ::-1])  # RGB -> BGR

    def get(self, prop):
        return {
            cv2.CAP_PROP_FPS: self.fps,
            cv2.CAP_PROP_FRAME_WIDTH: float(self.width),
            cv2.CAP_PROP_FRAME_HEIGHT: float(self.height),
            cv2.CAP_PROP_FRAME_COUNT: float(self.count),
            cv2.CAP_PROP_POS_MSEC: 1000.0 * max(self.pos - 1, 0) / self.fps,
            cv2.CAP_PROP_POS_FRAMES: float(self.pos),
        }.get(prop, 0.0)


def sig9(v):
    return None if v is None else float(f"{v:.9g}")


def run(name, width, height, spec):
    count = spec["frames"]
    video = VideoCaptureAdapter(MemoryCapture(spec, width, height, count), frame_rate=30.0)
    stats = StatsManager()
    manager = SceneManager(stats_manager=stats)
    detector = AdaptiveDetector()
    seen_sizes = set()
    original = detector.process_frame

    def spy(timecode, frame_img):  # records the processed (downscaled) size, changes nothing
        seen_sizes.add((frame_img.shape[1], frame_img.shape[0]))
        return original(timecode, frame_img)

    detector.process_frame = spy
    manager.add_detector(detector)
    processed = manager.detect_scenes(video=video)
    assert processed == count, (processed, count)
    assert len(seen_sizes) == 1, seen_sizes
    cuts = [tc.frame_num for tc in manager.get_cut_list(show_warning=False)]
    scenes = manager.get_scene_list()
    by_frame = {tc.frame_num: m for tc, m in stats._frame_metrics.items()}
    ratio_key = "adaptive_ratio (w=2)"
    content = [sig9(by_frame.get(f, {}).get("content_val")) for f in range(count)]
    ratios = [sig9(by_frame.get(f, {}).get(ratio_key)) for f in range(count)]
    factor = compute_downscale_factor(max(width, height))
    print(f"{name:>18} {width}x{height}x{count} -> {sorted(seen_sizes)[0]} cuts {cuts}")
    return {
        "name": name,
        "width": width,
        "height": height,
        "frames": count,
        "spec": spec,
        "downscale_factor": factor,
        "processed_size": list(sorted(seen_sizes)[0]),
        "cuts": cuts,
        "scenes": len(scenes),
        "content_val": content,
        "adaptive_ratio": ratios,
    }


def scene(base, grad=None, pan=None, tex=None, sprite=None):
    s = {"base": base}
    if grad is not None:
        s["grad"] = grad
    if pan is not None:
        s["pan"] = pan
    if tex is not None:
        s["tex"] = tex
    if sprite is not None:
        s["sprite"] = sprite
    return s


def tex(amp, cell, seed, seed_step=0):
    return {"amp": amp, "cell": cell, "seed": seed, "seed_step": seed_step}


def sprite(size, color, x0, y0, vx, vy):
    return {"size": size, "color": color, "x0": x0, "y0": y0, "vx": vx, "vy": vy}


def videos():
    a = scene([60, 90, 150], [[80, 40, -30], [-20, 60, 40]], tex=tex(12, 4, 1))
    b = scene([200, 120, 40], [[-60, 30, 50], [40, -40, 20]], tex=tex(20, 3, 2))
    c = scene([30, 170, 80], [[50, -50, 90], [0, 30, -60]], tex=tex(8, 6, 3))
    d = scene([150, 40, 160], [[20, 90, 0], [-70, 0, 50]], tex=tex(25, 2, 4))
    black = scene([0, 0, 0])
    white = scene([255, 255, 255])
    bg = scene([90, 110, 70], [[60, 20, 40], [30, 60, -20]], tex=tex(30, 5, 7))

    def single(frames, sc):
        return {"frames": frames, "shots": [{"start": 0, "scene": sc}]}

    def cuts(frames, starts, scenes):
        return {"frames": frames, "shots": [{"start": s, "scene": x} for s, x in zip(starts, scenes)]}

    moving = dict(bg, sprite=sprite(24, [250, 30, 30], 0, 20, 9, 2))
    yield "static", 160, 96, single(60, a)
    # 38 is only 8 frames after 30 (< min_scene_len 15): suppressed.
    yield "hard_cuts", 160, 96, cuts(120, [0, 30, 38, 80], [a, b, c, d])
    # 6 is within min_scene_len of frame 0, where the detector's last cut starts.
    yield "early_cut", 160, 96, cuts(60, [0, 6, 40], [a, b, c])
    # Reaching full black (59) is a cut (H and S collapse to 0); the first lit frame of the
    # fade-in (71) scores as high but is within min_scene_len of 59.
    yield "fade", 160, 96, {
        "frames": 120,
        "shots": [
            {"start": 0, "scene": a},
            {"start": 40, "scene": a, "gain": [256, 0]},
            {"start": 60, "scene": black},
            {"start": 70, "scene": b, "gain": [0, 256]},
            {"start": 90, "scene": b},
        ],
    }
    yield "flash", 160, 96, cuts(100, [0, 50, 51], [a, white, a])
    yield "motion", 160, 96, single(120, moving)
    yield "noise_flicker", 97, 61, single(50, scene([120, 120, 120], tex=tex(40, 1, 11, 1)))
    yield "slow_pan", 320, 180, single(120, dict(bg, pan=[1, 0]))
    wide_a = dict(a, sprite=sprite(40, [20, 240, 240], 0, 100, 14, 3))
    wide_b = dict(b, pan=[2, 1])
    yield "wide_cut_motion", 640, 360, cuts(90, [0, 45], [wide_a, wide_b])
    # 289 / 2.0 = 144.5 rounds half to even (144).
    yield "exact_2x_odd", 512, 289, cuts(40, [0, 20], [c, dict(d, pan=[3, 0])])
    # The taller side picks the factor: 300 / 256.
    yield "portrait", 200, 300, cuts(40, [0, 20], [moving, a])


def main():
    out = {
        "about": "PySceneDetect AdaptiveDetector() defaults via SceneManager (auto downscale); "
        "see gen_scuts.py for the video spec",
        "versions": {
            "scenedetect": scenedetect.__version__,
            "cv2": cv2.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
        },
        "params": {
            "adaptive_threshold": 3.0,
            "min_scene_len": 15,
            "window_width": 2,
            "min_content_val": 15.0,
            "weights": [1.0, 1.0, 1.0, 0.0],
            "luma_only": False,
        },
        "fps": 30.0,
        "videos": [],
    }
    for name, width, height, spec in videos():
        out["videos"].append(run(name, width, height, spec))
    path = HERE / "scuts.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
