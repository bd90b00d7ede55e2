"""Training data of the toy model set: frames, clips and captions rendered on the fly from the
toy world's seeded streams (`world.sample_spec`), and the CLIP tokenizer ids the graphs take.

Every batch is a pure function of (seed, step): clip index = step * batch + i of the split's
stream, with the clip's time drawn from the same generator. Nothing is stored.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch

from . import world

FRAME_RANGE = 240
"""Training frames are taken at a random time in [0, FRAME_RANGE) of their clip."""
HELDOUT_SEED = 20240
"""Seed of the held-out evaluation frames (split `heldout`), the same for every run."""

def scene_and_time(seed: int, index: int, split: str):
    """The spec of clip `index` of the split's stream and the frame time drawn for it."""
    rng = np.random.default_rng([seed, index, world.SPLITS.index(split)])
    spec = world.sample_spec(rng, split)
    return spec, int(rng.integers(0, FRAME_RANGE))


def frame_and_caption(seed: int, index: int, split: str, size: int):
    """One frame (size, size, 3) uint8 of clip `index` of the split's stream, at a random time,
    with its caption and spec. A pure function of its arguments."""
    spec, start = scene_and_time(seed, index, split)
    return world.render(spec, 1, size, start)[0], world.caption(spec), spec


TWIN_ATTRIBUTES = ("shape", "shape", "shape", "size", "colour")
"""What a twin changes (drawn uniformly from this list: shape three times as often)."""


def twin_spec(spec, rng: np.random.Generator):
    """A train-split spec that differs from `spec` in the shape, size or colour of one of its
    shapes (same layout and motion), or None when no such scene exists."""
    order = rng.permutation(len(TWIN_ATTRIBUTES))
    for attribute in [TWIN_ATTRIBUTES[i] for i in order]:
        k = int(rng.integers(len(spec.shapes)))
        options = {"shape": world.SHAPES, "size": world.SIZES, "colour": world.COLOURS}[attribute]
        current = getattr(spec.shapes[k], attribute)
        candidates = []
        for value in options:
            if value == current:
                continue
            shapes = list(spec.shapes)
            shapes[k] = replace(shapes[k], **{attribute: value})
            try:
                candidate = replace(spec, shapes=tuple(shapes))
            except ValueError:  # a colour clash: not a scene of the world
                continue
            if not world.is_heldout(candidate):
                candidates.append(candidate)
        if candidates:
            return candidates[int(rng.integers(len(candidates)))]
    return None


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], as the graphs take frames."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in about [-1, 1] -> uint8 (N, H, W, 3)."""
    values = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return values.permute(0, 2, 3, 1).cpu().numpy()


def frame_batch(seed: int, step: int, batch: int, size: int, split: str = "train"):
    """The frames, captions and specs of training step `step` (clips step*batch ...)."""
    items = [frame_and_caption(seed, step * batch + i, split, size) for i in range(batch)]
    frames = np.stack([item[0] for item in items])
    return frames, [item[1] for item in items], [item[2] for item in items]


def heldout_batch(count: int, size: int):
    """The fixed held-out evaluation frames (split `heldout`, HELDOUT_SEED)."""
    return frame_batch(HELDOUT_SEED, 0, count, size, split="heldout")


@lru_cache(maxsize=1)
def _tokenizer():
    from ..tokenizer import build_tokenizer

    return build_tokenizer()


@lru_cache(maxsize=4096)
def _token_ids(text: str) -> tuple[int, ...]:
    from ..tokenizer import EOS_ID, MAX_LENGTH, PAD_ID

    ids = _tokenizer().encode(text).ids
    if len(ids) > MAX_LENGTH:
        ids = ids[: MAX_LENGTH - 1] + [EOS_ID]
    return tuple(ids + [PAD_ID] * (MAX_LENGTH - len(ids)))


def tokenize(texts: list[str]) -> torch.Tensor:
    """(N, 77) int64 ids: the export's CLIP tokenizer (`tokenizer.build_tokenizer`), the engine's
    padding (id 0 after <|endoftext|>) and truncation (<|endoftext|> kept last)."""
    return torch.tensor([_token_ids(text) for text in texts], dtype=torch.int64)


def seed_of(*values: int) -> int:
    return zlib.crc32(np.array(values, dtype=np.int64).tobytes())


VIDEO_STREAM = 11
"""Fourth seed word of the generators of video clips (frames and captions stay unchanged)."""


def crossings(spec: world.SceneSpec, size: int) -> list[int]:
    """The frames j in [0, FRAME_RANGE - 1) after which a shape's centre crosses an edge of the
    frame (a straight motion wraps it to the opposite side between frames j and j + 1); empty
    for the other motions, which never wrap."""
    centres, _ = world.trajectory(spec, FRAME_RANGE, size)
    steps = np.abs(np.diff(centres, axis=1)).max(axis=(0, 2))
    return [int(j) for j in np.flatnonzero(steps > size / 2)]


def crossing_starts(spec: world.SceneSpec, frames: int, size: int) -> list[int]:
    """The clip starts in [0, FRAME_RANGE - frames] whose `frames` frames see a crossing
    (`crossings`) after the first frame."""
    last = FRAME_RANGE - frames
    return sorted({s for j in crossings(spec, size) for s in range(j - frames + 2, j + 1)
                   if 0 <= s <= last})


def video_clip(seed: int, index: int, split: str, frames: int, size: int, anchor: bool = False,
               beginning: bool = False, crossing: bool = False):
    """Clip `index` of the split's stream as a video: `frames` consecutive frames (frames, size,
    size, 3) uint8 from a random start in [0, FRAME_RANGE - frames] (from frame 0 with
    `beginning`, as stage 1 makes a video's first chunk), its caption and spec, and with `anchor`
    also one earlier frame (at a random time in [0, start], StreamingT2V's anchor "drawn from
    earlier in the video"). With `crossing` the scene is drawn again until it moves straight and
    the start is one where a shape crosses an edge (`crossing_starts`). A pure function of its
    arguments."""
    rng = np.random.default_rng([seed, index, world.SPLITS.index(split), VIDEO_STREAM])
    spec = world.sample_spec(rng, split)
    start = int(rng.integers(0, FRAME_RANGE - frames + 1))  # drawn either way: same stream
    start = 0 if beginning else start
    if crossing:
        while spec.motion not in world.DIRECTIONS:
            spec = world.sample_spec(rng, split)
        start = int(rng.choice(crossing_starts(spec, frames, size)))
    video = world.render(spec, frames, size, start)
    item = {"frames": video, "caption": world.caption(spec), "spec": spec, "start": start}
    if anchor:
        item["anchor"] = world.render(spec, 1, size, int(rng.integers(0, start + 1)))[0]
    return item


def video_batch(seed: int, step: int, batch: int, frames: int, size: int, anchor: bool = False,
                split: str = "train", beginning: bool = False, crossings: int = 0) -> list[dict]:
    """The clips of training step `step` (clips step*batch ...), the first `crossings` of them
    crossing an edge; see `video_clip`."""
    return [video_clip(seed, step * batch + i, split, frames, size, anchor, beginning,
                       crossing=i < crossings)
            for i in range(batch)]
