"""Resumable, seeded training of the toy model set on the toy world (see TRAINING.md).

StreamingT2V (Henschel et al. 2024) runs on a set of pretrained graphs; for the toy world each is
trained from scratch at the `toy` preset's sizes, on frames, clips and captions generated on the
fly from the world's train split (`data.py`), and judged on the held-out split. This module holds
the loop, the checkpoints and the registry of models:

- `vae`, `vae_decoder`, `clip` (`image_tasks.py`): the AutoencoderKL, its decoder refined with
  the encoder frozen, and the CLIP text / image towers whose text tower also gives the stage-1/2
  text encoder;
- `stage1`, `stage2` (`video_tasks.py`): the stage-1 UNet3D on the frozen VAE and text encoder,
  and the stage-2 UNet with its CAM and APM resampler, initialised from the stage-1 run.

Determinism: every batch is a pure function of (seed, step), the sampling noise of step s comes
from a generator seeded with (seed, step), and a checkpoint holds the parameters, the optimizer
state, the schedule and the torch RNG states. A run resumed from a checkpoint therefore ends with
bit-identical parameters to one run without a stop.

Checkpoints (`DIR/checkpoint.pt`, written to a temporary file and renamed) also record the
preset's dimensions; `DIR/log.jsonl` gets one line per logged step and `DIR/metrics.json` the
last evaluation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..presets import Preset
from .data import seed_of
from .enhancer_tasks import EnhancerTask, EnhancerVaeTask
from .image_tasks import ClipTask, VaeDecoderTask, VaeTask
from .preset import toy_preset
from .runfiles import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    LOG_FILE,
    METRICS_FILE,
    atomic_save,
    lineage,
    read_checkpoint,
    record_of,
    write_json,
)
from .task import Task, TrainError, to_device, training_device
from .video_tasks import Stage1Task, Stage2Task

TASKS: dict[str, type[Task]] = {
    "vae": VaeTask,
    "vae_decoder": VaeDecoderTask,
    "clip": ClipTask,
    "stage1": Stage1Task,
    "stage2": Stage2Task,
    "enhancer_vae": EnhancerVaeTask,
    "enhancer": EnhancerTask,
}
MODELS = tuple(TASKS)
GLOBAL_RNG_STREAM = 17

__all__ = ["TrainConfig", "TrainError", "train", "read_checkpoint", "MODELS"]

ONE_MODEL_OPTIONS = {
    "crossing_share": ("stage2", "crossing share is", "its clips start anywhere in the video"),
    "decoded_conditions": ("stage2", "decoded conditions are", "the CAM's frames"),
    "binding_weight": ("stage1", "binding weight is", "its UNet's cross-attention"),
    "draft_share": ("enhancer", "draft share is", "stage 3 refines drafts"),
}
"""`TrainConfig` options for one model only: that model, how an error names the option, why."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _one_model_values(config) -> dict:
    """A config's `ONE_MODEL_OPTIONS` (their defaults for `TrainConfig` itself)."""
    return {name: getattr(config, name) for name in ONE_MODEL_OPTIONS}


@dataclass
class TrainConfig:
    model: str
    steps: int
    out: Path
    seed: int = 0
    batch: int | None = None
    """Frames per step; None: the model's default."""
    lr: float | None = None
    """Peak learning rate; None: the model's default."""
    schedule_steps: int | None = None
    """Length of the warmup + cosine schedule; None: `steps` of the first run (kept on resume)."""
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 0
    """Evaluate on held-out frames every N steps (0: only at the end)."""
    eval_frames: int | None = None
    resume: bool = False
    preset: Preset | None = None
    """None: the toy preset."""
    runs: Path | None = None
    """Where the runs this model depends on live (RUNS/vae, RUNS/clip, RUNS/stage1); None: the
    parent of `out`."""
    init: Path | None = None
    """A run of the same model whose checkpointed weights a fresh run starts from (a new
    optimizer and schedule: a fine-tune, e.g. after a change of the noise schedule)."""
    device: str = "cpu"
    """`cpu`, `cuda`, `cuda:N` or `auto` (CUDA when torch sees a GPU). Data and noise are made
    on the CPU either way; a checkpoint resumes on any device."""
    workers: int = 0
    """Processes that render the next batches while the model trains (0: rendered in the
    training process between steps). The batches are the same either way."""
    crossing_share: float = 0.0
    """stage2 only: the share of each batch's clips drawn where a shape crosses an edge of the
    frame and the world wraps it around (`data.crossing_starts`); 0: every clip from the
    stream as drawn."""
    decoded_conditions: bool = False
    """stage2 only: the CAM sees each clip's first 8 frames as the VAE gives them back (encoded,
    then decoded), as the engine's CAM sees the decoded frames of the chunk before; False: the
    rendered frames."""
    binding_weight: float = 0.0
    """stage1 only: the weight of the binding loss on two-shape captions (`binding.py`: each
    shape's pixels attend to its own colour word and noun); 0: none."""
    draft_share: float = 0.0
    """enhancer only: the share of each batch's clips noised from a degraded draft at SDEdit's
    timesteps and trained to give back the clean clip (`enhancer_tasks.degraded_draft`); 0:
    every clip trains as plain diffusion."""

    def __post_init__(self):
        self.out = Path(self.out)
        self.runs = Path(self.runs) if self.runs is not None else self.out.parent
        self.init = Path(self.init) if self.init is not None else None
        if self.model not in MODELS:
            raise TrainError(f"unknown model {self.model!r}: expected one of {', '.join(MODELS)}")
        for name in ("steps", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise TrainError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch is not None and self.batch < 2:
            raise TrainError(f"batch must be at least 2, got {self.batch}")
        if self.workers < 0:
            raise TrainError(f"workers must be 0 or more, got {self.workers}")
        for name in ("crossing_share", "draft_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TrainError(f"{name.replace('_', ' ')} must be in [0, 1], got "
                                 f"{getattr(self, name)} ({_flag(name)})")
        if self.binding_weight < 0:
            raise TrainError(f"binding weight must be 0 or more, got {self.binding_weight} "
                             f"(--binding-weight)")
        for name, (model, subject, why) in ONE_MODEL_OPTIONS.items():
            if getattr(self, name) and self.model != model:
                raise TrainError(f"{subject} for {model} ({why}), not {self.model} "
                                 f"({_flag(name)})")
        training_device(self.device)  # a clear error before any model is built



# ----------------------------------------------------------------------------- checkpoints


def _preset_record(preset: Preset) -> dict:
    return {"name": preset.name, "dimensions": preset.dimensions()}


def _check_resumable(payload: dict, config: TrainConfig, batch: int, preset: Preset) -> None:
    if payload.get("optimizer") is None:  # `recover` writes weights only
        raise TrainError(
            f"cannot resume {config.out / CHECKPOINT_FILE}: it holds weights recovered from a "
            f"model set, no training state; start a new run from it with --init {config.out}"
        )
    # checkpoints from before these options trained without them
    saved = {**_one_model_values(TrainConfig), **payload["config"]}
    asked = {"model": config.model, "seed": config.seed, "batch": batch,
             **_one_model_values(config)}
    differences = [f"{key}: checkpoint {saved[key]!r}, asked {value!r}"
                   for key, value in asked.items() if saved[key] != value]
    if payload["preset"] != _preset_record(preset):
        name = payload["preset"]["name"]
        differences.append(f"preset: checkpoint {name!r} with other dimensions")
    if differences:
        raise TrainError(
            f"cannot resume {config.out / CHECKPOINT_FILE}: " + "; ".join(differences)
        )


def _check_same_modules(payload: dict, modules: dict, config: TrainConfig) -> None:
    """A checkpoint of an older recipe (one that trained other modules) cannot resume: its
    optimizer state is for other parameters. It can start a new run (--init)."""
    saved, trained = sorted(payload["modules"]), sorted(modules)
    if saved != trained:
        raise TrainError(
            f"cannot resume {config.out / CHECKPOINT_FILE}: it trained {', '.join(saved)}, this "
            f"recipe trains {', '.join(trained)}; start a new run from it with --init "
            f"{config.out} and another --out"
        )


# -------------------------------------------------------------------------------- the loop


def learning_rate(step: int, peak: float, schedule_steps: int) -> float:
    """Linear warmup (5 % of the schedule, at most 200 steps), cosine decay to 10 % of the peak
    at `schedule_steps`, then constant."""
    warmup = max(1, min(200, schedule_steps // 20))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, schedule_steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Step, loss, steps/s and ETA lines; the rate counts the steps of this process only."""

    def __init__(self, first_step: int, total: int, log: Callable[[str], None]):
        self.first_step = first_step
        self.total = total
        self.log = log
        self.started = time.monotonic()

    def rate(self, step: int) -> float:
        elapsed = time.monotonic() - self.started
        return (step - self.first_step) / elapsed if elapsed > 0 else 0.0

    def report(self, step: int, loss: float, parts: dict, lr: float) -> dict:
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        figures = " ".join(f"{k} {v:.4g}" for k, v in parts.items())
        self.log(
            f"step {step}/{self.total} loss {loss:.4f} ({figures}) lr {lr:.2e} "
            f"{rate:.2f} steps/s ETA {_format_seconds(eta) if eta == eta else '?'}"
        )
        return {"step": step, "loss": loss, **parts, "lr": lr, "steps_per_s": rate}


class StepBatches(Dataset):
    """Item s is the batch of step s (`Task.batch`, a pure function of the seed and s), so
    worker processes can render ahead of the training step."""

    def __init__(self, task: Task, size: int):
        self.task, self.size = task, size

    def __getitem__(self, step: int) -> dict:
        return self.task.batch(step, self.size)


def _as_rendered(batch: dict) -> dict:
    return batch


class Run:
    """One training run: the task, its optimizer, schedule and checkpoints in `config.out`."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.preset = config.preset or toy_preset()
        self.task = TASKS[config.model](self.preset, config.seed, config.runs)
        if config.model == "stage2":  # the options `TrainConfig` allows for stage 2 only
            self.task.crossing_share = config.crossing_share
            self.task.decoded_conditions = config.decoded_conditions
        if config.model == "stage1":
            self.task.bind(config.binding_weight)
        if config.model == "enhancer":
            self.task.draft_share = config.draft_share
        self.task.to(training_device(config.device))
        self.batch = config.batch or self.task.default_batch
        self.peak_lr = config.lr or self.task.default_lr
        self.schedule_steps = config.schedule_steps or config.steps
        self.optimizer = torch.optim.AdamW(
            self.task.parameter_groups(), lr=self.peak_lr, betas=(0.9, 0.98), eps=1e-8
        )
        self.step = 0
        self.initialised_from: str | None = None
        self.ancestry: list[dict] = []
        self.generator = torch.Generator()
        self.checkpoint_path = config.out / CHECKPOINT_FILE

    # -- checkpoints
    def _payload(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config.model,
            "step": self.step,
            "config": {
                "model": self.config.model,
                "seed": self.config.seed,
                "batch": self.batch,
                **_one_model_values(self.config),
                "peak_lr": self.peak_lr,
                "schedule_steps": self.schedule_steps,
                "init": self.initialised_from,
                "ancestry": self.ancestry,
            },
            "preset": _preset_record(self.preset),
            "modules": {name: m.state_dict() for name, m in self.task.modules().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()},
            "extras": self.task.extras(),
        }

    def save(self) -> None:
        self.config.out.mkdir(parents=True, exist_ok=True)
        atomic_save(self._payload(), self.checkpoint_path)

    def restore(self) -> None:
        payload = read_checkpoint(self.checkpoint_path)
        _check_resumable(payload, self.config, self.batch, self.preset)
        _check_same_modules(payload, self.task.modules(), self.config)
        for name, module in self.task.modules().items():
            module.load_state_dict(payload["modules"][name], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"]["torch"])
        self.generator.set_state(payload["rng"]["generator"])
        saved = payload["config"]
        self.peak_lr = self.config.lr or saved["peak_lr"]
        self.schedule_steps = self.config.schedule_steps or saved["schedule_steps"]
        self.step = payload["step"]
        self.initialised_from = saved.get("init")
        self.ancestry = saved.get("ancestry", [])
        self._truncate_log(self.step)

    def initialise(self, run: Path) -> None:
        """Starts from another run's weights: the modules it has, loaded strictly (a module it
        lacks, such as one a newer recipe trains, keeps its initialisation)."""
        payload = read_checkpoint(run)
        if payload["model"] != self.config.model:
            raise TrainError(
                f"--init {run} is a {payload['model']} run, this is {self.config.model}"
            )
        loaded = []
        for name, module in self.task.modules().items():
            if name in payload["modules"]:
                module.load_state_dict(payload["modules"][name], strict=True)
                loaded.append(name)
        self.initialised_from = f"{run} step {payload['step']} ({', '.join(loaded)})"
        self.ancestry = lineage(str(run), record_of(payload, run))
        self.log(f"initialised {self.config.model} from {self.initialised_from}")

    def _truncate_log(self, step: int) -> None:
        """Drops log lines past the checkpoint (written by a run that stopped later)."""
        path = self.config.out / LOG_FILE
        if path.is_file():
            lines = [line for line in path.read_text().splitlines()
                     if line and json.loads(line).get("step", 0) <= step]
            path.write_text("".join(line + "\n" for line in lines))

    def prepare(self) -> None:
        exists = self.checkpoint_path.is_file()
        if exists and not self.config.resume:
            step = read_checkpoint(self.checkpoint_path)["step"]
            raise TrainError(
                f"{self.checkpoint_path} holds a checkpoint at step {step}: pass --resume to "
                "continue it, or choose another --out"
            )
        if exists:
            self.restore()
            self.log(f"resumed {self.config.model} at step {self.step} from {self.checkpoint_path}")
        else:
            if self.config.resume:
                self.log(f"no checkpoint in {self.config.out}: "
                         f"starting {self.config.model} at step 0")
            if self.config.init is not None:
                self.initialise(self.config.init)

    # -- the loop
    def batches(self) -> Iterator[dict]:
        """The batches of steps `self.step` .. `config.steps` - 1, in order."""
        steps = range(self.step, self.config.steps)
        if not self.config.workers:
            return (self.task.batch(step, self.batch) for step in steps)
        rendered = StepBatches(self.task, self.batch)
        return iter(DataLoader(rendered, batch_size=None, sampler=steps, collate_fn=_as_rendered,
                               num_workers=self.config.workers, prefetch_factor=4))

    def train_step(self, batch: dict) -> tuple[float, dict, float]:
        lr = learning_rate(self.step, self.peak_lr, self.schedule_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        batch = to_device(batch, self.task.device)
        self.generator.manual_seed(seed_of(self.config.seed, self.step))
        # The global generator draws the UNets' dropout masks: seeded per step too, so a run's
        # result depends on (seed, step) alone, not on what ran before it in the process.
        torch.manual_seed(seed_of(self.config.seed, self.step, GLOBAL_RNG_STREAM))
        loss, parts = self.task.loss(batch, self.generator)
        parts = {name: float(value) for name, value in parts.items()}
        if not torch.isfinite(loss):
            raise TrainError(f"{self.config.model}: loss is {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        parts["grad_norm"] = float(nn.utils.clip_grad_norm_(parameters, 1.0))
        self.optimizer.step()
        self.task.after_step()
        self.step += 1
        return loss.item(), parts, lr

    def evaluate(self) -> dict:
        for module in self.task.modules().values():
            module.eval()
        try:
            frames = self.config.eval_frames or self.task.default_eval_frames
            return {"step": self.step, **self.task.evaluate(frames)}
        finally:
            for module in self.task.modules().values():
                module.train()

    def run(self) -> dict:
        """Trains up to `config.steps` (total, counting resumed steps); returns the last
        evaluation (also in DIR/metrics.json)."""
        self.prepare()
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        if self.step >= config.steps:
            self.log(f"{config.model}: already at step {self.step} >= {config.steps}")
        for module in self.task.modules().values():
            module.train()
        progress = Progress(self.step, config.steps, self.log)
        with open(config.out / LOG_FILE, "a") as log_file:
            for batch in self.batches():
                loss, parts, lr = self.train_step(batch)
                if self.step % config.log_every == 0 or self.step == config.steps:
                    record = progress.report(self.step, loss, parts, lr)
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if config.eval_every and self.step % config.eval_every == 0:
                    self.log(f"eval: {json.dumps(self.evaluate())}")
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save()
        metrics = self.evaluate()
        rate = progress.rate(self.step)
        metrics["seconds_per_step"] = 1 / rate if rate else None
        write_json(metrics, config.out / METRICS_FILE)
        self.log(f"eval: {json.dumps(metrics)}")
        return metrics


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Runs (or resumes) one training run; see `Run.run`."""
    return Run(config, log).run()
