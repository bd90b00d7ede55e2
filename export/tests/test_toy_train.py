"""Toy training (st2v_export.toy.train, weights): a few steps of each trainer lower the loss on a
fixed batch; a run stopped at a checkpoint and resumed ends bit-identical to one without a stop;
the trained checkpoints fill the VAE, text and image modules that Components builds for the toy
preset, and every other role keeps its seeded random weights. Runs are a few steps at batch 2-4."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch

from st2v_export.components import Components
from st2v_export.presets import VAE_SCALING_FACTOR
from st2v_export.toy import data as toy_data
from st2v_export.toy import world
from st2v_export.toy.image_tasks import (
    LATENT_STAT_FRAMES,
    ClipTask,
    VaeDecoderTask,
    VaeTask,
    deepen_decoder,
)
from st2v_export.toy.preset import TOY_PRESET, toy_preset, toy_preset_definition
from st2v_export.toy.data import tokenize
from st2v_export.toy.runfiles import read_checkpoint
from st2v_export.toy.train import TrainConfig, TrainError, train
from st2v_export.toy.train_cli import main as train_cli_main
from st2v_export.toy.weights import ToyWeights, ToyWeightsError, world_token_ids
from st2v_export.presets import preset_from_dict

QUIET = lambda _: None  # noqa: E731


def test_the_toy_preset_is_a_custom_preset_of_tiny_at_64():
    preset = toy_preset()
    assert preset.name == "toy" and TOY_PRESET["base"] == "tiny"
    assert (preset.stage1.height, preset.stage2.width) == (64, 64)
    assert preset.unet["cross_attention_dim"] == preset.text["hidden_size"]
    assert preset.vision["image_size"] == 64


def test_vae_steps_lower_the_loss_on_a_fixed_batch(fit):
    task = VaeTask(toy_preset(), seed=0)
    before, after = fit(task, task.batch(0, 4), steps=8, lr=2e-3)
    assert after < 0.8 * before


def test_clip_steps_lower_the_loss_on_a_fixed_batch(fit):
    task = ClipTask(toy_preset(), seed=0)
    before, after = fit(task, task.batch(0, 8), steps=8, lr=2e-3)
    assert after < 0.8 * before


def test_batches_are_pure_functions_of_seed_and_step_and_come_from_the_train_split():
    frames, captions, specs = toy_data.frame_batch(3, 5, 4, 64)
    again, _, _ = toy_data.frame_batch(3, 5, 4, 64)
    assert np.array_equal(frames, again) and frames.shape == (4, 64, 64, 3)
    assert not any(world.is_heldout(spec) for spec in specs)
    assert [world.caption(spec) for spec in specs] == captions
    _, _, heldout = toy_data.heldout_batch(4, 64)
    assert all(world.is_heldout(spec) for spec in heldout)


def test_clip_batches_pair_scenes_with_train_split_twins():
    task = ClipTask(toy_preset(), seed=0)
    batch = task.batch(3, 8)
    assert batch["images"].shape == (8, 3, 64, 64) and batch["input_ids"].shape == (8, 77)
    scenes = [world.parse_caption(c) for c in batch["captions"]]
    for scene, twin in zip(scenes[:4], scenes[4:], strict=True):
        assert not world.is_heldout(twin)
        assert twin.motion == scene.motion and twin.background == scene.background
        changed = [(a, b) for a, b in zip(scene.shapes, twin.shapes, strict=True) if a != b]
        assert len(changed) == 1
        first, second = changed[0]
        fields = ("shape", "colour", "size")
        assert sum(getattr(first, f) != getattr(second, f) for f in fields) == 1
    assert torch.equal(task.batch(3, 8)["images"], batch["images"])


def test_tokenize_matches_open_clip_on_toy_captions():
    captions = [toy_data.frame_and_caption(0, i, "train", 64)[1] for i in range(20)]
    assert torch.equal(tokenize(captions), open_clip.tokenize(captions))


def _config(model: str, out, steps: int, **extra) -> TrainConfig:
    batch = 4 if model == "clip" else 2
    return TrainConfig(model, steps, out, seed=1, batch=batch, schedule_steps=4, checkpoint_every=2,
                       log_every=1, eval_frames=4, **extra)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("model", ["vae", "clip", "enhancer_vae"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(model, tmp_path):
    train(_config(model, tmp_path / "straight", 4), log=QUIET)
    train(_config(model, tmp_path / "stopped", 2), log=QUIET)
    assert read_checkpoint(tmp_path / "stopped")["step"] == 2
    train(_config(model, tmp_path / "stopped", 4, resume=True), log=QUIET)
    straight = read_checkpoint(tmp_path / "straight")
    resumed = read_checkpoint(tmp_path / "stopped")
    assert resumed["step"] == straight["step"] == 4
    _assert_same_state(straight["modules"], resumed["modules"])
    _assert_same_state(straight["optimizer"]["state"], resumed["optimizer"]["state"])
    assert torch.equal(straight["rng"]["torch"], resumed["rng"]["torch"])
    log = (tmp_path / "stopped" / "log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in log]
    assert steps == [1, 2, 3, 4]
    assert not list((tmp_path / "stopped").glob("*.tmp"))


def test_an_existing_checkpoint_needs_resume_and_the_same_run(tmp_path):
    train(_config("vae", tmp_path, 2), log=QUIET)
    with pytest.raises(TrainError, match="--resume"):
        train(_config("vae", tmp_path, 3), log=QUIET)
    other_seed = _config("vae", tmp_path, 3, resume=True)
    other_seed.seed = 2
    with pytest.raises(TrainError, match="seed"):
        train(other_seed, log=QUIET)
    with pytest.raises(TrainError, match="unknown model"):
        TrainConfig("unet", 1, tmp_path)


def test_the_cli_trains_and_resumes(tmp_path, capsys):
    args = ["--model", "vae", "--steps", "1", "--out", str(tmp_path), "--batch", "2",
            "--eval-frames", "2", "--log-every", "1"]
    threads = torch.get_num_threads()
    assert train_cli_main(args + ["--threads", "1"]) == 0
    assert torch.get_num_threads() == threads
    assert "step 1/1 loss" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--resume"):
        train_cli_main(args)
    assert train_cli_main(args[:3] + ["2"] + args[4:] + ["--resume"]) == 0
    assert read_checkpoint(tmp_path)["step"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step vae and clip runs of the toy preset, as `RUNS/vae`, `RUNS/clip`."""
    root = tmp_path_factory.mktemp("toy_runs")
    for model, batch in (("vae", 2), ("clip", 4)):
        train(TrainConfig(model, 1, root / model, batch=batch, eval_frames=2), log=QUIET)
    return root


def test_weights_fill_the_vae_text_and_image_modules_of_components(runs):
    weights = ToyWeights(runs)
    components = Components(toy_preset(), 0, weights)
    clip = read_checkpoint(runs / "clip")
    _assert_same_state(components.visual.state_dict(), clip["modules"]["visual"])
    _assert_same_state(components.clip_text.state_dict(), clip["modules"]["text"])
    components.text_model, components.vae  # noqa: B018 (built, hence loaded)
    assert sorted(weights.loaded) == ["clip_text_encoder", "image_encoder", "text_encoder", "vae"]
    assert weights.fallbacks == []


def test_the_text_encoder_is_the_clip_towers_first_blocks(runs):
    components = Components(toy_preset(), 0, ToyWeights(runs))
    tower, text_model = components.clip_text, components.text_model
    ids = tokenize([
        "a small red circle moving left on a blue background",
        "a green star and a large white square bouncing on a vertical gradient background",
    ])
    layers = toy_preset().text["num_hidden_layers"]
    assert layers == len(tower.transformer.resblocks) - 1
    with torch.no_grad():
        x, mask = tower._embeds(ids)
        for block in tower.transformer.resblocks[:layers]:
            x = block(x, attn_mask=mask)
        expected = tower.ln_final(x)
        actual = text_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_the_exported_vae_reconstructs_the_same_with_normalised_latents(runs):
    vae = Components(toy_preset(), 0, ToyWeights(runs)).vae
    raw = VaeTask(toy_preset(), 0).vae
    raw.load_state_dict(read_checkpoint(runs / "vae")["modules"]["vae"])
    # The frames the statistics came from (train split, seed + 1).
    frames, _, _ = toy_data.frame_batch(1, 0, LATENT_STAT_FRAMES, 64)
    images = toy_data.to_pixels(frames)
    with torch.no_grad():
        means = vae.encode(images).latent_dist.mean
        recon = vae.decode(means[:4]).sample
        raw_recon = raw.decode(raw.encode(images[:4]).latent_dist.mean).sample
    torch.testing.assert_close(recon, raw_recon, rtol=1e-4, atol=1e-4)
    scaled = means * VAE_SCALING_FACTOR
    torch.testing.assert_close(scaled.mean(dim=(0, 2, 3)), torch.zeros(4), rtol=0, atol=1e-3)
    torch.testing.assert_close(scaled.std(dim=(0, 2, 3)), torch.ones(4), rtol=1e-3, atol=1e-3)


def test_untrained_roles_keep_the_seeded_random_weights(runs):
    weights = ToyWeights(runs)
    trained = Components(toy_preset(), 0, weights)
    seeded = Components(toy_preset(), 0, None)
    _assert_same_state(trained.resampler.state_dict(), seeded.resampler.state_dict())
    _assert_same_state(trained.cam.state_dict(), seeded.cam.state_dict())
    assert weights.fallbacks == ["apm_resampler", "cam"]
    assert ToyWeights(runs / "nowhere").has("open_clip")
    assert not ToyWeights(runs).has("raft")  # no toy RAFT: eval falls back to Farneback


def test_missing_or_mismatched_runs_are_refused(runs, tmp_path):
    with pytest.raises(ToyWeightsError, match="no checkpoint"):
        Components(toy_preset(), 0, ToyWeights(tmp_path, require=["vae"])).vae  # noqa: B018
    wider = toy_preset_definition()
    wider["name"] = "toy-wide"
    wider["vae"]["block_out_channels"] = [16, 32, 32, 32]
    preset = preset_from_dict(wider)
    with pytest.raises(ToyWeightsError, match="other vae"):
        Components(preset, 0, ToyWeights(runs, preset=preset)).vae  # noqa: B018
    larger = toy_preset_definition()
    larger["name"] = "toy-128"
    larger["stage2"] = {"height": 128, "width": 128}
    preset = preset_from_dict(larger)
    with pytest.raises(ToyWeightsError, match="other stage2"):
        Components(preset, 0, ToyWeights(runs, preset=preset)).visual  # noqa: B018


def _deep_decoder_preset():
    definition = toy_preset_definition()
    definition["name"] = "toy-deep-decoder-test"
    definition["vae"]["decoder_layers_per_block"] = 2
    return preset_from_dict(definition)


def test_a_deeper_decoder_starts_as_the_vae_runs_with_its_latent_statistics(runs, tmp_path):
    preset = _deep_decoder_preset()
    task = VaeDecoderTask(preset, 0, runs)
    assert [len(block.resnets) for block in task.vae.encoder.down_blocks] == [1, 1, 1, 1]
    assert [len(block.resnets) for block in task.vae.decoder.up_blocks] == [3, 3, 3, 3]
    vae_run = read_checkpoint(runs / "vae")
    narrow = VaeTask(toy_preset(), 0).vae
    narrow.load_state_dict(vae_run["modules"]["vae"])
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(task.vae.decode(latents).sample,
                                   narrow.decode(latents).sample, rtol=0, atol=1e-6)
    # The statistics are the vae run's, not measured again: exact for a recovered run too.
    for key in ("latent_mean", "latent_std"):
        assert torch.equal(torch.as_tensor(task.extras()[key]),
                           torch.as_tensor(vae_run["extras"][key]))
    config = TrainConfig("vae_decoder", 1, tmp_path / "vae_decoder", batch=2, eval_frames=2,
                         preset=preset, runs=runs)
    train(config, log=QUIET)
    trained = read_checkpoint(tmp_path / "vae_decoder")["modules"]["vae"]
    encoder = {k: v for k, v in vae_run["modules"]["vae"].items() if k.startswith("encoder.")}
    _assert_same_state(encoder, {k: trained[k] for k in encoder})  # frozen
    extra = "decoder.up_blocks.0.resnets.2.conv2.weight"
    assert trained[extra].abs().max() > 0  # the identity resnets train


def test_a_decoder_the_vae_run_does_not_fit_is_refused(runs):
    narrow = VaeTask(toy_preset(), 0).vae
    state = read_checkpoint(runs / "vae")["modules"]["vae"]
    with pytest.raises(TrainError, match="does not fit"):
        deepen_decoder(narrow, {**state, "decoder.up_blocks.0.resnets.2.conv2.bias": None})
    state.pop("encoder.conv_in.weight")
    with pytest.raises(TrainError, match="encoder.conv_in.weight"):
        deepen_decoder(VaeTask(_deep_decoder_preset(), 0).vae, state)


def test_zeroing_unused_tokens_keeps_the_caption_tokens(runs):
    weights = ToyWeights(runs, zero_unused=True)
    table = Components(toy_preset(), 0, weights).text_model.embeddings.token_embedding.weight
    used = world_token_ids()
    assert 0 in used and 49406 in used and 49407 in used and len(used) < 80
    assert bool(table[used].abs().sum(dim=1).gt(0).all())
    assert int(table.abs().sum(dim=1).gt(0).sum()) == len(used)
    caption_ids = set(tokenize(["an orange diamond and a small black triangle moving up-left on a "
                                "horizontal gradient background"]).flatten().tolist())
    assert caption_ids <= set(used)


def test_clip_loss_treats_repeated_captions_as_positives():
    task = ClipTask(toy_preset(), seed=0)
    batch = task.batch(0, 4)
    batch["captions"] = [batch["captions"][0]] * 4
    batch["input_ids"] = tokenize(batch["captions"])
    loss, parts = task.loss(batch, torch.Generator())
    assert parts["i2t_acc"] == 1.0
    # Frame -> caption: every caption is right, the uniform target is met exactly (log 4);
    # caption -> frame: every frame is right, at least log 4.
    assert loss.item() >= np.log(4) - 1e-5
