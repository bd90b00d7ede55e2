"""Full-size stage-1/2 modules against the StreamingT2V checkpoint layout, on the meta device
(no weights): parameter counts, key names and shapes listed in
/work/shared/reference/streamingt2v-architecture.md sections 2.1-2.7 and 4.2-4.3, measured there
on the reference implementation (Picsart-AI-Research/StreamingT2V, branch StreamingModelscope).
"""

from __future__ import annotations

import pytest
import torch

from st2v_export.components import Components
from st2v_export.presets import PRESETS


# Keys are relative to the checkpoint prefixes of st2v_export.components (e.g. the text encoder's
# "text_encoder.text_model.", the image encoder's "image_encoder.model.visual.").


def _count(state: dict) -> int:
    return sum(tensor.numel() for tensor in state.values())


@pytest.fixture(scope="module")
def full():
    with torch.device("meta"):
        components = Components(PRESETS["full-random"], seed=0, weights=None)
        yield {
            "base_model": components.streaming_unet.state_dict(),
            "unet": components.cam.state_dict(),
            "resampler": components.resampler.state_dict(),
            "text_encoder": components.text_model.state_dict(),
            "vae": components.vae.state_dict(),
            "visual": components.visual.state_dict(),
            "stage1": components.stage1_unet.state_dict(),
        }


@pytest.mark.parametrize(
    ("module", "parameters"),
    [
        ("base_model", 1_480_478_804),
        ("unet", 621_981_664),
        ("resampler", 22_299_904),
        ("text_encoder", 340_387_840),
        ("vae", 83_653_863),
        ("visual", 632_076_800),
        ("stage1", 1_411_233_860),
    ],
)
def test_parameter_counts_match_the_reference(full, module, parameters):
    assert _count(full[module]) == parameters


def test_streaming_unet_parts_match_the_reference(full):
    base = full["base_model"]
    mergers = {k: v for k, v in base.items() if k.startswith("cross_attention_merger_")}
    apm = {k: v for k, v in base.items() if ".attn2.conv" in k or k.endswith(".attn2.alpha")}
    assert _count(mergers) == 68_867_200
    assert _count(apm) == 377_744
    assert len([k for k in base if k.endswith("attn2.alpha")]) == 16


def test_cam_cond_encoder_size(full):
    e_cond = {k: v for k, v in full["unet"].items() if k.startswith("controlnet_cond_embedding.")}
    assert _count(e_cond) == 3_587_488


@pytest.mark.parametrize(
    ("module", "key", "shape"),
    [
        ("base_model", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.conv.weight", (77, 93, 3)),
        ("base_model", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.conv_ln.weight", (1024,)),
        ("base_model", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.alpha", ()),
        (
            "base_model",
            "cross_attention_merger_down_blocks.0.temporal_transformer.attention.to_q.weight",
            (320, 320),
        ),
        ("base_model", "cross_attention_merger_mid_block.temporal_transformer.proj_out.weight", (1280, 1280)),
        ("base_model", "cross_attention_merger_down_blocks.11.temporal_transformer.norm.weight", (1280,)),
        ("unet", "controlnet_cond_embedding.conv_out.weight", (320, 512, 3, 3)),
        ("unet", "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight", (1280, 1024)),
        ("unet", "transformer_in.proj_in.weight", (512, 320)),
        ("resampler", "context_embedding.0.weight", (1280, 1024)),
        ("resampler", "context_embedding.2.weight", (16384, 1280)),
        ("text_encoder", "encoder.layers.22.mlp.fc2.weight", (1024, 4096)),
        ("vae", "decoder.conv_out.weight", (3, 128, 3, 3)),
        ("vae", "post_quant_conv.weight", (4, 4, 1, 1)),
        ("visual", "proj", (1280, 1024)),
        ("visual", "conv1.weight", (1280, 3, 14, 14)),
        ("visual", "transformer.resblocks.31.attn.in_proj_weight", (3840, 1280)),
    ],
)
def test_checkpoint_keys_and_shapes(full, module, key, shape):
    assert tuple(full[module][key].shape) == shape


def test_cam_has_the_encoder_half_only(full):
    top_level = {key.split(".")[0] for key in full["unet"]}
    assert top_level == {
        "controlnet_cond_embedding",
        "conv_in",
        "time_embedding",
        "transformer_in",
        "down_blocks",
        "mid_block",
    }


def test_merger_channels_follow_the_skips(full):
    widths = [
        full["base_model"][f"cross_attention_merger_down_blocks.{i}.temporal_transformer.proj_in.weight"].shape[0]
        for i in range(12)
    ]
    assert widths == [320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280]
