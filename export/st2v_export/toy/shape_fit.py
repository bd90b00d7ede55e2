"""Fits the checker's shape classifier (`shape_class.py`) and measures it: `toy fit-shapes`.

  python -m st2v_export.toy fit-shapes --model-set models/toy \\
      --out export/st2v_export/toy/shape_class.json --force

Samples: the blobs the checker segments (every 2nd of 16 frames, each shape of the scene) in the
train split's clips (seed FIT_SEED), each clip once rendered crisp, at 48, 64, 80 or 96 pixels in
turn, and once as the model set's VAE reconstructs it at its stage-2 size (the graphs
`vae_encoder` then `vae_decoder` on the posterior mean, onnxruntime). The fit: a multinomial
logistic regression on the standardised features, zero at first, full-batch Adam (FIT_STEPS
steps, rate FIT_RATE, L2 FIT_L2), deterministic. The same is measured on the held-out split's
clips (seed HELDOUT_SEED), and on them as the set's enhancer VAE reconstructs them at its content
size on black bars ("enhanced", measured only): accuracy and confusion per kind, the checker's
rule of fill, solidity and centroid offset beside it. All of it goes to --out, with the weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import checker, shape_class, world

FIT_SEED, HELDOUT_SEED = 1, 123
CRISP_SIZES = (48, 64, 80, 96)
FRAMES, FRAME_STRIDE = 16, 2
FIT_STEPS, FIT_RATE, FIT_L2 = 3000, 0.05, 1e-4


def vae_round_trip(model_set: Path, prefix: str = ""):
    """(round_trip, size): the set's `{prefix}vae_encoder` then `{prefix}vae_decoder` on the
    posterior mean, for uint8 (N, size, size, 3) frames; a wider graph (the enhancer's, 80x128)
    gets them centred on black bars, as the engine pads them, and gives back that square."""
    import onnxruntime as ort

    manifest = json.loads((model_set / "manifest.json").read_text())
    encoder, decoder = (ort.InferenceSession(str(model_set / manifest["graphs"][role]["file"]),
                                             providers=["CPUExecutionProvider"])
                        for role in (f"{prefix}vae_encoder", f"{prefix}vae_decoder"))
    height, width = manifest["graphs"][f"{prefix}vae_encoder"]["inputs"][0]["shape"][2:]
    left = (width - height) // 2

    def round_trip(frames: np.ndarray) -> np.ndarray:
        padded = np.zeros((len(frames), height, width, 3), np.uint8)
        padded[:, :, left:left + height] = frames
        pixels = padded.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        mean = encoder.run(None, {encoder.get_inputs()[0].name: pixels})[0]
        decoded = decoder.run(None, {decoder.get_inputs()[0].name: mean})[0]
        decoded = np.round((np.clip(decoded, -1, 1) + 1) * 127.5).astype(np.uint8)
        return decoded.transpose(0, 2, 3, 1)[:, :, left:left + height]

    return round_trip, int(height)


def blob_samples(frames: np.ndarray, spec: world.SceneSpec, kind: str) -> list[tuple]:
    """(kind, true shape, features, the rule's class) of each shape the checker segments in its
    own colour, in every FRAME_STRIDE-th frame."""
    height, width = frames.shape[1:3]
    background = world.render_background(spec.background, height, width)
    min_area = checker.MIN_AREA_FRACTION * height * width
    samples = []
    for frame in frames[::FRAME_STRIDE]:
        labels = checker.label_pixels(frame, background)
        for expected in spec.shapes:
            blob = checker.colour_blob(labels, world.COLOURS.index(expected.colour), min_area)
            if blob is None:
                continue
            xs, ys, geometry = checker.blob_geometry(blob)
            samples.append((kind, expected.shape, shape_class.feature_vector(xs, ys, geometry),
                            checker.rule_shape(geometry)))
    return samples


def collect(split: str, clips: int, seed: int, round_trips: dict) -> list[tuple]:
    """The blobs of `clips` clips of `split` (seed `seed`): crisp at CRISP_SIZES in turn, and
    through each of `round_trips` ({kind: (round_trip, size)})."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(clips):
        spec = world.sample_spec(rng, split)
        crisp = world.render(spec, FRAMES, CRISP_SIZES[index % len(CRISP_SIZES)])
        samples += blob_samples(crisp, spec, "crisp")
        for kind, (round_trip, size) in round_trips.items():
            samples += blob_samples(round_trip(world.render(spec, FRAMES, size)), spec, kind)
    return samples


def fit(features: np.ndarray, labels: np.ndarray, classes=world.SHAPES,
        steps: int = FIT_STEPS) -> shape_class.ShapeClassifier:
    """Multinomial logistic regression by full-batch Adam from zero (deterministic)."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    inputs = np.c_[(features - mean) / scale, np.ones(len(features))]
    targets = np.eye(len(classes))[labels]
    weights = np.zeros((inputs.shape[1], len(classes)))
    first, second = np.zeros_like(weights), np.zeros_like(weights)
    for step in range(1, steps + 1):
        logits = inputs @ weights
        probabilities = np.exp(logits - logits.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        gradient = inputs.T @ (probabilities - targets) / len(inputs) + FIT_L2 * weights
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient**2
        step_size = FIT_RATE * (first / (1 - 0.9**step))
        weights -= step_size / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
    return shape_class.ShapeClassifier(classes, mean, scale, weights[:-1], weights[-1])


def rounded(classifier: shape_class.ShapeClassifier) -> shape_class.ShapeClassifier:
    """Six significant digits: the committed file is what the checker runs."""
    data = {k: np.vectorize(lambda v: float(f"{v:.6g}"))(np.asarray(v)).tolist()
            if k != "classes" else v for k, v in classifier.to_dict().items()}
    return shape_class.ShapeClassifier.from_dict(data)


def measure(classifier: shape_class.ShapeClassifier, samples: list[tuple]) -> dict:
    """Per kind: samples, the classifier's and the rule's accuracy, the classifier's confusion
    (rows: true class, columns: read as)."""
    report = {}
    for kind in dict.fromkeys(s[0] for s in samples):
        chosen = [s for s in samples if s[0] == kind]
        read = [classifier.classify(s[2]) for s in chosen]
        confusion = {t: {r: sum(1 for s, p in zip(chosen, read) if s[1] == t and p == r)
                         for r in classifier.classes} for t in classifier.classes}
        report[kind] = {
            "samples": len(chosen),
            "accuracy": round(float(np.mean([p == s[1] for s, p in zip(chosen, read)])), 4),
            "rule_accuracy": round(float(np.mean([s[3] == s[1] for s in chosen])), 4),
            "confusion": confusion,
        }
    return report


def measured_round_trips(model_set: Path) -> dict:
    """{kind: (round_trip, size)} the fit is judged on: the set's VAE ("decoded", also fitted on)
    and, when the set has one, its enhancer's ("enhanced": measured only; fitted on too, its far
    blurrier 10x16 latents cost the crisp and decoded frames more than they gain, TRAINING.md)."""
    graphs = json.loads((model_set / "manifest.json").read_text())["graphs"]
    trips = {"decoded": vae_round_trip(model_set)}
    if "enhancer_vae_encoder" in graphs:
        trips["enhanced"] = vae_round_trip(model_set, "enhancer_")
    return trips


def fit_report(model_set: Path, train_clips: int, heldout_clips: int, log=print) -> dict:
    round_trips = measured_round_trips(model_set)
    fitted = {"decoded": round_trips["decoded"]}
    log(f"segmenting {train_clips} train clips (crisp and through {model_set}'s VAE) ...")
    train = collect("train", train_clips, FIT_SEED, fitted)
    features = np.array([s[2] for s in train])
    labels = np.array([world.SHAPES.index(s[1]) for s in train])
    log(f"fitting on {len(train)} blobs ...")
    classifier = rounded(fit(features, labels))
    log(f"measuring on {heldout_clips} held-out clips ...")
    heldout = collect("heldout", heldout_clips, HELDOUT_SEED, round_trips)
    return {
        "angle_bins": shape_class.ANGLE_BINS,
        "geometry": list(shape_class.GEOMETRY),
        "fitted_on": {"model_set": model_set.name, "train_clips": train_clips,
                      "seed": FIT_SEED, "blobs": len(train), "crisp_sizes": list(CRISP_SIZES),
                      "decoded_size": fitted["decoded"][1], "steps": FIT_STEPS},
        "heldout": {"clips": heldout_clips, "seed": HELDOUT_SEED,
                    **measure(classifier, heldout)},
        "classifier": classifier.to_dict(),
    }


def add_shape_fit_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "fit-shapes", help="fit the checker's shape classifier on crisp and VAE-decoded clips",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-set", type=Path, required=True,
                        help="whose VAE reconstructs the clips (e.g. models/toy)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--train-clips", type=int, default=400)
    parser.add_argument("--heldout-clips", type=int, default=64)
    return parser


def shape_fit_command(args: argparse.Namespace) -> int:
    if not (args.model_set / "manifest.json").is_file():
        raise ValueError(f"--model-set {args.model_set}: no manifest.json there")
    if args.out.exists() and not args.force:
        raise ValueError(f"--out {args.out} exists: pass --force to replace it")
    for flag, value in (("--train-clips", args.train_clips), ("--heldout-clips",
                                                              args.heldout_clips)):
        if value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    report = fit_report(args.model_set, args.train_clips, args.heldout_clips)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for kind in ("crisp", "decoded", "enhanced"):
        part = report["heldout"].get(kind)
        if part is None:
            continue
        print(f"held-out {kind}: {part['accuracy']:.1%} of {part['samples']} blobs "
              f"(the fill/solidity rule: {part['rule_accuracy']:.1%})")
    print(f"wrote {args.out}")
    return 0
