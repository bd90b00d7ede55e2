"""The checker's shape class of one blob: a linear classifier on its outline, fitted beside it.

The world's shapes are drawn upright and never rotate, so a blob's outline seen from its centroid
tells them apart: the farthest pixel corner in each of ANGLE_BINS directions (over sqrt(area),
so the profile does not depend on the size or the frame's resolution) has three peaks for a
triangle, four on the axes for a diamond, four on the diagonals for a square, five deep ones for
a star and none for a circle. Beside the profile: the bbox fill, the solidity and the centroid's
offset below the bbox centre (`checker.blob_geometry`).

Crisp renders are told apart by thresholds on those three alone (the checker's first rule), but
a model set's frames come through its VAE, whose decoder rounds corners and fills a star's notches
(64x64 frames on 8x8 latents): the rule read 59 % of the frames of models/toy's reconstructions
of true clips right (stars as circles), where the generator was not at fault. The classifier is
a multinomial logistic regression on the standardised features, fitted (`shape_fit.py`, `toy
fit-shapes`) on the train split's clips rendered at several sizes and as reconstructed by a model
set's VAE, and judged on the held-out split; its weights and those measurements are in
`shape_class.json`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

ANGLE_BINS = 32
GEOMETRY = ("fill", "solidity", "centroid_offset")
WEIGHTS_FILE = Path(__file__).with_name("shape_class.json")


def outline_profile(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(ANGLE_BINS,): the farthest pixel corner from the centroid in each direction (bin 0 starts
    at -180 degrees, angles on screen with y down), over sqrt(area).
    `xs`, `ys`: the blob's pixel indices, unwrapped across the frame's edges."""
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    corner_x = np.concatenate([xs, xs + 1, xs, xs + 1]) - cx
    corner_y = np.concatenate([ys, ys, ys + 1, ys + 1]) - cy
    angle = np.arctan2(corner_y, corner_x)
    bins = ((angle + np.pi) / (2 * np.pi) * ANGLE_BINS).astype(int) % ANGLE_BINS
    profile = np.zeros(ANGLE_BINS)
    np.maximum.at(profile, bins, np.hypot(corner_x, corner_y))
    return _fill_empty_bins(profile) / np.sqrt(len(xs))


def _fill_empty_bins(profile: np.ndarray) -> np.ndarray:
    """A thin notch (a small star's, at 64 pixels) can leave a direction without a corner: it
    gets the circular linear interpolation of the bins beside it, so the profile stays smooth."""
    empty = profile == 0
    if not empty.any() or empty.all():
        return profile
    bins = np.arange(len(profile))
    known, values = bins[~empty], profile[~empty]
    period = len(profile)
    profile = profile.copy()
    profile[empty] = np.interp(bins[empty], np.r_[known - period, known, known + period],
                               np.r_[values, values, values])
    return profile


def feature_vector(xs: np.ndarray, ys: np.ndarray, geometry: dict) -> np.ndarray:
    """The classifier's input: the outline profile, then GEOMETRY from `checker.blob_geometry`."""
    return np.concatenate([outline_profile(xs, ys), [float(geometry[k]) for k in GEOMETRY]])


class ShapeClassifier:
    """argmax over classes of ((features - mean) / scale) @ weights + bias."""

    def __init__(self, classes, mean, scale, weights, bias):
        self.classes = tuple(classes)
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)
        self.weights, self.bias = np.asarray(weights, float), np.asarray(bias, float)
        expected = (len(self.mean), len(self.classes))
        if self.weights.shape != expected or self.bias.shape != expected[1:]:
            raise ValueError(f"shape classifier weights {self.weights.shape} / bias "
                             f"{self.bias.shape}, expected {expected} / {expected[1:]}")

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(features) - self.mean) / self.scale) @ self.weights + self.bias

    def classify(self, features: np.ndarray) -> str:
        return self.classes[int(self.scores(features)[0].argmax())]

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> ShapeClassifier:
        return cls(data["classes"], data["mean"], data["scale"], data["weights"], data["bias"])


@lru_cache(maxsize=1)
def committed() -> ShapeClassifier:
    """The classifier in shape_class.json (what the checker uses)."""
    data = json.loads(WEIGHTS_FILE.read_text())
    if data["angle_bins"] != ANGLE_BINS or tuple(data["geometry"]) != GEOMETRY:
        raise ValueError(f"{WEIGHTS_FILE} was fitted on other features: {data['angle_bins']} "
                         f"angle bins and {data['geometry']}, this code makes {ANGLE_BINS} and "
                         f"{list(GEOMETRY)}")
    return ShapeClassifier.from_dict(data["classifier"])
