"""Checks a toy-world video against its caption: colour, shape, size, motion, identity, seams.

Frames are uint8 (N, H, W, 3) RGB; the scene comes from the caption (`world.parse_caption`) or a
`SceneSpec`. Everything returned is a plain JSON-serialisable dict. Lengths are pixels; thresholds
given "at 64" scale with the frame width W.

Per frame (`detect_shapes`): each pixel is labelled with the nearest of the expected background
(rendered from the spec) and the palette colours; a palette label needs an RGB distance of at most
COLOUR_MATCH_MAX (60) and beats the background. Each expected shape is the largest 4-connected
component (connected across the frame's edges, as the world wraps) of its colour's pixels, if it
has at least MIN_AREA_FRACTION (0.4 %) of the frame; otherwise the largest such component of a
colour no other expected shape has (a shape whose colour went wrong), otherwise "not found".
For each found shape:
- colour: palette name nearest the component's mean RGB (`rgb`);
- centroid [x, y], pixel centres at +0.5, computed after unwrapping a shape split across the
  edges; area (pixels); bbox [x0, y0, x1, y1] (pixel edges; may pass the frame's edge when the
  shape is wrapped, `wrapped`);
- fill (area / bbox area), solidity (area / area of the convex hull of its pixel squares) and
  centroid_offset (centroid below the bbox centre, / bbox height);
- shape: `shape_class.py`'s classifier of the blob's outline (the farthest pixel corner from the
  centroid in 32 directions) and those three, fitted on crisp and VAE-decoded frames
  (`shape_class.json` has its held-out accuracy). `rule_shape` is the first rule on the three
  alone, exact on crisp renders only: solidity < 0.73 star; else fill >= 0.9 square; fill >=
  0.66 circle; centroid_offset >= 0.08 triangle (apex up); else diamond.

Per video and expected shape:
- found_fraction, colour_accuracy, shape_accuracy: fractions of all frames. colour_ok, shape_ok:
  accuracy >= ACCURACY_MIN (0.9); missing when found_fraction < 0.9. shape_detected: the shape
  class read most often in the frames where the shape is found (None when it never is), what a
  wrong shape was taken for.
- size: the median area (first chunk) nearest in log area to the spec's small/medium/large
  area for that shape; not judged for growing/shrinking (size_ok None).
- motion (`motion_check.py`): displacements between consecutive centroids are taken on the
  torus (wrapped into [-W/2, W/2)). detected is, in this order of precedence:
  "growing" / "shrinking" / "static" when the speed (median length of the LAG-frame chords,
  / LAG; LAG = 4, at most a quarter of the clip) is below MIN_SPEED (0.4 px/frame at 64):
  growth when the area ratio over GROWTH_LAG frames (8, at most half the clip) is > 1 in
  >= 60 % of the pairs with a median change > 2 % (< 1 for shrinking);
  "bouncing" when a velocity component reverses abruptly (the means of the BOUNCE_WINDOW (3)
  steps before and after a reversal, one or two steps straddling it, are opposite and both
  >= 0.75 of the axis' fast speed, the 90th percentile of such means) with the shape within
  20 % of the frame of the wall it moved towards, and the shape never wraps;
  "circling" / "circling clockwise" when the heading of the LAG-frame chords turns >= 30 degrees
  in all and the mean heading of each third of the chords turns the same way from the previous
  third (counter-clockwise on screen is "circling");
  else the nearest of the eight compass directions to the mean velocity, or "irregular" when the
  track is not straight (net / path length < 0.8). motion_ok: detected == the caption's motion.
  pair_direction_fraction (straight motions): frame pairs whose displacement is within 45
  degrees of the caption's direction.
- identity: colour_drift = RGB distance of each frame's mean colour from the first chunk's mean
  colour (max and mean; held when max <= COLOUR_DRIFT_MAX, 40); size_drift = max |area / first
  chunk's median area - 1| (held when <= SIZE_DRIFT_MAX, 0.35; not judged when growing or
  shrinking). The first chunk ends at the first chunk start (16 frames when none are given).
- seams (with chunk_starts): at seam s the displacement from frame s-1 to s is compared with the
  largest displacement inside the two chunks it joins; it jumps when it exceeds that by more than
  SEAM_TOLERANCE (1 px at 64, rasterisation noise). velocity_jump = |v after - v before| (the
  displacements next to the seam pair) beside the largest in-chunk change of velocity.

Per video, the background: a frame has it when at least BACKGROUND_PIXELS_MIN (half) of its
pixels are within COLOUR_MATCH_MAX of the expected background (rendered from the spec, gradients
included; the shapes cover far less than half a frame); background_ok: at least ACCURACY_MIN of
the frames have it.

flags name what failed ("shape0:colour", "shape1:seam_jump", "background", ...); ok is True when
there are none.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from . import shape_class, world
from .motion_check import analyse_motion, pair_direction_fraction, toroidal_displacements
from .world import SceneSpec

COLOUR_MATCH_MAX = 60.0
MIN_AREA_FRACTION = 0.004
STAR_SOLIDITY_MAX = 0.73
SQUARE_FILL_MIN = 0.9
CIRCLE_FILL_MIN = 0.66
TRIANGLE_OFFSET_MIN = 0.08

ACCURACY_MIN = 0.9
COLOUR_DRIFT_MAX = 40.0
SIZE_DRIFT_MAX = 0.35
SEAM_TOLERANCE = 1.0 / 64  # of W
DEFAULT_FIRST_CHUNK = 16
BACKGROUND_PIXELS_MIN = 0.5

_PALETTE_RGB = np.array([world.PALETTE[c] for c in world.COLOURS], dtype=np.float32)


def _as_spec(caption_or_spec: str | SceneSpec | dict) -> SceneSpec:
    if isinstance(caption_or_spec, SceneSpec):
        return caption_or_spec
    if isinstance(caption_or_spec, dict):
        return SceneSpec.from_dict(caption_or_spec)
    return world.parse_caption(caption_or_spec)


# ------------------------------------------------------------------------- per-frame detection


def label_pixels(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W) int: palette index of each pixel, -1 for background or no palette colour."""
    pixels = frame.astype(np.float32)
    to_palette = np.linalg.norm(pixels[:, :, None, :] - _PALETTE_RGB, axis=-1)
    nearest = to_palette.argmin(axis=-1)
    nearest_distance = np.take_along_axis(to_palette, nearest[..., None], axis=-1)[..., 0]
    to_background = np.linalg.norm(pixels - background.astype(np.float32), axis=-1)
    is_colour = (nearest_distance <= COLOUR_MATCH_MAX) & (nearest_distance < to_background)
    return np.where(is_colour, nearest, -1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of `mask`, connected across the frame's edges."""
    height, width = mask.shape
    outside = height * width
    labels = np.where(mask, np.arange(outside).reshape(height, width), outside)
    while True:
        merged = labels
        for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
            merged = np.minimum(merged, np.roll(labels, shift, axis))
        merged = np.where(mask, merged, outside).ravel()
        inside = merged < outside
        merged[inside] = merged[merged[inside]]  # pointer jumping: follow the label's own label
        merged = merged.reshape(height, width)
        if np.array_equal(merged, labels):
            break
        labels = merged
    counts = np.bincount(labels[mask], minlength=outside)
    return labels == counts.argmax() if mask.any() else mask


def _unwrap(indices: np.ndarray, period: int) -> np.ndarray:
    """Pixel indices of a blob on a circle of `period`, shifted so the blob is contiguous."""
    occupied = np.zeros(period, dtype=bool)
    occupied[indices] = True
    if not (occupied[0] and occupied[-1]) or occupied.all():
        return indices
    run_starts = np.flatnonzero(occupied & ~np.roll(occupied, 1))
    spans = [np.mod(indices - s, period).max() for s in run_starts]
    start = run_starts[int(np.argmin(spans))]
    return np.mod(indices - start, period) + start


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (k, 2) points (monotone chain)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def half(sequence):
        chain: list[tuple[float, float]] = []
        for p in sequence:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = np.array(half(pts) + half(pts[::-1]))
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _row_ends(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The leftmost and rightmost pixel centre of every row (enough for the convex hull)."""
    order = np.lexsort((xs, ys))
    xs, ys = xs[order], ys[order]
    first = np.r_[True, ys[1:] != ys[:-1]]
    last = np.r_[ys[1:] != ys[:-1], True]
    return np.concatenate([np.stack([xs[first], ys[first]], 1), np.stack([xs[last], ys[last]], 1)])


def blob_geometry(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """One blob (a boolean (H, W) mask): its pixel indices unwrapped across the edges (xs, ys),
    and its position and geometry."""
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    xs, ys = _unwrap(cols, width), _unwrap(rows, height)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    area = len(xs)
    centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    hull_of_centres = _hull_area(_row_ends(xs, ys).astype(float))
    # The hull of the pixel squares is the hull of their centres grown by a unit square.
    hull = hull_of_centres + (x1 - x0 - 1) + (y1 - y0 - 1) + 1
    return xs, ys, {
        "centroid": [float(centroid[0] % width), float(centroid[1] % height)],
        "area": int(area),
        "bbox": [int(x0), int(y0), int(x1), int(y1)],
        "wrapped": bool(x1 > width or y1 > height),
        "fill": area / float((x1 - x0) * (y1 - y0)),
        "solidity": min(1.0, area / hull),
        "centroid_offset": float((centroid[1] - (y0 + y1) / 2) / (y1 - y0)),
    }


def rule_shape(features: dict) -> str:
    """The first rule, exact on crisp renders only: circle / square / triangle / diamond / star
    from fill, solidity and centroid offset (kept to measure the classifier against)."""
    if features["solidity"] < STAR_SOLIDITY_MAX:
        return "star"
    if features["fill"] >= SQUARE_FILL_MIN:
        return "square"
    if features["fill"] >= CIRCLE_FILL_MIN:
        return "circle"
    if features["centroid_offset"] >= TRIANGLE_OFFSET_MIN:
        return "triangle"
    return "diamond"


def _describe_blob(frame: np.ndarray, mask: np.ndarray) -> dict:
    xs, ys, features = blob_geometry(mask)
    rgb = frame[mask].astype(np.float64).mean(axis=0)
    colour = world.COLOURS[int(np.linalg.norm(_PALETTE_RGB - rgb, axis=1).argmin())]
    shape = shape_class.committed().classify(shape_class.feature_vector(xs, ys, features))
    return {"found": True, "colour": colour, "rgb": [round(float(v), 2) for v in rgb],
            "shape": shape, **_rounded(features)}


def _rounded(features: dict) -> dict:
    return {k: [round(v, 3) for v in val] if k == "centroid" else
            round(val, 4) if isinstance(val, float) else val for k, val in features.items()}


def detect_shapes(frame: np.ndarray, spec: str | SceneSpec | dict,
                  background: np.ndarray | None = None) -> list[dict]:
    """One dict per expected shape, in the spec's order: {"found": False} or the blob's figures."""
    spec = _as_spec(spec)
    height, width = frame.shape[:2]
    if background is None:
        background = world.render_background(spec.background, height, width)
    labels = label_pixels(frame, background)
    min_area = MIN_AREA_FRACTION * height * width
    expected = [world.COLOURS.index(s.colour) for s in spec.shapes]
    blobs: list[np.ndarray | None] = [colour_blob(labels, c, min_area) for c in expected]
    if any(b is None for b in blobs):
        _fill_with_other_colours(labels, blobs, expected, min_area)
    return [_describe_blob(frame, b) if b is not None else {"found": False} for b in blobs]


def colour_blob(labels: np.ndarray, colour_index: int, min_area: float) -> np.ndarray | None:
    """The largest blob of one palette colour in `label_pixels`' labels, if big enough."""
    mask = labels == colour_index
    if mask.sum() < min_area:
        return None
    blob = largest_component(mask)
    return blob if blob.sum() >= min_area else None


def _fill_with_other_colours(labels, blobs, expected, min_area) -> None:
    """Give a shape whose colour is absent the largest blob of a colour no expected shape has."""
    candidates = []
    for colour_index in range(len(world.COLOURS)):
        if colour_index not in expected:
            blob = colour_blob(labels, colour_index, min_area)
            if blob is not None:
                candidates.append(blob)
    candidates.sort(key=lambda b: -int(b.sum()))
    for k, blob in enumerate(blobs):
        if blob is None and candidates:
            blobs[k] = candidates.pop(0)


# ---------------------------------------------------------------------------------- the video


def check_video(frames: np.ndarray, caption_or_spec: str | SceneSpec | dict,
                chunk_starts: list[int] | None = None) -> dict:
    """Caption adherence, identity and seam continuity of an (N, H, W, 3) uint8 video."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames are (N, H, W, 3), got {frames.shape}")
    spec = _as_spec(caption_or_spec)
    count, height, width = frames.shape[:3]
    seams = sorted({int(s) for s in (chunk_starts or []) if 0 < int(s) < count})
    background = world.render_background(spec.background, height, width)
    per_frame = [detect_shapes(f, spec, background) for f in frames]
    first_chunk_end = seams[0] if seams else min(DEFAULT_FIRST_CHUNK, count)
    shapes = [
        _check_shape(spec, k, [d[k] for d in per_frame], (height, width), seams, first_chunk_end)
        for k in range(len(spec.shapes))
    ]
    flags = [f"shape{k}:{flag}" for k, s in enumerate(shapes) for flag in s.pop("flags")]
    backdrop = check_background(frames, background)
    if not backdrop["ok"]:
        flags.append("background")
    return {
        "caption": world.caption(spec),
        "spec": spec.to_dict(),
        "frames": int(count),
        "height": int(height),
        "width": int(width),
        "chunk_starts": seams,
        "shapes": shapes,
        "background": backdrop,
        "adherence": {
            **{key: all(s[key] is not False for s in shapes)
               for key in ("colour_ok", "shape_ok", "size_ok", "motion_ok")},
            "background_ok": backdrop["ok"],
        },
        "seam_jumps": sum(s["seam_jumps"] for s in shapes),
        "flags": flags,
        "ok": not flags,
        "per_frame": per_frame,
    }


def check_background(frames: np.ndarray, background: np.ndarray) -> dict:
    """The fraction of frames whose pixels are mostly the expected background."""
    distance = np.linalg.norm(frames.astype(np.float32) - background.astype(np.float32), axis=-1)
    per_frame = (distance <= COLOUR_MATCH_MAX).mean(axis=(1, 2))
    accuracy = float((per_frame >= BACKGROUND_PIXELS_MIN).mean())
    return {"accuracy": round(accuracy, 4), "ok": accuracy >= ACCURACY_MIN}


def _check_shape(spec: SceneSpec, k: int, detections: list[dict], hw: tuple[int, int],
                 seams: list[int], first_chunk_end: int) -> dict:
    expected = spec.shapes[k]
    count = len(detections)
    found = np.array([d["found"] for d in detections])
    track = np.array([d["centroid"] if d["found"] else [np.nan, np.nan] for d in detections])
    areas = np.array([d["area"] if d["found"] else np.nan for d in detections], dtype=float)
    colour_accuracy = sum(d.get("colour") == expected.colour for d in detections) / count
    shape_accuracy = sum(d.get("shape") == expected.shape for d in detections) / count
    readings = Counter(d["shape"] for d in detections if d["found"])
    grows = spec.motion in ("growing", "shrinking")
    size = None if grows else _size_label(expected.shape, areas[:first_chunk_end], hw[1])
    motion = analyse_motion(track, areas, detections, hw)
    motion["expected"] = spec.motion
    motion["ok"] = motion["detected"] == spec.motion
    if spec.motion in world.DIRECTIONS:
        motion["pair_direction_fraction"] = pair_direction_fraction(track, spec.motion, hw)
    identity = _identity(detections, areas, first_chunk_end, grows)
    seam_report = _seams(track, seams, hw) if seams else []
    result = {
        "expected": {"shape": expected.shape, "colour": expected.colour, "size": expected.size},
        "found_fraction": round(float(found.mean()), 4),
        "colour_accuracy": round(colour_accuracy, 4),
        "shape_accuracy": round(shape_accuracy, 4),
        "colour_ok": colour_accuracy >= ACCURACY_MIN,
        "shape_ok": shape_accuracy >= ACCURACY_MIN,
        "shape_detected": readings.most_common(1)[0][0] if readings else None,
        "size_detected": size,
        "size_ok": None if grows else size == expected.size,
        "motion_ok": motion["ok"],
        "motion": motion,
        "identity": identity,
        "seams": seam_report,
        "seam_jumps": sum(s["jumps"] for s in seam_report),
    }
    result["flags"] = _flags(result)
    return result


def _flags(result: dict) -> list[str]:
    flags = []
    if result["found_fraction"] < ACCURACY_MIN:
        flags.append("missing")
    for key in ("colour", "shape", "size", "motion"):
        if result[f"{key}_ok"] is False:
            flags.append(key)
    if result["identity"]["colour_held"] is False:
        flags.append("colour_drift")
    if result["identity"]["size_held"] is False:
        flags.append("size_drift")
    if result["seam_jumps"]:
        flags.append("seam_jump")
    return flags


def _size_label(shape: str, areas: np.ndarray, width: int) -> str | None:
    areas = areas[~np.isnan(areas)]
    if not len(areas):
        return None
    reference = {s: world.shape_area(shape, world.base_radius(s, width)) for s in world.SIZES}
    measured = math.log(float(np.median(areas)))
    return min(world.SIZES, key=lambda s: abs(math.log(reference[s]) - measured))


def _identity(detections: list[dict], areas: np.ndarray, first_chunk_end: int,
              grows: bool) -> dict:
    rgb = np.array([d["rgb"] if d["found"] else [np.nan] * 3 for d in detections], dtype=float)
    head = rgb[:first_chunk_end]
    if np.isnan(head).all() or np.isnan(rgb).all():
        return {"colour_drift_max": None, "colour_drift_mean": None, "colour_held": False,
                "size_drift_max": None, "size_held": None if grows else False}
    drift = np.linalg.norm(rgb - np.nanmean(head, axis=0), axis=1)
    size_drift = None
    if not grows:
        size_drift = float(np.nanmax(np.abs(areas / np.nanmedian(areas[:first_chunk_end]) - 1)))
    return {
        "colour_drift_max": round(float(np.nanmax(drift)), 3),
        "colour_drift_mean": round(float(np.nanmean(drift)), 3),
        "colour_held": bool(np.nanmax(drift) <= COLOUR_DRIFT_MAX),
        "size_drift_max": None if size_drift is None else round(size_drift, 4),
        "size_held": None if grows else bool(size_drift <= SIZE_DRIFT_MAX),
    }


# -------------------------------------------------------------------------------------- seams


def _seams(track: np.ndarray, seams: list[int], hw: tuple[int, int]) -> list[dict]:
    steps = toroidal_displacements(track, hw)
    lengths = np.linalg.norm(steps, axis=1)
    changes = np.linalg.norm(np.diff(steps, axis=0), axis=1)
    bounds = [0, *seams, len(track)]
    tolerance = SEAM_TOLERANCE * hw[1]
    report = []
    for i, seam in enumerate(seams):
        chunk_pairs = [p for p in range(bounds[i], bounds[i + 2] - 1) if p != seam - 1]
        inside = _nanmax(lengths[chunk_pairs]) if chunk_pairs else None
        inside_change = _nanmax(changes[[p for p in chunk_pairs[:-1] if p + 1 in chunk_pairs]])
        displacement = _finite(lengths[seam - 1])
        velocity_jump = None
        if seam - 2 >= 0 and seam < len(steps):
            velocity_jump = _finite(np.linalg.norm(steps[seam] - steps[seam - 2]))
        jumps = None not in (displacement, inside) and displacement > inside + tolerance
        report.append({
            "frame": seam,
            "displacement": displacement,
            "max_in_chunk_displacement": inside,
            "velocity_jump": velocity_jump,
            "max_in_chunk_velocity_change": inside_change,
            "jumps": bool(jumps),
        })
    return report


def _nanmax(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return round(float(values.max()), 4) if len(values) else None


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)
