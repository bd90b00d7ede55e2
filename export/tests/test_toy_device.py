"""`toy train --device`: where the toy models train. The CPU is the only device here, so the
placement of every tensor a loss touches is checked on PyTorch's `meta` device, which refuses
to mix devices as CUDA does (a CPU tensor in a meta op raises) but computes only shapes."""

from __future__ import annotations

import pytest
import torch

from st2v_export.toy.task import TrainError, to_device, training_device
from st2v_export.toy.train import MODELS, Run, TrainConfig
from st2v_export.toy.train_cli import main as train_cli_main

QUIET = lambda _: None  # noqa: E731
META = torch.device("meta")
NO_CUDA = not torch.cuda.is_available()


def test_device_names_are_checked_before_any_model_is_built(tmp_path):
    assert training_device("cpu") == torch.device("cpu")
    assert training_device("auto").type == ("cpu" if NO_CUDA else "cuda")
    for name in ("tpu", "gpu", "meta"):
        with pytest.raises(TrainError, match=f"--device must be one of .*got '{name}'"):
            TrainConfig("stage1", 1, tmp_path / "run", device=name)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not NO_CUDA, reason="this torch sees a GPU")
def test_a_gpu_torch_cannot_see_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(TrainError, match=r"--device cuda:1: this torch .* sees 0 CUDA device"):
        TrainConfig("vae", 1, tmp_path, device="cuda:1")
    with pytest.raises(SystemExit, match="--device cuda: this torch"):
        train_cli_main(["--model", "vae", "--steps", "1", "--out", str(tmp_path / "run"),
                        "--device", "cuda"])
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def device_runs(toy_video_runs, tmp_path_factory):
    """The shared one-step vae, clip, stage1 and stage2 runs, and a one-step enhancer_vae run
    (what the enhancer trains on)."""
    root = tmp_path_factory.mktemp("device_runs")
    for model in ("vae", "clip", "stage1", "stage2"):
        (root / model).symlink_to(toy_video_runs / model)
    Run(TrainConfig("enhancer_vae", 1, root / "enhancer_vae", batch=2, eval_frames=1),
        QUIET).run()
    return root


@pytest.mark.parametrize("model", MODELS)
def test_every_loss_runs_where_the_task_was_moved(model, device_runs, tmp_path):
    run = Run(TrainConfig(model, 1, tmp_path / model, batch=2, runs=device_runs), QUIET)
    run.task.to(META)
    for module in [*run.task.modules().values(), *run.task.frozen_modules()]:
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            assert tensor.device == META, f"{model}: {name} stayed on {tensor.device}"
    batch = to_device(run.task.batch(0, run.batch), run.task.device)
    loss, parts = run.task.loss(batch, torch.Generator().manual_seed(0))
    assert loss.device == META and loss.dim() == 0
    assert all(value.device == META and value.dim() == 0 for value in parts.values())
    loss.backward()
    trained = [p for group in run.task.parameter_groups() for p in group["params"]]
    grads = [p.grad for p in trained if p.grad is not None]  # (the enhancer's text tower
    assert grads and all(grad.device == META for grad in grads)  # has blocks no loss reaches)


def test_a_run_on_the_cpu_device_is_the_default_run(device_runs, tmp_path):
    """`--device cpu` and `auto` without a GPU change nothing: the same checkpoint bit for bit."""
    states = []
    for name in ("default", "auto"):
        extra = {} if name == "default" else {"device": "auto" if NO_CUDA else "cpu"}
        config = TrainConfig("stage1", 2, tmp_path / name, batch=2, runs=device_runs,
                             eval_frames=1, **extra)
        run = Run(config, QUIET)
        run.run()
        states.append(run.task.modules()["unet"].state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_batches_rendered_by_workers_train_the_same_run(tmp_path):
    """`--workers 2` renders the next batches in two processes: the same checkpoint bit for
    bit as rendering them between steps, resumed runs included."""
    def checkpoint(name: str, workers: int, steps: int = 3, resume: bool = False):
        config = TrainConfig("vae", steps, tmp_path / name, batch=2, eval_frames=1,
                             schedule_steps=3, workers=workers, resume=resume)
        run = Run(config, QUIET)
        run.run()
        return run.step, run.task.modules()["vae"].state_dict()

    step, inline = checkpoint("inline", 0)
    checkpoint("workers", 2, steps=1)
    resumed_step, rendered = checkpoint("workers", 2, resume=True)
    assert step == resumed_step == 3
    assert all(torch.equal(inline[key], rendered[key]) for key in inline)
    with pytest.raises(TrainError, match="workers must be 0 or more, got -1"):
        TrainConfig("vae", 1, tmp_path / "x", workers=-1)
