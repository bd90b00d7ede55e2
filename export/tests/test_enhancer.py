"""Enhancer graphs (G8-G10, MS-Vid2Vid-XL): export parity on the tiny preset, the full-size
architecture on the meta device against the reference counts, and checkpoint loading.

Reference numbers (parameter counts, key counts, down/up shapes) were measured on the upstream
StreamingT2V/modelscope code with random weights (architecture reference, sections 2.8 and 4.3);
golden values come from the reference libraries at test time: open_clip's own
`forward_intermediates`, modelscope's `AutoencoderKL.encode/decode`.
Run: .venv/bin/python -m pytest export/tests/test_enhancer.py -q
"""

from __future__ import annotations

import onnx
import open_clip
import pytest
import torch

from st2v_export.enhancer import (
    ENHANCER_SOURCE_FILES,
    CheckpointError,
    MissingSourceFilesError,
    enhancer_graphs,
)
from st2v_export.enhancer import configs, modules, reference
from st2v_export.enhancer.attention import FusedMultiHeadAttention
from st2v_export.enhancer.graphs import pretrained_networks, random_networks
from st2v_export.enhancer.weights import load_network, seeded_network
from st2v_export.onnx_export import export_graph

ENHANCER_ROLES = [
    "enhancer_text_encoder",
    "enhancer_unet",
    "enhancer_vae_encoder",
    "enhancer_vae_decoder",
]


@pytest.fixture(scope="module")
def tiny_specs():
    return {spec.role: spec for spec in enhancer_graphs("tiny", seed=0)}


@pytest.fixture(scope="module")
def exported(tiny_specs, tmp_path_factory):
    """Exports (once per module) the tiny graph of a role with the exporter's parity check."""
    directory = tmp_path_factory.mktemp("enhancer")
    graphs = {}

    def export(role: str):
        if role not in graphs:
            graphs[role] = export_graph(tiny_specs[role], directory)
        return graphs[role], directory / graphs[role].file

    return export


def test_tiny_preset_builds_every_enhancer_role(tiny_specs):
    assert sorted(tiny_specs) == sorted(ENHANCER_ROLES)


@pytest.mark.parametrize("role", ENHANCER_ROLES)
def test_tiny_graph_matches_onnxruntime_at_batches_1_2_3(tiny_specs, exported, role):
    spec = tiny_specs[role]
    graph, _ = exported(role)
    batch_axis = "frames" if "vae" in role else "batch"
    tensors = graph.inputs + graph.outputs
    assert [entry["shape"][0] for entry in tensors] == [batch_axis] * len(tensors)
    example_batch = next(iter(spec.example_inputs.values())).shape[0]
    assert {example_batch, *graph.parity.batch_sizes} == {1, 2, 3}
    assert graph.parity.max_abs_err <= spec.tolerance


def test_unet_graph_runs_every_attention_as_one_fused_ort_kernel(tiny_specs, exported):
    """No Softmax over a materialised score matrix: 14,400 spatial tokens at full size."""
    spec = tiny_specs["enhancer_unet"]
    _, path = exported("enhancer_unet")
    nodes = onnx.load(str(path)).graph.node
    fused = [node for node in nodes if node.op_type == "MultiHeadAttention"]
    attention_modules = [
        module
        for module in spec.module.modules()
        if isinstance(module, reference.unet_module().MemoryEfficientCrossAttention)
    ]
    assert {node.domain for node in fused} == {"com.microsoft"}
    assert len(fused) == len(attention_modules)
    assert [node.op_type for node in nodes if node.op_type == "Softmax"] == []


def test_fused_attention_is_softmax_attention_per_head():
    generator = torch.Generator().manual_seed(0)
    heads, width = 4, 32
    q = torch.randn(2, 7, width, generator=generator)
    k, v = torch.randn(2, 2, 5, width, generator=generator)
    head = width // heads
    per_head = [
        torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / head**0.5, dim=-1) @ v[..., s]
        for s in (slice(i * head, (i + 1) * head) for i in range(heads))
    ]
    torch.testing.assert_close(
        FusedMultiHeadAttention.apply(q, k, v, heads), torch.cat(per_head, dim=-1)
    )


def test_text_encoder_is_open_clip_penultimate_block_after_ln_final(tiny_specs):
    tower = seeded_network(lambda: modules.build_text_tower(configs.TINY.text), seed=5)
    ids = tiny_specs["enhancer_text_encoder"].example_inputs["input_ids"]
    golden = tower.forward_intermediates(
        ids,
        indices=[tower.transformer.layers - 2],
        normalize_intermediates=True,
        intermediates_only=True,
        output_fmt="NLC",
    )["text_intermediates"][0]
    with torch.no_grad():
        ours = modules.EnhancerTextEncoder(tower)(ids)
    torch.testing.assert_close(ours, golden, rtol=0, atol=1e-6)


def test_vae_graphs_are_the_reference_autoencoder_encode_and_decode(tiny_specs):
    autoencoder = seeded_network(lambda: modules.build_autoencoder(configs.TINY.vae), seed=5)
    images = tiny_specs["enhancer_vae_encoder"].example_inputs["images"]
    latents = tiny_specs["enhancer_vae_decoder"].example_inputs["latents"]
    with torch.no_grad():
        mean, logvar = modules.EnhancerVaeEncoder(autoencoder)(images)
        posterior = autoencoder.encode(images)
        decoded = modules.EnhancerVaeDecoder(autoencoder)(latents)
        golden_decoded = autoencoder.decode(latents)
    torch.testing.assert_close(mean, posterior.mean, rtol=0, atol=0)
    torch.testing.assert_close(logvar, posterior.logvar, rtol=0, atol=0)
    torch.testing.assert_close(decoded, golden_decoded, rtol=0, atol=0)


def test_text_encoder_attends_causally(tiny_specs):
    encoder = tiny_specs["enhancer_text_encoder"].module
    ids = tiny_specs["enhancer_text_encoder"].example_inputs["input_ids"][:1]
    changed = ids.clone()
    changed[0, 40] = 1000 if int(ids[0, 40]) != 1000 else 1001
    with torch.no_grad():
        before, after = encoder(ids), encoder(changed)
    torch.testing.assert_close(before[:, :40], after[:, :40], rtol=0, atol=0)
    assert (before[:, 40:] - after[:, 40:]).abs().amax(dim=-1).min() > 0


def _resampling_shapes(unet: torch.nn.Module, latent_h: int, latent_w: int) -> list[tuple]:
    """Output (h, w) of every Downsample then Upsample, on the meta device."""
    unet_code = reference.unet_module()
    shapes = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[-2:])))
        for module in unet.modules()
        if isinstance(module, (unet_code.Downsample, unet_code.Upsample))
    ]
    with torch.device("meta"):
        out = unet(
            torch.empty(1, 4, configs.CHUNK_FRAMES, latent_h, latent_w),
            torch.zeros(1, dtype=torch.int64),
            torch.empty(1, configs.TEXT_TOKENS, unet.context_dim),
        )
    for hook in hooks:
        hook.remove()
    assert tuple(out.shape) == (1, 4, configs.CHUNK_FRAMES, latent_h, latent_w)
    return shapes


@pytest.fixture(scope="module")
def full_unet():
    with torch.device("meta"):
        return modules.build_unet(configs.FULL.unet).eval()


def test_full_unet_has_the_reference_checkpoint_layout(full_unet):
    state = full_unet.state_dict()
    assert len(state) == 1480
    assert sum(tensor.numel() for tensor in state.values()) == 1_411_233_860
    assert {key.split(".")[0] for key in state} == {
        "time_embed",
        "input_blocks",
        "middle_block",
        "output_blocks",
        "out",
    }
    unet_code = reference.unet_module()
    kinds = [type(module) for module in full_unet.modules()]
    assert sum(issubclass(kind, unet_code.SpatialTransformer) for kind in kinds) == 16
    assert sum(issubclass(kind, unet_code.TemporalTransformer) for kind in kinds) == 17
    assert tuple(state["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape) == (
        320,
        1024,
    )
    assert tuple(state["output_blocks.11.1.transformer_blocks.0.attn2.to_v.weight"].shape) == (
        320,
        1024,
    )


def test_full_unet_resamples_90x160_asymmetrically(full_unet):
    assert _resampling_shapes(full_unet, 90, 160) == [
        (46, 80),
        (24, 40),
        (13, 20),
        (24, 40),
        (46, 80),
        (90, 160),
    ]


def test_tiny_unet_keeps_the_asymmetric_pad_and_crop(tiny_specs):
    with torch.device("meta"):
        unet = modules.build_unet(configs.TINY.unet).eval()
    assert _resampling_shapes(unet, *configs.TINY.latent_size) == [
        (6, 8),
        (4, 4),
        (3, 2),
        (4, 4),
        (6, 8),
        (10, 16),
    ]


def test_full_text_tower_has_open_clip_vit_h14_text_keys_and_23_used_blocks():
    with torch.device("meta"):
        tower = modules.build_text_tower(configs.FULL.text)
        clip = open_clip.CLIP(**open_clip.get_model_config("ViT-H-14"))
    ours = {key: tuple(value.shape) for key, value in tower.state_dict().items()}
    theirs = {
        key: tuple(value.shape)
        for key, value in clip.state_dict().items()
        if not key.startswith(ENHANCER_SOURCE_FILES["enhancer_text"].ignored_key_prefixes)
    }
    assert ours == theirs
    graph = modules.EnhancerTextEncoder(tower)
    assert len(graph.blocks) == 23
    assert sum(p.numel() for p in graph.parameters()) == 340_387_840


def test_full_vae_matches_the_sd21_first_stage_size():
    with torch.device("meta"):
        vae = modules.build_autoencoder(configs.FULL.vae)

    def count(graph: torch.nn.Module) -> int:
        return sum(p.numel() for p in graph.parameters())

    assert count(modules.EnhancerVaeEncoder(vae)) == 34_163_664
    assert count(modules.EnhancerVaeDecoder(vae)) == 49_490_199


def test_seeded_weights_are_reproducible_and_never_silenced():
    def unet_weights(seed: int) -> dict[str, torch.Tensor]:
        return seeded_network(lambda: modules.build_unet(configs.TINY.unet), seed).state_dict()

    first, again, other = unet_weights(7), unet_weights(7), unet_weights(8)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["out.2.weight"], other["out.2.weight"])
    assert [key for key, value in first.items() if not value.any()] == []


def _write_checkpoints(directory, networks) -> None:
    """The three source files, laid out as in `damo/Video-to-Video`, from tiny networks."""
    unet_state = networks.unet.state_dict()
    torch.save({"state_dict": unet_state}, directory / "non_ema_0035000.pth")
    text_state = dict(networks.text_tower.state_dict())
    text_state["visual.proj"] = torch.zeros(2, 2)
    text_state["logit_scale"] = torch.tensor(4.6)
    torch.save(text_state, directory / "open_clip_pytorch_model.bin")
    vae_state = {f"first_stage_model.{k}": v for k, v in networks.autoencoder.state_dict().items()}
    vae_state["model.diffusion_model.out.2.bias"] = torch.zeros(4)
    vae_state["cond_stage_model.model.logit_scale"] = torch.tensor(4.6)
    torch.save({"state_dict": vae_state}, directory / "v2-1_512-ema-pruned.ckpt")


def test_checkpoints_load_strictly_into_identical_graphs(tiny_specs, tmp_path):
    source = random_networks(configs.TINY, seed=3)
    _write_checkpoints(tmp_path, source)
    loaded = pretrained_networks(configs.TINY, {"enhancer": tmp_path})
    ids = tiny_specs["enhancer_text_encoder"].example_inputs["input_ids"]
    latents = tiny_specs["enhancer_vae_decoder"].example_inputs["latents"]
    with torch.no_grad():
        torch.testing.assert_close(
            modules.EnhancerTextEncoder(loaded.text_tower)(ids),
            modules.EnhancerTextEncoder(source.text_tower)(ids),
            rtol=0,
            atol=0,
        )
        torch.testing.assert_close(
            modules.EnhancerVaeDecoder(loaded.autoencoder)(latents),
            modules.EnhancerVaeDecoder(source.autoencoder)(latents),
            rtol=0,
            atol=0,
        )
    assert all(
        torch.equal(value, source.unet.state_dict()[key])
        for key, value in loaded.unet.state_dict().items()
    )


def test_strict_loading_lists_missing_unexpected_and_misshapen_keys(tmp_path):
    state = dict(random_networks(configs.TINY, seed=3).autoencoder.state_dict())
    del state["decoder.conv_out.weight"], state["encoder.conv_in.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["quant_conv.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "v2-1_512-ema-pruned.ckpt"
    torch.save({"state_dict": {f"first_stage_model.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(CheckpointError) as error:
        load_network(
            lambda: modules.build_autoencoder(configs.TINY.vae),
            path,
            ENHANCER_SOURCE_FILES["enhancer_vae"],
        )
    message = str(error.value)
    for expected in (
        str(path),
        "missing keys (2)",
        "decoder.conv_out.weight",
        "encoder.conv_in.bias",
        "unexpected keys (1)",
        "decoder.extra.weight",
        "quant_conv.weight: expected (8, 8, 1, 1), found (3, 3, 1, 1)",
    ):
        assert expected in message


def test_full_preset_without_files_lists_every_expected_file():
    with pytest.raises(MissingSourceFilesError) as error:
        enhancer_graphs("full", seed=0, sources=None)
    message = str(error.value)
    assert message.count("MISSING") == 3
    for source in ENHANCER_SOURCE_FILES.values():
        assert source.file_name in message
    assert "damo/Video-to-Video" in message and "v1.1.0" in message
    assert "ali-vilab/MS-Vid2Vid-XL" in message


def test_missing_file_error_reports_found_and_missing_files(tmp_path):
    unet_file = tmp_path / "non_ema_0035000.pth"
    unet_file.write_bytes(b"")
    with pytest.raises(MissingSourceFilesError) as error:
        enhancer_graphs("full", seed=0, sources={"enhancer_unet": unet_file})
    lines = str(error.value).splitlines()
    assert any(line.strip().startswith("found") and str(unet_file) in line for line in lines)
    assert sum(line.strip().startswith("MISSING") for line in lines) == 2


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="'huge'.*full-random.*tiny"):
        enhancer_graphs("huge", seed=0)
