"""The motion part of the toy-world checker (`checker.py`, whose docstring defines every class
and threshold): the motion class a shape's centroid track shows, and how many frame pairs move
the caption's way. Tracks are (N, 2) centroids in pixels, NaN where the shape was not found;
displacements are taken on the torus, as the world wraps."""

from __future__ import annotations

import math

import numpy as np

from . import world

MIN_SPEED = 0.4 / 64  # of W per frame
LAG = 4
GROWTH_LAG = 8
GROWTH_PAIR_FRACTION = 0.6
GROWTH_MEDIAN_MIN = 0.02
BOUNCE_WINDOW = 3
BOUNCE_FLIP = 0.75
BOUNCE_WALL_MARGIN = 0.2  # of W
TURN_MIN_DEG = 30.0
STRAIGHTNESS_MIN = 0.8
PAIR_ANGLE_MAX_DEG = 45.0

_COMPASS = {name: math.degrees(math.atan2(-dy, dx)) for name, (dx, dy) in world.DIRECTIONS.items()}


def toroidal_displacements(track: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N-1, 2) frame-to-frame centroid steps, each axis wrapped into [-size/2, size/2)."""
    period = np.array([hw[1], hw[0]], dtype=float)
    steps = np.diff(track, axis=0)
    return np.mod(steps + period / 2, period) - period / 2


def analyse_motion(track: np.ndarray, areas: np.ndarray, detections: list[dict],
                   hw: tuple[int, int]) -> dict:
    """The motion class a centroid track shows, with the figures it was decided on."""
    width = hw[1]
    steps = toroidal_displacements(track, hw)
    valid = ~np.isnan(steps).any(axis=1)
    if valid.sum() < 2:
        return {"detected": "unknown", "speed": None}
    steps_ok = steps[valid]
    mean_velocity = steps_ok.mean(axis=0)
    lag, chords = _chords(track, hw)
    speed = float(np.median(np.linalg.norm(chords, axis=1))) / lag if len(chords) else 0.0
    path = float(np.linalg.norm(steps_ok, axis=1).sum())
    straightness = float(np.linalg.norm(steps_ok.sum(axis=0)) / path) if path > 0 else 0.0
    turn_deg, turn_thirds = _turning(chords)
    bounces = _bounces(steps, detections, hw)
    report = {
        "speed": round(speed, 4),
        "mean_velocity": [round(float(v), 4) for v in mean_velocity],
        "direction_deg": round(math.degrees(math.atan2(-mean_velocity[1], mean_velocity[0])), 2),
        "straightness": round(straightness, 4),
        "turn_deg": round(turn_deg, 2),
        "turn_thirds_deg": [round(v, 2) for v in turn_thirds],
        "bounces": bounces,
        "area_trend": _area_trend(areas),
    }
    report["detected"] = _motion_class(report, width)
    return report


def _motion_class(report: dict, width: int) -> str:
    if report["speed"] < MIN_SPEED * width:
        trend = report["area_trend"]
        change = trend["median_change"]
        if trend["increasing_fraction"] >= GROWTH_PAIR_FRACTION and change > GROWTH_MEDIAN_MIN:
            return "growing"
        if trend["decreasing_fraction"] >= GROWTH_PAIR_FRACTION and change < -GROWTH_MEDIAN_MIN:
            return "shrinking"
        return "static"
    if report["bounces"] > 0:
        return "bouncing"
    turn = report["turn_deg"]
    if abs(turn) >= TURN_MIN_DEG and all(v * turn > 0 for v in report["turn_thirds_deg"]):
        return "circling" if turn > 0 else "circling clockwise"
    if report["straightness"] < STRAIGHTNESS_MIN:
        return "irregular"
    return _nearest_compass(report["direction_deg"])


def _nearest_compass(angle_deg: float) -> str:
    return min(_COMPASS, key=lambda name: abs(_wrap_deg(angle_deg - _COMPASS[name])))


def _wrap_deg(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def _chords(track: np.ndarray, hw: tuple[int, int]) -> tuple[int, np.ndarray]:
    """Toroidal displacements over LAG frames (at most a quarter of the clip), missing ones dropped.

    Longer than one step, they average out rasterisation jitter (a growing square's centroid
    moves half a pixel whenever one of its sides gains a row)."""
    lag = max(1, min(LAG, len(track) // 4))
    period = np.array([hw[1], hw[0]], dtype=float)
    chords = np.mod(track[lag:] - track[:-lag] + period / 2, period) - period / 2
    return lag, chords[~np.isnan(chords).any(axis=1)]


def _turning(chords: np.ndarray) -> tuple[float, list[float]]:
    """Total heading change of the chords (degrees, counter-clockwise on screen positive), and
    how the mean heading changes from the first third of the chords to the second and from the
    second to the last (a steady turn moves both ways the same as the total)."""
    if len(chords) < 3:
        return 0.0, [0.0, 0.0]
    headings = np.unwrap(np.degrees(np.arctan2(-chords[:, 1], chords[:, 0])), period=360.0)
    thirds = [float(part.mean()) for part in np.array_split(headings, 3)]
    return float(headings[-1] - headings[0]), [thirds[1] - thirds[0], thirds[2] - thirds[1]]


def _bounces(steps: np.ndarray, detections: list[dict], hw: tuple[int, int]) -> int:
    """Abrupt reversals of a velocity component next to the wall the shape moved towards.

    The BOUNCE_WINDOW steps before and after a reversal (one or two steps straddle the wall)
    average out rasterisation jitter; each side must move at >= BOUNCE_FLIP of the axis' fast
    speed, opposite ways: a bounce turns round in a step, a circling shape in many. A shape that
    ever wraps across an edge does not bounce (0)."""
    if any(d.get("wrapped") for d in detections):
        return 0
    count = 0
    window = BOUNCE_WINDOW
    for axis, size in ((0, hw[1]), (1, hw[0])):
        component = steps[:, axis]
        typical = _typical_speed(component, window)
        if typical < MIN_SPEED * hw[1]:
            continue
        need = BOUNCE_FLIP * typical
        t = window
        while t < len(component) - window:
            if _bounce_at(component, t, window, need, detections, axis, size):
                count += 1
                t += window + 2
            else:
                t += 1
    return count


def _typical_speed(component: np.ndarray, window: int) -> float:
    """The 90th percentile of |mean of `window` consecutive steps| along one axis (0 when
    unknown): the speed of the axis' fast stretches, which a bounce keeps on both sides."""
    if len(component) < window:
        return 0.0
    means = np.convolve(component, np.ones(window) / window, mode="valid")
    means = np.abs(means[~np.isnan(means)])
    return float(np.percentile(means, 90)) if len(means) else 0.0


def _bounce_at(component, t, window, need, detections, axis, size) -> bool:
    before = component[t - window:t].mean()
    for straddle in (1, 2):
        after_steps = component[t + straddle:t + straddle + window]
        if len(after_steps) < window:
            return False
        after = after_steps.mean()
        if min(abs(before), abs(after)) >= need and np.sign(before) != np.sign(after):
            margin = BOUNCE_WALL_MARGIN * size
            return _near_wall(detections, axis, t, t + straddle, before > 0, margin, size)
    return False


def _near_wall(detections, axis, first, last, towards_high, margin, size) -> bool:
    for d in detections[first:last + 1]:
        if not d["found"]:
            continue
        low, high = d["bbox"][axis], d["bbox"][axis + 2]
        if (towards_high and high >= size - margin) or (not towards_high and low <= margin):
            return True
    return False


def _area_trend(areas: np.ndarray) -> dict:
    lag = max(1, min(GROWTH_LAG, len(areas) // 2))
    change = areas[lag:] / areas[:-lag] - 1
    change = change[~np.isnan(change)]
    if not len(change):
        return {"increasing_fraction": 0.0, "decreasing_fraction": 0.0, "median_change": 0.0}
    return {
        "increasing_fraction": round(float(np.mean(change > 0)), 4),
        "decreasing_fraction": round(float(np.mean(change < 0)), 4),
        "median_change": round(float(np.median(change)), 4),
    }


def pair_direction_fraction(track: np.ndarray, motion: str, hw: tuple[int, int]) -> float:
    steps = toroidal_displacements(track, hw)
    steps = steps[~np.isnan(steps).any(axis=1)]
    if not len(steps):
        return 0.0
    direction = np.array(world.DIRECTIONS[motion], dtype=float)
    direction /= np.linalg.norm(direction)
    norms = np.linalg.norm(steps, axis=1)
    cosines = (steps @ direction) / np.maximum(norms, 1e-9)
    return round(float(np.mean(cosines >= math.cos(math.radians(PAIR_ANGLE_MAX_DEG)))), 4)
