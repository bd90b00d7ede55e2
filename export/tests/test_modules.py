"""Behaviour of the StreamingT2V-specific modules on the tiny preset: APM token mixing, CAM
mergers, (b f) frame-batch order, and the CLIP preprocessing against kornia's resize (the
reference implementation's `kornia.geometry.resize(..., antialias=True)`)."""

from __future__ import annotations

import kornia
import pytest
import torch

from st2v_export.graphs import Stage2Graphs
from st2v_export.modules.image import CLIP_MEAN, CLIP_STD, ClipPreprocess
from st2v_export.modules.merger import CamMerger
from st2v_export.presets import TEXT_TOKENS, TINY, preset_from_dict


@pytest.fixture(scope="module")
def graphs() -> Stage2Graphs:
    return Stage2Graphs(TINY, seed=3, weights=None)


def _unet_inputs(graphs: Stage2Graphs) -> list[torch.Tensor]:
    return list(graphs.spec("unet").example_inputs.values())


def _forward(module, inputs):
    with torch.no_grad():
        return module(*inputs)


def _set_alphas(unet, value: float) -> None:
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if name.endswith("attn2.alpha"):
                parameter.fill_(value)


def test_image_tokens_reach_the_unet_only_through_apm_mixing(graphs):
    unet = graphs.components.streaming_unet
    inputs = _unet_inputs(graphs)
    changed = list(inputs)
    changed[2] = inputs[2].clone()
    changed[2][:, TEXT_TOKENS:] += 1.0
    saved = {k: v.clone() for k, v in unet.state_dict().items() if k.endswith("attn2.alpha")}
    try:
        _set_alphas(unet, 0.0)
        assert torch.equal(_forward(unet, inputs), _forward(unet, changed))
        _set_alphas(unet, 1.0)
        assert not torch.allclose(_forward(unet, inputs), _forward(unet, changed))
    finally:
        unet.load_state_dict(saved, strict=False)


def test_unet_batch_entries_are_independent(graphs):
    """Each entry of a CFG batch gives what it gives alone: the (b f) layouts are consistent."""
    unet = graphs.components.streaming_unet
    inputs = _unet_inputs(graphs)
    both = _forward(unet, inputs)
    first = [tensor[:1] if index < 3 else tensor[:8] for index, tensor in enumerate(inputs)]
    torch.testing.assert_close(_forward(unet, first), both[:1], atol=1e-5, rtol=1e-5)


def test_cam_batch_entries_are_independent(graphs):
    cam = graphs.components.cam
    sample, timestep, context, cond = graphs.spec("cam").example_inputs.values()
    both = _forward(cam, [sample, timestep, context, cond])
    first = _forward(cam, [sample[:1], timestep[:1], context[:1], cond])
    for joint, alone in zip(both, first, strict=True):
        torch.testing.assert_close(alone, joint[:8], atol=1e-5, rtol=1e-5)


def test_cam_residuals_change_the_unet_output(graphs):
    unet = graphs.components.streaming_unet
    inputs = _unet_inputs(graphs)
    zeroed = inputs[:3] + [torch.zeros_like(tensor) for tensor in inputs[3:]]
    assert not torch.allclose(_forward(unet, inputs), _forward(unet, zeroed))


def test_merger_with_zero_output_projection_is_the_identity():
    merger = CamMerger(channels=16, head_dim=8, norm_groups=4).eval()
    torch.nn.init.zeros_(merger.temporal_transformer.proj_out.weight)
    torch.nn.init.zeros_(merger.temporal_transformer.proj_out.bias)
    skip = torch.randn(2 * 16, 16, 4, 4)
    cam = torch.randn(2 * 8, 16, 4, 4)
    assert torch.equal(_forward(merger, [skip, cam, 16, 8]), skip)


def test_merger_attends_per_video_and_pixel():
    """Changing one video's CAM features leaves the other video's skips unchanged."""
    merger = CamMerger(channels=16, head_dim=8, norm_groups=4).eval()
    skip = torch.randn(2 * 16, 16, 4, 4)
    cam = torch.randn(2 * 8, 16, 4, 4)
    other = cam.clone()
    other[8:] += 1.0
    base, changed = _forward(merger, [skip, cam, 16, 8]), _forward(merger, [skip, other, 16, 8])
    assert torch.equal(base[:16], changed[:16])
    assert not torch.allclose(base[16:], changed[16:])


@pytest.mark.parametrize(("size", "clip_size"), [(64, 32), (256, 224)])
def test_clip_preprocess_matches_kornia_resize(size, clip_size):
    images = torch.rand(2, 3, size, size) * 2 - 1
    expected = kornia.geometry.resize(
        images, (clip_size, clip_size), interpolation="bicubic", align_corners=True, antialias=True
    )
    expected = ((expected + 1) / 2 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        CLIP_STD
    ).view(1, 3, 1, 1)
    actual = _forward(ClipPreprocess((size, size), clip_size), [images])
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def _rolled_by_half_width(tensor: torch.Tensor) -> torch.Tensor:
    """Frames and feature maps rolled by half their width: 8 latent pixels at the full
    resolution, 4 after one down-sampling, ... so each level sees the same wrap."""
    if tensor.ndim < 4:
        return tensor
    return torch.roll(tensor, tensor.shape[-1] // 2, dims=-1)


def _as_tuple(output) -> tuple[torch.Tensor, ...]:
    return output if isinstance(output, tuple) else (output,)


@pytest.mark.parametrize("role", ["cam_cond_encoder", "cam", "unet"])
def test_circular_stage2_padding_makes_the_stage2_graphs_commute_with_wrapping_the_frame(role):
    # 128 pixels wide: latents 16 wide, so every level down to the 2-wide one rolls by whole
    # pixels. GroupNorm and the attentions (no positions) commute with a roll; only the border
    # of each padded convolution can tell the two ends of a row apart.
    differences = {}
    for padding in ("zeros", "circular"):
        preset = preset_from_dict({"name": f"wrap-{padding}", "stage2_padding": padding,
                                   "stage2": {"height": 64, "width": 128}})
        spec = Stage2Graphs(preset, seed=3, weights=None).spec(role)
        inputs = list(spec.example_inputs.values())
        outputs = _as_tuple(_forward(spec.module, inputs))
        rolled_after = [_rolled_by_half_width(output) for output in outputs]
        rolled_before = _as_tuple(_forward(spec.module, [_rolled_by_half_width(t) for t in inputs]))
        differences[padding] = max(
            float((a - b).abs().max()) for a, b in zip(rolled_after, rolled_before, strict=True)
        )
    assert differences["circular"] < 1e-5
    assert differences["zeros"] > 1e-3
