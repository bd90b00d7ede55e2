"""The toy world: scene specs, their rendering, their captions and the train / held-out split.

A scene is one or two flat-coloured shapes sharing one motion on a plain or gradient background.
A clip is a pure function of a `SceneSpec` (and of `(seed, index, split)` through `clip`), so
training data is generated on the fly and a generated video can be checked against its prompt
(`parse_caption` inverts `caption`; see `checker`). Frames are square, `size` pixels a side
(64 by default); every length and speed below is a fraction of the frame, so other sizes render
the same scene (shapes stay classifiable from 64 pixels up).

Geometry. Pixel (row i, column j) has its centre at x = j + 0.5, y = i + 0.5 (y points down).
Each shape is inscribed in a circle of radius r (its size), is drawn upright and never rotates,
and is rasterised without anti-aliasing (a pixel takes the shape's colour when its centre is
inside), so shapes segment exactly by colour.

Motion (continuous for any clip length):
- the eight directions (left, right, up, down, up-left, up-right, down-left, down-right) move at
  a constant velocity on a torus: a shape leaving one edge re-enters at the opposite one (drawn
  split across the edges meanwhile), so every frame pair of a 240-frame "moving left" clip moves
  left by the same amount;
- bouncing moves diagonally at a constant speed and reflects off the walls (the shape's
  circumscribed circle touches the wall); it never wraps;
- circling goes counter-clockwise on screen around the frame's centre (radius a quarter of the
  frame);
- growing / shrinking stand still while the size ramps linearly between 0.7 r and 1.25 r over
  GROWTH_PERIOD frames and then restarts: the world's only discontinuity is that size reset
  (positions never jump).
A straight motion's clips start on the side the shape moves away from (`ENTRY_OFFSET`, jitter
`ENTRY_JITTER`), so a video's first frames already tell where it is going: with the start free
anywhere, the mean of the "moving left" clips equals that of "moving right" (a smear), and a
diffusion model sees the direction only in how the frames co-vary (TRAINING.md, item 0).
Two shapes never overlap: on the torus the second is offset by half the frame in x and y; when
bouncing it is the first one's point reflection through the frame's centre (both on one diamond
orbit); when circling it is half a turn ahead; growing or shrinking, they stand at STANDING_PAIR
and half a frame further in x and y.

Held-out split: a (colour, shape, motion) triple is held out when
(colour index + 2 * shape index + 3 * motion index) % 7 == 0 (indices into COLOURS, SHAPES,
MOTIONS). That is 86 of the 600 triples: at most 2 of the 12 motions of a colour-shape pair,
1 of the 5 shapes of a colour-motion pair and 2 of the 10 colours of a shape-motion pair, so
every pair still occurs in training. A scene is held out when any of its shapes is.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (250, 140, 30),
    "yellow": (245, 220, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 70, 210),
    "purple": (140, 60, 190),
    "pink": (245, 130, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "diamond", "star")
SIZES = ("small", "medium", "large")
UNMARKED_SIZE = "medium"  # captions leave it out: "a red circle" is medium
SIZE_RADIUS = {"small": 0.125, "medium": 0.16, "large": 0.19}  # circumradius / frame size

# Unit direction of each straight motion, screen coordinates (y down).
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up-left": (-1, -1),
    "up-right": (1, -1),
    "down-left": (-1, 1),
    "down-right": (1, 1),
}
MOTIONS = tuple(DIRECTIONS) + ("bouncing", "circling", "growing", "shrinking")
GRADIENTS = ("vertical gradient", "horizontal gradient")
BACKGROUNDS = COLOURS + GRADIENTS  # a palette colour means a plain background
GRADIENT_ENDS = ((60, 60, 60), (190, 190, 190))  # top -> bottom (vertical), left -> right

AXIS_SPEED = 1.5 / 64  # left/right/up/down, frame sizes per frame
DIAGONAL_AXIS_SPEED = 1.2 / 64  # per axis, for the four diagonals
BOUNCE_AXIS_SPEED = 2.6 / 64  # per axis (bouncing is always at 45 degrees)
CIRCLE_RADIUS = 0.25
CIRCLE_SPEED = 1.5 / 64  # along the circle
GROWTH_PERIOD = 32
GROWTH_RANGE = (0.7, 1.25)
STAR_INNER_RATIO = 0.45
SQUARE_HALF_SIDE = 0.7  # of r, so the square's corners stay inside the radius-r circle

STANDING_PAIR = (0.254, 0.254)  # off the pixel grid: growth shows on each side in turn
DEFAULT_LAYOUT = (0.35, 0.3)
HELDOUT_MODULUS = 7
ENTRY_OFFSET = 0.3
"""A straight motion starts at 0.5 - ENTRY_OFFSET * direction (per axis, fractions)..."""
ENTRY_JITTER = 0.12
"""... plus a uniform offset in [-ENTRY_JITTER, ENTRY_JITTER] per axis."""


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str = UNMARKED_SIZE


@dataclass(frozen=True)
class SceneSpec:
    """What a clip shows. Everything but `layout` is in the caption.

    layout: where the motion starts, motion by motion (fractions): the first shape's centre for
    the eight directions (sampled on the side it moves away from) and growing/shrinking (one
    shape); the start of each axis' bounce cycle
    (fraction of the back-and-forth period) for bouncing, x only with two shapes; the start angle
    in turns (first value) for circling. parse_caption gives DEFAULT_LAYOUT.
    """

    shapes: tuple[ShapeSpec, ...]
    motion: str
    background: str = "white"  # a palette colour, or "vertical gradient" / "horizontal gradient"
    layout: tuple[float, float] = DEFAULT_LAYOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", tuple(_as_shape(s) for s in self.shapes))
        object.__setattr__(self, "layout", tuple(float(v) for v in self.layout))
        _validate(self)

    def described(self) -> SceneSpec:
        """The spec its caption describes (layout reset to the default)."""
        return replace(self, layout=DEFAULT_LAYOUT)

    def to_dict(self) -> dict:
        return {
            "shapes": [asdict(s) for s in self.shapes],
            "motion": self.motion,
            "background": self.background,
            "layout": list(self.layout),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SceneSpec:
        return cls(
            shapes=tuple(ShapeSpec(**s) for s in data["shapes"]),
            motion=data["motion"],
            background=data.get("background", "white"),
            layout=tuple(data.get("layout", DEFAULT_LAYOUT)),
        )


def _as_shape(value: ShapeSpec | dict) -> ShapeSpec:
    return value if isinstance(value, ShapeSpec) else ShapeSpec(**value)


def _validate(spec: SceneSpec) -> None:
    if not 1 <= len(spec.shapes) <= 2:
        raise ValueError(f"a scene has one or two shapes, not {len(spec.shapes)}")
    for s in spec.shapes:
        for value, allowed, what in ((s.shape, SHAPES, "shape"), (s.colour, COLOURS, "colour"),
                                     (s.size, SIZES, "size")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r} (one of {', '.join(allowed)})")
    if spec.motion not in MOTIONS:
        raise ValueError(f"unknown motion {spec.motion!r} (one of {', '.join(MOTIONS)})")
    if spec.background not in BACKGROUNDS:
        raise ValueError(f"unknown background {spec.background!r}")
    colours = [s.colour for s in spec.shapes]
    if len(set(colours)) != len(colours):
        raise ValueError("the shapes of a scene have different colours")
    if spec.background in colours:
        a = f"{_article(spec.background)} {spec.background}"
        raise ValueError(f"{a} shape on {a} background")
    if len(spec.layout) != 2:
        raise ValueError("layout has two values")


# ---------------------------------------------------------------------------------- geometry


def base_radius(size_name: str, size: int) -> float:
    return SIZE_RADIUS[size_name] * size


def shape_area(shape: str, radius: float) -> float:
    """Exact area of a shape of circumradius `radius` (pixels squared)."""
    if shape == "circle":
        return math.pi * radius**2
    if shape == "square":
        return (2 * SQUARE_HALF_SIDE * radius) ** 2
    if shape == "triangle":
        return 3 * math.sqrt(3) / 4 * radius**2
    if shape == "diamond":
        return 2 * radius**2
    if shape == "star":
        return 5 * STAR_INNER_RATIO * radius**2 * math.sin(math.pi / 5)
    raise ValueError(f"unknown shape {shape!r}")


def shape_polygon(shape: str, radius: float) -> np.ndarray:
    """Vertices (k, 2) of a triangle or star centred on the origin, apex up."""
    if shape == "triangle":
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        radii = np.full(3, radius)
    elif shape == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * STAR_INNER_RATIO)
    else:
        raise ValueError(f"{shape} is not drawn as a polygon")
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _inside_polygon(dx: np.ndarray, dy: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over the points."""
    inside = np.zeros(dx.shape, dtype=bool)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        crosses = (ay > dy) != (by > dy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (dy - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (dx < x_at)
    return inside


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Which points (offsets from the shape's centre, y down) the shape covers."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        half = SQUARE_HALF_SIDE * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    return _inside_polygon(dx, dy, shape_polygon(shape, radius))


# ------------------------------------------------------------------------------------ motion


def _triangle_wave(u: np.ndarray, span: float) -> np.ndarray:
    """0 -> span -> 0 with period 2 * span: a position reflecting between two walls."""
    return span - np.abs(np.mod(u, 2 * span) - span)


def bounce_span(spec: SceneSpec, size: int) -> float:
    """How far the centre travels between the walls (shared by both shapes of a scene)."""
    largest = max(base_radius(s.size, size) for s in spec.shapes)
    return size - 2 * largest


def _straight_centres(spec: SceneSpec, t: np.ndarray, size: int) -> list[np.ndarray]:
    ux, uy = DIRECTIONS[spec.motion]
    speed = DIAGONAL_AXIS_SPEED if ux and uy else AXIS_SPEED
    velocity = np.array([ux, uy], dtype=float) * speed * size
    start = np.array(spec.layout) * size
    starts = [start, start + size / 2][: len(spec.shapes)]
    return [np.mod(s + t[:, None] * velocity, size) for s in starts]


def _bouncing_centres(spec: SceneSpec, t: np.ndarray, size: int) -> list[np.ndarray]:
    span = bounce_span(spec, size)
    margin = (size - span) / 2
    fx, fy = spec.layout
    if len(spec.shapes) == 2:
        fy = fx - 0.25  # a quarter period apart: the diamond orbit that keeps the two apart
    travel = t * BOUNCE_AXIS_SPEED * size
    x = margin + _triangle_wave(fx * 2 * span + travel, span)
    y = margin + _triangle_wave(fy * 2 * span + travel, span)
    first = np.stack([x, y], axis=1)
    return [first, size - first][: len(spec.shapes)]


def _circling_centres(spec: SceneSpec, t: np.ndarray, size: int) -> list[np.ndarray]:
    omega = CIRCLE_SPEED / CIRCLE_RADIUS
    centres = []
    for k in range(len(spec.shapes)):
        theta = 2 * math.pi * spec.layout[0] + math.pi * k + omega * t
        x = size / 2 + CIRCLE_RADIUS * size * np.cos(theta)
        y = size / 2 - CIRCLE_RADIUS * size * np.sin(theta)  # y down: counter-clockwise on screen
        centres.append(np.stack([x, y], axis=1))
    return centres


def _standing_centres(spec: SceneSpec, t: np.ndarray, size: int) -> list[np.ndarray]:
    if len(spec.shapes) == 1:
        fractions = [spec.layout]
    else:
        fractions = [STANDING_PAIR, tuple(v + 0.5 for v in STANDING_PAIR)]
    return [np.tile(np.array(f) * size, (len(t), 1)) for f in fractions]


def growth_factor(motion: str, t: np.ndarray) -> np.ndarray:
    """Radius / base radius at frames t (1 unless growing or shrinking)."""
    t = np.asarray(t, dtype=float)
    if motion not in ("growing", "shrinking"):
        return np.ones_like(t)
    low, high = GROWTH_RANGE
    ramp = np.mod(t, GROWTH_PERIOD) / GROWTH_PERIOD
    if motion == "shrinking":
        ramp = 1 - ramp
    return low + (high - low) * ramp


def trajectory(spec: SceneSpec, frames: int, size: int = 64, start: int = 0):
    """Ground truth: centres (shapes, frames, 2) in pixels and radii (shapes, frames)."""
    t = np.arange(start, start + frames, dtype=float)
    if spec.motion in DIRECTIONS:
        centres = _straight_centres(spec, t, size)
    elif spec.motion == "bouncing":
        centres = _bouncing_centres(spec, t, size)
    elif spec.motion == "circling":
        centres = _circling_centres(spec, t, size)
    else:
        centres = _standing_centres(spec, t, size)
    factor = growth_factor(spec.motion, t)
    radii = np.stack([base_radius(s.size, size) * factor for s in spec.shapes])
    return np.stack(centres), radii


# --------------------------------------------------------------------------------- rendering


def render_background(background: str, height: int, width: int | None = None) -> np.ndarray:
    """The background alone, (H, W, 3) uint8."""
    width = height if width is None else width
    if background in PALETTE:
        return np.broadcast_to(np.array(PALETTE[background], np.uint8), (height, width, 3)).copy()
    if background not in GRADIENTS:
        raise ValueError(f"unknown background {background!r}")
    low, high = (np.array(c, dtype=float) for c in GRADIENT_ENDS)
    vertical = background == "vertical gradient"
    steps = height if vertical else width
    ramp = (np.arange(steps) + 0.5) / steps
    line = np.rint(low + ramp[:, None] * (high - low)).astype(np.uint8)
    if vertical:
        return np.broadcast_to(line[:, None, :], (height, width, 3)).copy()
    return np.broadcast_to(line[None, :, :], (height, width, 3)).copy()


def render(spec: SceneSpec, frames: int, size: int = 64, start: int = 0) -> np.ndarray:
    """Frames start .. start + frames - 1 of the scene: (frames, size, size, 3) uint8."""
    centres, radii = trajectory(spec, frames, size, start)
    background = render_background(spec.background, size)
    coords = np.arange(size) + 0.5
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for f in range(frames):
        frame = background.copy()
        for k, s in enumerate(spec.shapes):
            cx, cy = centres[k, f]
            dx = np.mod(coords[None, :] - cx + size / 2, size) - size / 2  # toroidal offsets
            dy = np.mod(coords[:, None] - cy + size / 2, size) - size / 2
            dx, dy = np.broadcast_arrays(dx, dy)
            frame[shape_mask(s.shape, dx, dy, radii[k, f])] = PALETTE[s.colour]
        out[f] = frame
    return out


def fade_shapes(frames: np.ndarray, background: np.ndarray, fade: float):
    """(F, H, W, 3) float32 frames with every shape pixel (any unlike `background`, float32
    (H, W, 3)) moved `fade` of the way from the background: 1 keeps a shape, 0 leaves only the
    background. Returns the faded frames and where the shapes are, (F, H, W, 1) bool."""
    on_shape = np.any(frames != background, axis=-1, keepdims=True)
    return np.where(on_shape, background + fade * (frames - background), frames), on_shape


# ----------------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _shape_phrase(s: ShapeSpec) -> str:
    words = ([] if s.size == UNMARKED_SIZE else [s.size]) + [s.colour, s.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _motion_phrase(motion: str) -> str:
    return f"moving {motion}" if motion in DIRECTIONS else motion


def caption(spec: SceneSpec) -> str:
    """e.g. "a small red circle moving left on a blue background"."""
    shapes = " and ".join(_shape_phrase(s) for s in spec.shapes)
    background = f"{_article(spec.background)} {spec.background} background"
    return f"{shapes} {_motion_phrase(spec.motion)} on {background}"


_WORD = lambda words: "|".join(sorted(map(re.escape, words), key=len, reverse=True))  # noqa: E731
_SHAPE_RE = re.compile(
    rf"an? (?:(?P<size>{_WORD(SIZES)}) )?(?P<colour>{_WORD(COLOURS)}) (?P<shape>{_WORD(SHAPES)})"
)
_CAPTION_RE = re.compile(
    rf"(?P<first>{_SHAPE_RE.pattern.replace('?P<', '?P<a_')})"
    rf"(?: and (?P<second>{_SHAPE_RE.pattern.replace('?P<', '?P<b_')}))?"
    rf" (?:moving (?P<direction>{_WORD(DIRECTIONS)})"
    rf"|(?P<motion>bouncing|circling|growing|shrinking))"
    rf" on an? (?P<background>{_WORD(COLOURS)}|(?:(?:vertical|horizontal) )?gradient) background"
)


def parse_caption(text: str) -> SceneSpec:
    """The SceneSpec a caption describes (DEFAULT_LAYOUT); ValueError when it is not in the grammar.

    Case, surrounding blanks, repeated spaces and a final full stop are ignored; "gradient"
    alone means "vertical gradient".
    """
    normalised = " ".join(text.lower().strip().rstrip(".").split())
    match = _CAPTION_RE.fullmatch(normalised)
    if not match:
        raise ValueError(f"not a toy-world caption: {text!r}")
    shapes = [_shape_from_match(match, "a_")]
    if match["second"]:
        shapes.append(_shape_from_match(match, "b_"))
    background = match["background"]
    if background == "gradient":
        background = "vertical gradient"
    return SceneSpec(tuple(shapes), match["direction"] or match["motion"], background)


def _shape_from_match(match: re.Match, prefix: str) -> ShapeSpec:
    return ShapeSpec(
        shape=match[prefix + "shape"],
        colour=match[prefix + "colour"],
        size=match[prefix + "size"] or UNMARKED_SIZE,
    )


# -------------------------------------------------------------------------------------- split


def is_heldout_triple(colour: str, shape: str, motion: str) -> bool:
    index = COLOURS.index(colour) + 2 * SHAPES.index(shape) + 3 * MOTIONS.index(motion)
    return index % HELDOUT_MODULUS == 0


def heldout_triples() -> list[tuple[str, str, str]]:
    """Every held-out (colour, shape, motion), in COLOURS x SHAPES x MOTIONS order."""
    return [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS
            if is_heldout_triple(c, s, m)]


def is_heldout(spec: SceneSpec) -> bool:
    return any(is_heldout_triple(s.colour, s.shape, spec.motion) for s in spec.shapes)


# ----------------------------------------------------------------------------------- sampling

SPLITS = ("train", "heldout")
TWO_SHAPE_PROBABILITY = 0.3
PLAIN_BACKGROUND_PROBABILITY = 0.6


def sample_spec(rng: np.random.Generator, split: str = "train") -> SceneSpec:
    """A random scene of the split: train never contains a held-out triple, heldout always does."""
    if split not in SPLITS:
        raise ValueError(f"split is one of {SPLITS}, not {split!r}")
    while True:
        spec = _sample_any(rng, split)
        if is_heldout(spec) == (split == "heldout"):
            return spec


def _sample_any(rng: np.random.Generator, split: str) -> SceneSpec:
    if split == "heldout":
        triples = heldout_triples()
        colour, shape, motion = triples[rng.integers(len(triples))]
    else:
        colour, shape, motion = _pick(rng, COLOURS), _pick(rng, SHAPES), _pick(rng, MOTIONS)
    shapes = [ShapeSpec(shape, colour, _pick(rng, SIZES))]
    if rng.random() < TWO_SHAPE_PROBABILITY:
        other = [c for c in COLOURS if c != colour]
        shapes.append(ShapeSpec(_pick(rng, SHAPES), _pick(rng, other), _pick(rng, SIZES)))
    background = _sample_background(rng, {s.colour for s in shapes})
    draft = SceneSpec(tuple(shapes), motion, background)
    return replace(draft, layout=_sample_layout(rng, draft))


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _sample_background(rng: np.random.Generator, used: set[str]) -> str:
    if rng.random() >= PLAIN_BACKGROUND_PROBABILITY:
        return _pick(rng, GRADIENTS)
    return _pick(rng, [c for c in COLOURS if c not in used])


def _sample_layout(rng: np.random.Generator, spec: SceneSpec) -> tuple[float, float]:
    if spec.motion in DIRECTIONS:
        direction = np.array(DIRECTIONS[spec.motion], dtype=float)
        values = 0.5 - ENTRY_OFFSET * direction + rng.uniform(-ENTRY_JITTER, ENTRY_JITTER, 2)
    elif spec.motion == "bouncing":
        values = (_early_bounce_phase(rng, spec), rng.random())
    elif spec.motion == "circling":
        values = (rng.random(), 0.0)
    else:
        values = rng.uniform(0.3, 0.7, size=2)
    return tuple(round(float(v), 4) for v in values)


def _early_bounce_phase(rng: np.random.Generator, spec: SceneSpec, size: int = 64) -> float:
    """A bounce-cycle start whose first x bounce comes 4 to 10 frames in (so 16 frames show one)."""
    span = bounce_span(spec, size)
    to_wall = rng.uniform(4, 10) * BOUNCE_AXIS_SPEED * size
    unfolded = (span if rng.random() < 0.5 else 2 * span) - to_wall
    return unfolded / (2 * span) % 1.0


def clip(seed: int, index: int, frames: int = 16, size: int = 64, split: str = "train"):
    """Clip `index` of a split's seeded stream: (frames (N, size, size, 3) uint8, caption, spec)."""
    rng = np.random.default_rng([seed, index, SPLITS.index(split)])
    spec = sample_spec(rng, split)
    return render(spec, frames, size), caption(spec), spec
