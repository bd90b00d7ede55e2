#!/usr/bin/env python3
"""Writes tests/golden/eval/mawe.json, the golden values of tests/eval_mawe.rs.

Run from the repository root (CPU only, a few seconds):

    .venv/bin/python tests/golden/eval/gen_mawe.py [--dump-flows DIR]

Versions used are recorded in the JSON ("versions"); the fixture was made with Python 3,
numpy 2.4, torch 2.15 (x86-64 with AVX2/FMA, 2 threads), torchvision 0.29.2, cv2 5.0.0.
`--dump-flows DIR` also writes every cv2 flow as raw little-endian float32 (H x W x 2),
for comparing full flow fields offline (the JSON keeps sampled values only).

What it computes (StreamingT2V's MAWE, Henschel et al. 2024, as `mawe.py` of
Picsart-AI-Research/StreamingT2V computes it, with cv2's Farneback flow in place of RAFT):
- synthetic RGB clips built with integer arithmetic only (value noise on a lattice, a moving
  textured shape, optional zoom and brightness ramp), so tests/golden/eval/pairs.rs rebuilds
  them exactly from the "scene" spec;
- per case: cv2.calcOpticalFlowFarneback on the full-size grey pair (0, 1), summarised (means
  and a strided grid of sampled flows);
- per consecutive pair: torchvision F.resize(uint8, [S, S], antialias=False), grey via
  cv2.cvtColor(RGB2GRAY), Farneback flow left -> right, then the reference's forward warp
  (round(p + flow), last writer wins, grid_sample nearest with align_corners=True, holes
  masked) and warp error on the 0-255 scale, the mean flow magnitude and the ratio
  WE / (9.5 * M) in float32 as the reference evaluates it (NaN for a static flat pair is
  written as null); S is 720 for one case and 96 elsewhere to stay fast (S + S > 128 keeps
  torch on the bilinear kernel the reference's 720x720 resize uses);
- "given_flow_cases": the warp and error for fixed flows (constant integer, a non-integer
  pattern with half-pixel ties, a compressing zoom with many colliding targets), testing the
  warp independently of Farneback.
"""

import argparse
import json
import math
import platform
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from torch.nn.functional import grid_sample

OUT = Path(__file__).resolve().parent / "mawe.json"
COEFF = 9.5
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2)
GAUSSIAN_FLAG = cv2.OPTFLOW_FARNEBACK_GAUSSIAN
OFFSET = 4096  # keeps every lattice coordinate non-negative
MASK32 = np.uint64(0xFFFFFFFF)


def sig(value):
    """Round to 9 significant digits; NaN/inf become None (JSON null)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.9g}")


def checksum(array):
    """sum_i byte[i] * (i % 251 + 1) over the row-major bytes (HWC for images)."""
    flat = np.ascontiguousarray(array, dtype=np.uint8).reshape(-1).astype(np.int64)
    weights = np.arange(flat.size, dtype=np.int64) % 251 + 1
    return int((flat * weights).sum())


# ---------------------------------------------------------------- synthetic clips


def lattice_hash(ix, iy, seed):
    """32-bit integer hash of lattice points, low byte."""
    h = (ix.astype(np.uint64) * np.uint64(374761393) + iy.astype(np.uint64) * np.uint64(668265263)
         + np.uint64(seed) * np.uint64(2246822519)) & MASK32
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) & MASK32
    h = h ^ (h >> np.uint64(16))
    return (h & np.uint64(0xFF)).astype(np.int64)


def value_noise(u, v, seed, cell):
    """Integer bilinear interpolation of lattice_hash on a `cell`-pixel lattice (u, v >= 0)."""
    ix, fx = u // cell, u % cell
    iy, fy = v // cell, v % cell
    h00 = lattice_hash(ix, iy, seed)
    h10 = lattice_hash(ix + 1, iy, seed)
    h01 = lattice_hash(ix, iy + 1, seed)
    h11 = lattice_hash(ix + 1, iy + 1, seed)
    top = h00 * (cell - fx) + h10 * fx
    bottom = h01 * (cell - fx) + h11 * fx
    return (top * (cell - fy) + bottom * fy) // (cell * cell)


def render_frame(scene, t):
    """Frame t of a scene as H x W x 3 uint8 (see pairs.rs for the same formula)."""
    w, h = scene["width"], scene["height"]
    if scene.get("flat") is not None:
        return np.broadcast_to(np.array(scene["flat"], np.uint8), (h, w, 3)).copy()
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    cx, cy = w // 2, h // 2
    zoom = 1000 + scene["zoom_step_permille"] * t
    u = cx + ((x - cx) * 1000) // zoom - scene["bg_step"][0] * t + OFFSET
    v = cy + ((y - cy) * 1000) // zoom - scene["bg_step"][1] * t + OFFSET
    frame = np.stack([value_noise(u, v, scene["bg_seed"] * 3 + c, scene["cell"]) for c in range(3)], -1)
    shape = scene.get("shape")
    if shape is not None:
        sx = shape["x"] + shape["step"][0] * t
        sy = shape["y"] + shape["step"][1] * t
        if shape["kind"] == "rect":
            inside = (x >= sx) & (x < sx + shape["w"]) & (y >= sy) & (y < sy + shape["h"])
        else:  # disk of radius r centred on (sx, sy)
            inside = (x - sx) ** 2 + (y - sy) ** 2 < shape["r"] ** 2
        su, sv = x - sx + OFFSET, y - sy + OFFSET
        for c in range(3):
            tex = 64 + value_noise(su, sv, shape["seed"] * 3 + c, 4) * 3 // 4
            frame[..., c] = np.where(inside, tex, frame[..., c])
    frame = np.clip(frame + scene["brightness_step"] * t, 0, 255)
    return frame.astype(np.uint8)


def given_flow(spec, w, h):
    """The fixed flows of the warp-only cases, as float32 (2, H, W)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    if spec["kind"] == "constant":
        dx = np.full((h, w), spec["dx"], np.float32)
        dy = np.full((h, w), spec["dy"], np.float32)
    elif spec["kind"] == "pattern":  # multiples of 1/4 and 3/8: exact in float32, with ties
        dx = (((5 * x + 3 * y) % 17 - 8).astype(np.float32) * np.float32(0.25))
        dy = (((3 * x + 7 * y) % 13 - 6).astype(np.float32) * np.float32(0.375))
    elif spec["kind"] == "zoom":  # (centre - p) * factor, float32 product
        f = np.float32(spec["factor"])
        dx = (w // 2 - x).astype(np.float32) * f
        dy = (h // 2 - y).astype(np.float32) * f
    else:
        raise ValueError(spec["kind"])
    return np.stack([dx, dy]).astype(np.float32)


# ---------------------------------------------------------------- reference steps


def to_tchw(frames):
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def to_hwc(tensor_chw):
    return tensor_chw.permute(1, 2, 0).contiguous().numpy()


def farneback(prev_gray, next_gray, flags=0):
    p = FARNEBACK
    return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, p["pyr_scale"], p["levels"],
                                        p["winsize"], p["iterations"], p["poly_n"],
                                        p["poly_sigma"], flags)


def gray(hwc):
    return cv2.cvtColor(np.ascontiguousarray(hwc), cv2.COLOR_RGB2GRAY)


def flow_summary(flow_hw2, samples=12):
    """Means and a strided grid of sampled flows of an H x W x 2 flow."""
    h, w = flow_hw2.shape[:2]
    step = max(min(h, w) // samples, 1)
    origin = step // 2
    grid = flow_hw2[origin::step, origin::step]
    f64 = flow_hw2.astype(np.float64)
    return {
        "mean_dx": sig(f64[..., 0].mean()),
        "mean_dy": sig(f64[..., 1].mean()),
        "mean_mag": sig(np.hypot(f64[..., 0], f64[..., 1]).mean()),
        "sample_origin": origin,
        "sample_step": step,
        "dx": [sig(v) for v in grid[..., 0].reshape(-1)],
        "dy": [sig(v) for v in grid[..., 1].reshape(-1)],
    }


def reference_warp(left_f32, flow):
    """mawe.py's warp_with_flow for one image: left (1,3,H,W) float32, flow (1,2,H,W)."""
    _, _, h, w = left_f32.shape
    xs = torch.arange(0, w).view(1, -1).repeat(h, 1)
    ys = torch.arange(0, h).view(-1, 1).repeat(1, w)
    grid = torch.stack([xs, ys]).to(torch.float32)[None]
    targets = (grid + flow).round().to(torch.int32)[0].numpy()
    sources = grid[0].numpy().copy()
    hit = (targets[0] >= 0) & (targets[1] >= 0) & (targets[0] < w) & (targets[1] < h)
    kept = targets[:, hit]
    # numpy fancy assignment: with repeated targets the last source (row-major) wins
    sources[:, kept[1], kept[0]] = sources[:, hit]
    known = torch.zeros((h, w), dtype=torch.bool)
    known[kept[1], kept[0]] = True
    coords = torch.tensor(sources)[None]
    coords[:, 0] = 2.0 * coords[:, 0].clone() / max(w - 1, 1) - 1.0
    coords[:, 1] = 2.0 * coords[:, 1].clone() / max(h - 1, 1) - 1.0
    warped = grid_sample(left_f32, coords.permute(0, 2, 3, 1), mode="nearest",
                         padding_mode="zeros", align_corners=True)
    warped = warped.permute(0, 2, 3, 1)
    warped[~known[None]] = 0
    return warped.permute(0, 3, 1, 2), (~known[None]).float()


def reference_pair_terms(left_u8, right_u8, flow_2hw):
    """(warp error, mean flow, known pixels, warped checksum) as mawe.py's loop body."""
    flow = torch.from_numpy(flow_2hw)[None]
    mean_flow = torch.mean(torch.linalg.vector_norm(flow, dim=1)).item()
    warped, holes = reference_warp(left_u8.to(torch.float32), flow)
    known = 1 - holes.unsqueeze(1).repeat(1, 3, 1, 1).to(torch.float32)
    diff = (right_u8 - warped) * known
    count = torch.sum(known)
    if count == 0:
        count = diff.numel()
    warp_error = (torch.sum(torch.pow(diff, 2)) / count).item()
    warped_hwc = to_hwc(warped[0].to(torch.uint8))
    return warp_error, mean_flow, int((holes == 0).sum()), checksum(warped_hwc)


def reference_ratios(warp_errors, mean_flows):
    """Per-pair ratios and their mean, in float32 tensors as mawe.py."""
    ratios = torch.tensor(warp_errors) / (COEFF * torch.tensor(mean_flows))
    return [sig(r) for r in ratios.tolist()], sig(ratios.mean().item())


# ---------------------------------------------------------------- cases


def scene(width, height, frames, **kw):
    spec = dict(width=width, height=height, frames=frames, cell=8, bg_seed=1, bg_step=[0, 0],
                zoom_step_permille=0, shape=None, brightness_step=0, flat=None)
    spec.update(kw)
    return spec


CASES = [
    ("translate_96x64", 96, scene(96, 64, 3, bg_seed=11, bg_step=[2, 1],
                                  shape=dict(kind="rect", x=30, y=20, w=24, h=16, step=[-3, 2], seed=5))),
    ("zoom_disk_160", 96, scene(160, 160, 2, bg_seed=23, zoom_step_permille=40,
                                shape=dict(kind="disk", x=60, y=90, r=22, step=[2, -1], seed=7))),
    ("brightness_96x64", 96, scene(96, 64, 2, bg_seed=31, brightness_step=12)),
    ("translate_160_at_720", 720, scene(160, 160, 2, cell=4, bg_seed=41, bg_step=[1, -1],
                                        shape=dict(kind="rect", x=50, y=60, w=40, h=30, step=[2, 1], seed=9))),
    ("frozen_96x64", 96, scene(96, 64, 2, bg_seed=53)),
    ("flat_64", 96, scene(64, 64, 2, flat=[90, 120, 150])),
]

GAUSSIAN_CASES = {"zoom_disk_160"}

GIVEN_FLOW_CASES = [
    ("constant_integer", scene(96, 64, 2, bg_seed=61, bg_step=[3, -2]), dict(kind="constant", dx=3.0, dy=-2.0)),
    ("pattern_ties", scene(96, 64, 2, bg_seed=67, bg_step=[1, 1]), dict(kind="pattern")),
    ("zoom_collisions", scene(80, 72, 2, bg_seed=71, zoom_step_permille=-150), dict(kind="zoom", factor=0.3)),
]


def run_case(name, size, spec, dump):
    frames = [render_frame(spec, t) for t in range(spec["frames"])]
    g0, g1 = gray(frames[0]), gray(frames[1])
    case = {"name": name, "size": size, "scene": spec,
            "frame_checksums": [checksum(f) for f in frames]}
    full = farneback(g0, g1)
    case["flow"] = flow_summary(full)
    dump_flow(dump, f"{name}_full", full)
    if name in GAUSSIAN_CASES:
        case["flow_gaussian"] = flow_summary(farneback(g0, g1, GAUSSIAN_FLAG))
    video = TF.resize(to_tchw(frames), size=[size, size], antialias=False)
    pairs, errors, motions = [], [], []
    for i in range(len(frames) - 1):
        left, right = video[i:i + 1], video[i + 1:i + 2]
        lh, rh = to_hwc(left[0]), to_hwc(right[0])
        lg, rg = gray(lh), gray(rh)
        flow = farneback(lg, rg)
        dump_flow(dump, f"{name}_pair{i}", flow)
        we, mf, known, warped_sum = reference_pair_terms(left, right, flow.transpose(2, 0, 1).copy())
        errors.append(we)
        motions.append(mf)
        pairs.append({"resized_checksum": [checksum(lh), checksum(rh)],
                      "gray_checksum": [checksum(lg), checksum(rg)],
                      "flow": flow_summary(flow), "known": known, "warped_checksum": warped_sum,
                      "warp_error": sig(we), "mean_flow": sig(mf)})
    ratios, mawe = reference_ratios(errors, motions)
    for pair, ratio in zip(pairs, ratios):
        pair["ratio"] = ratio
    case["pairs"] = pairs
    case["mawe"] = mawe
    return case


def run_given_flow_case(name, spec, flow_spec):
    frames = [render_frame(spec, t) for t in range(2)]
    flow = given_flow(flow_spec, spec["width"], spec["height"])
    left, right = to_tchw(frames[:1]), to_tchw(frames[1:2])
    we, mf, known, warped_sum = reference_pair_terms(left, right, flow)
    ratios, _ = reference_ratios([we], [mf])
    return {"name": name, "scene": spec, "frame_checksums": [checksum(f) for f in frames],
            "flow": flow_spec, "known": known, "warped_checksum": warped_sum,
            "warp_error": sig(we), "mean_flow": sig(mf), "ratio": ratios[0]}


def compact_number_lists(text):
    """Puts arrays of numbers/nulls on one line to keep the fixture short and diffable."""
    return re.sub(r"\[\s*([-0-9.eE+,\snul]*?)\s*\]",
                  lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",")) + "]", text)


def dump_flow(dump, name, flow):
    if dump is not None:
        np.ascontiguousarray(flow, dtype="<f4").tofile(dump / f"{name}.f32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump-flows", type=Path, default=None)
    args = parser.parse_args()
    if args.dump_flows is not None:
        args.dump_flows.mkdir(parents=True, exist_ok=True)
    # torch's bilinear kernel differs by thread count (1 thread and C == 3 takes the
    # channels-last kernel); the reference runs multi-threaded, so pin 2 threads.
    torch.set_num_threads(2)
    out = {
        "generator": "tests/golden/eval/gen_mawe.py",
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "cv2": cv2.__version__, "torch_threads": torch.get_num_threads(),
                     "machine": platform.machine()},
        "coeff": COEFF,
        "farneback": dict(FARNEBACK, flags=0, gaussian_flag=int(GAUSSIAN_FLAG)),
        "checksum": "sum_i byte[i] * (i % 251 + 1) over row-major bytes (HWC for RGB)",
        "cases": [run_case(name, size, spec, args.dump_flows) for name, size, spec in CASES],
        "given_flow_cases": [run_given_flow_case(*case) for case in GIVEN_FLOW_CASES],
    }
    text = compact_number_lists(json.dumps(out, indent=1, allow_nan=False))
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
