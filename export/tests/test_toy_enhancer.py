"""The toy enhancer (st2v_export.toy.enhancer_tasks): the stage-3 schedule against modelscope's,
the frame geometry the engine uses, the training modules against the exported graph modules,
a few training steps, and the export of trained enhancer graphs into a toy set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from st2v_export.enhancer.modules import EnhancerTextEncoder, EnhancerVaeDecoder, EnhancerVaeEncoder
from st2v_export.toy import enhancer_tasks, world
from st2v_export.toy.data import tokenize
from st2v_export.toy.diffusion import (
    STAGE3_ALPHAS,
    STAGE3_SIGMAS,
    rescaled_guidance,
    stage3_noised,
    stage3_restoration,
    stage3_sdedit,
)
from st2v_export.toy.enhancer_tasks import (
    DRAFT_COLOUR_SHIFT,
    DRAFT_FADE,
    RESTORATION_TIMESTEPS,
    EnhancerTask,
    EnhancerVaeTask,
    Geometry,
    degraded_draft,
)
from st2v_export.toy.export import export_toy_set
from st2v_export.toy.preset import toy_preset
from st2v_export.toy.runfiles import read_checkpoint, run_record
from st2v_export.toy.train import Run, TrainConfig, TrainError, train

QUIET = lambda _line: None  # noqa: E731
CAPTION = "a red circle moving right on a blue background"


def modelscope_schedules():
    """modelscope's `schedules_sdedit.py` (it imports only math and torch), run from its file."""
    spec = importlib.util.find_spec("modelscope")
    path = (Path(spec.origin).parent / "models" / "multi_modal" / "video_to_video" / "utils"
            / "schedules_sdedit.py")
    module_spec = importlib.util.spec_from_file_location("_toy_test_schedules_sdedit", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step clip, enhancer_vae and enhancer runs under one RUNS directory."""
    root = tmp_path_factory.mktemp("toy_enhancer_runs")
    for model, batch in (("clip", 4), ("enhancer_vae", 2), ("enhancer", 2)):
        train(TrainConfig(model, 1, root / model, batch=batch, eval_frames=1), log=QUIET)
    return root


def test_the_stage3_schedule_is_ms_vid2vid_xls():
    reference = modelscope_schedules().noise_schedule(
        "logsnr_cosine_interp", n=1000, zero_terminal_snr=True, scale_min=2.0, scale_max=4.0
    )
    assert torch.equal(STAGE3_SIGMAS, reference)
    # The facts the architecture notes give for the SDEdit start.
    assert abs(STAGE3_SIGMAS[599].item() - 0.9723632) < 1e-6
    assert abs(STAGE3_ALPHAS[599].item() - 0.2334733) < 1e-6
    assert STAGE3_SIGMAS[999] == 1.0


def test_v_targets_give_back_x0_as_the_engine_computes_it():
    x0, noise = torch.randn(2, 4, 3, 10, 16), torch.randn(2, 4, 3, 10, 16)
    t = torch.tensor([0, 599])
    noisy, v = stage3_noised(x0, noise, t)
    alpha, sigma = STAGE3_ALPHAS[t].view(-1, 1, 1, 1, 1), STAGE3_SIGMAS[t].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(alpha * noisy - sigma * v, x0, rtol=0, atol=1e-5)
    # A model predicting the true v makes SDEdit give back x0 whatever the noise.
    truth = x0[:1]

    def oracle(sample, step):
        a, s = STAGE3_ALPHAS[step], STAGE3_SIGMAS[step]
        eps = (sample - a * truth) / s
        return a * eps - s * truth

    out = stage3_sdedit(oracle, truth, torch.Generator().manual_seed(0), steps=5)
    torch.testing.assert_close(out, truth, rtol=0, atol=1e-4)


def test_restoration_targets_imply_the_clean_clip_and_reduce_to_plain_v_without_a_draft():
    x0, draft, noise = (torch.randn(3, 4, 2, 10, 16, generator=torch.Generator().manual_seed(s))
                        for s in range(3))
    t = torch.tensor([0, RESTORATION_TIMESTEPS[0], RESTORATION_TIMESTEPS[1]])
    noisy, v = stage3_restoration(x0, draft, noise, t)
    alpha, sigma = STAGE3_ALPHAS[t].view(-1, 1, 1, 1, 1), STAGE3_SIGMAS[t].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(noisy, alpha * draft + sigma * noise)  # SDEdit noises the draft
    torch.testing.assert_close((alpha * noisy - sigma * v)[1:], x0[1:], rtol=0, atol=1e-5)
    plain = stage3_noised(x0, noise, t)
    for restored, expected in zip(stage3_restoration(x0, x0, noise, t), plain):
        assert torch.equal(restored, expected)  # share 0 trains exactly as before


def test_a_degraded_draft_fades_and_recolours_the_shapes_and_keeps_the_background():
    spec = world.parse_caption(CAPTION)
    clip = {"spec": spec, "frames": world.render(spec, 4, 80, 5), "start": 5}
    rng = np.random.default_rng(0)
    fade, shift = rng.uniform(*DRAFT_FADE), rng.normal(0.0, DRAFT_COLOUR_SHIFT, 3)
    draft = degraded_draft(clip, 64, np.random.default_rng(0))
    sharp = world.render(spec, 4, 64, 5).astype(np.float32)
    background = world.render_background(spec.background, 64).astype(np.float32)
    on_shape = np.any(sharp != background, axis=-1)
    assert draft.shape == (4, 64, 64, 3) and draft.dtype == np.uint8
    assert np.array_equal(draft[~on_shape], sharp[~on_shape].astype(np.uint8))
    expected = np.clip(np.round(background + fade * (sharp - background) + shift), 0, 255)
    assert np.array_equal(draft[on_shape], expected[on_shape])
    assert not np.array_equal(draft[on_shape], sharp[on_shape])


def test_a_gap_draft_loses_its_shapes_from_a_frame_on_and_no_gap_keeps_the_old_stream(
        monkeypatch):
    spec = world.parse_caption(CAPTION)
    clip = {"spec": spec, "frames": world.render(spec, 8, 64, 5), "start": 5}
    background = world.render_background(spec.background, 64)
    plain = degraded_draft(clip, 64, np.random.default_rng(3))
    monkeypatch.setattr(enhancer_tasks, "DRAFT_GAP_SHARE", 1.0)
    gapped = degraded_draft(clip, 64, np.random.default_rng(3))
    empty = [bool(np.all(frame == background)) for frame in gapped]
    gone = empty.index(True)
    assert 2 <= gone < 8 and all(empty[gone:])  # gone from one frame to the end
    assert np.array_equal(gapped[:gone], plain[:gone])
    assert not any(np.all(frame == background) for frame in plain)


def test_a_draft_share_restores_the_first_clips_of_each_enhancer_batch(runs, tmp_path, fit):
    run = Run(TrainConfig("enhancer", 1, tmp_path / "drafts", runs=runs, batch=2,
                          draft_share=0.5), log=QUIET)
    batch = run.task.batch(0, 2)
    plain = EnhancerTask(toy_preset(), 0, runs).batch(0, 2)
    assert "drafts" not in plain and torch.equal(batch["videos"], plain["videos"])
    assert batch["drafts"].shape == (1, 8, 3, 80, 128)
    assert (batch["drafts"][..., :24] == -1).all()  # upscaled onto the black bars
    loss, parts = run.task.loss(batch, torch.Generator().manual_seed(0))
    assert set(parts) == {"drafts"} and torch.isfinite(loss)
    before, after = fit(run.task, batch, steps=6, lr=1e-3)
    assert after < before
    run.save()
    assert run_record(tmp_path / "drafts")["draft_share"] == 0.5
    with pytest.raises(TrainError, match="draft_share: checkpoint 0.5, asked 0.0"):
        Run(TrainConfig("enhancer", 2, tmp_path / "drafts", runs=runs, batch=2, resume=True),
            log=QUIET).restore()
    with pytest.raises(TrainError, match="--draft-share"):
        TrainConfig("stage2", 1, Path("unused"), draft_share=0.5)
    with pytest.raises(TrainError, match=r"draft share must be in \[0, 1\]"):
        TrainConfig("enhancer", 1, Path("unused"), draft_share=2.0)
    assert "draft_share" not in run_record(runs / "enhancer")


def test_rescaled_guidance_pulls_the_std_towards_the_conditional_outputs():
    uncond, cond = torch.randn(2, 4, 3, 5, 5), 3 * torch.randn(2, 4, 3, 5, 5)
    plain = uncond + 7.5 * (cond - uncond)
    torch.testing.assert_close(rescaled_guidance(uncond, cond, 7.5, 0.0), plain)
    full = rescaled_guidance(uncond, cond, 7.5, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2, 3, 4)), cond.std(dim=(1, 2, 3, 4)))


def test_the_geometry_centres_the_content_on_black_bars_as_the_engine_does():
    geometry = Geometry(toy_preset())
    assert (geometry.height, geometry.width, geometry.content) == (80, 128, 80)
    assert (geometry.top, geometry.left) == (0, 24)
    frames = world.render(world.parse_caption(CAPTION), 2, 80)
    padded = geometry.pad(frames)
    assert padded.shape == (2, 80, 128, 3) and not padded[:, :, :24].any()
    assert np.array_equal(geometry.crop(padded), frames)
    blue = torch.tensor([40.0, 70.0, 210.0]).view(1, 3, 1, 1) / 127.5 - 1
    upscaled = geometry.upscale(blue.expand(1, 3, 64, 64).clone())
    torch.testing.assert_close(upscaled[..., 24:104], blue.expand(1, 3, 80, 80))
    assert (upscaled[..., :24] == -1).all() and (upscaled[..., 104:] == -1).all()


def test_the_training_vae_is_the_exported_graph_modules(runs):
    task = EnhancerVaeTask(toy_preset(), 0)
    images = task.batch(0, 2)["images"]
    with torch.no_grad():
        posterior = task.vae.encode(images).latent_dist
        mean, logvar = EnhancerVaeEncoder(task.autoencoder)(images)
        torch.testing.assert_close(posterior.mean, mean)
        torch.testing.assert_close(posterior.logvar, logvar)
        torch.testing.assert_close(task.vae.decode(mean).sample,
                                   EnhancerVaeDecoder(task.autoencoder)(mean))


def test_the_enhancer_text_tower_starts_as_the_clip_towers_first_block(runs):
    task = EnhancerTask(toy_preset(), 0, runs)
    clip = read_checkpoint(runs / "clip")["modules"]["text"]
    torch.testing.assert_close(task.text.token_embedding.weight, clip["token_embedding.weight"])
    from st2v_export.modules.clip_text import build_clip_text

    tower = build_clip_text(toy_preset())
    tower.load_state_dict(clip)
    ids = tokenize([CAPTION + ", ", ""])
    with torch.no_grad():
        x, mask = tower._embeds(ids)
        expected = tower.ln_final(tower.transformer.resblocks[0](x, attn_mask=mask))
        torch.testing.assert_close(EnhancerTextEncoder(task.text)(ids), expected)
    assert task.text_states([CAPTION]).shape == (1, 77, 16)


def test_enhancer_steps_lower_the_loss_on_a_fixed_batch(runs, fit):
    vae = EnhancerVaeTask(toy_preset(), 0)
    before, after = fit(vae, vae.batch(0, 2), steps=6, lr=2e-3)
    assert after < before
    task = EnhancerTask(toy_preset(), 0, runs)
    batch = task.batch(0, 2)
    assert batch["videos"].shape == (2, 8, 3, 80, 128)
    before, after = fit(task, batch, steps=6, lr=1e-3)
    assert after < before


def test_the_enhancer_runs_evaluate_and_export_into_the_set(runs, tmp_path):
    metrics = json.loads((runs / "enhancer" / "metrics.json").read_text())
    assert {"colour", "shape", "psnr", "draft", "degraded"} <= metrics.keys()
    # The degraded drafts (faded, recoloured) are further from the sharp clip than perfect ones.
    assert metrics["degraded"]["draft"]["psnr"] < metrics["draft"]["psnr"]
    roles = ["enhancer_text_encoder", "enhancer_unet", "enhancer_vae_encoder",
             "enhancer_vae_decoder"]
    manifest = export_toy_set(runs, tmp_path / "set", roles=roles, log=QUIET)
    assert set(manifest["graphs"]) == set(roles)
    trained = manifest["provenance"]["training"]["roles"]
    assert trained == {"enhancer_text_encoder": "enhancer step 1",
                       "enhancer_unet": "enhancer step 1",
                       "enhancer_vae": "enhancer_vae step 1"}
    stage3 = manifest["pipeline"]["stage3"]
    assert stage3["guidance_scale"] == 3.0
    assert stage3["noise_timestep"] == stage3["scheduler"]["config"]["t_max"] == 300
    # The graph computes the trained UNet.
    task = EnhancerTask(toy_preset(), 0, runs)
    task.unet.load_state_dict(read_checkpoint(runs / "enhancer")["modules"]["unet"])
    sample = torch.randn(1, 4, 24, 10, 16, generator=torch.Generator().manual_seed(1))
    context = torch.randn(1, 77, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = task.unet.eval()(sample, torch.tensor([300]), context)
    session = ort.InferenceSession(str(tmp_path / "set" / "enhancer_unet.onnx"))
    (actual,) = session.run(None, {"sample": sample.numpy(), "timestep": np.array([300]),
                                   "encoder_hidden_states": context.numpy()})
    np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_the_ablation_judges_the_content_of_enhanced_frames():
    from st2v_export.toy.ablation import content

    frames = world.render(world.parse_caption(CAPTION), 3, 80)
    padded = Geometry(toy_preset()).pad(frames)
    assert np.array_equal(content(padded), frames)
    assert np.array_equal(content(frames), frames)  # the engine's cropped output
