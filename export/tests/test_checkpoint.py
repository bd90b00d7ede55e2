"""Loading of the full preset's checkpoints, tested with tiny fake checkpoints written here:
strict key checks, source-file errors, and the CLI's promised errors."""

from __future__ import annotations

import pytest
import torch

from st2v_export import cli
from st2v_export.checkpoint import (
    MODELSCOPE_T2V,
    SOURCE_FILES,
    STREAMING_T2V,
    MissingSourceError,
    StateDictMismatchError,
    WeightSource,
)
from st2v_export.components import Components
from st2v_export.presets import TINY

STREAMING_COMPONENTS = {
    "text_model": "text_encoder.text_model.",
    "visual": "image_encoder.model.visual.",
    "resampler": "resampler.",
    "cam": "unet.",
    "streaming_unet": "base_model.",
    "vae": "vae.",
}


@pytest.fixture(scope="module")
def reference():
    """Tiny components with seed 7: the weights the fake checkpoints hold."""
    return Components(TINY, seed=7, weights=None)


def _streaming_state(reference: Components) -> dict[str, torch.Tensor]:
    state = {}
    for attribute, prefix in STREAMING_COMPONENTS.items():
        for key, tensor in getattr(reference, attribute).state_dict().items():
            state[prefix + key] = tensor.clone()
    # The reference checkpoint also keeps the unused text half of the OpenCLIP image model.
    state["image_encoder.model.token_embedding.weight"] = torch.zeros(4, 2)
    state["image_encoder.model.logit_scale"] = torch.zeros(())
    return state


def _write_sources(tmp_path, reference, state=None) -> dict:
    checkpoint = tmp_path / "streaming_t2v.ckpt"
    torch.save({"state_dict": state or _streaming_state(reference), "epoch": 3}, checkpoint)
    modelscope = tmp_path / "text-to-video-ms-1.7b"
    (modelscope / "unet").mkdir(parents=True)
    from safetensors.torch import save_file

    stage1 = {k: v.clone().contiguous() for k, v in reference.stage1_unet.state_dict().items()}
    save_file(stage1, modelscope / "unet" / "diffusion_pytorch_model.fp16.safetensors")
    return {STREAMING_T2V: checkpoint, MODELSCOPE_T2V: modelscope}


def _loaded(tmp_path, reference, state=None) -> Components:
    return Components(TINY, seed=0, weights=WeightSource(_write_sources(tmp_path, reference, state)))


@pytest.fixture(scope="module")
def loaded_components(tmp_path_factory, reference) -> Components:
    return _loaded(tmp_path_factory.mktemp("sources"), reference)


@pytest.mark.parametrize("attribute", [*STREAMING_COMPONENTS, "stage1_unet"])
def test_every_component_loads_the_checkpoint_weights(loaded_components, reference, attribute):
    loaded = getattr(loaded_components, attribute).state_dict()
    expected = getattr(reference, attribute).state_dict()
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key


def test_missing_key_is_listed(tmp_path, reference):
    state = _streaming_state(reference)
    del state["resampler.context_embedding.2.bias"]
    with pytest.raises(StateDictMismatchError, match="context_embedding.2.bias") as error:
        _ = _loaded(tmp_path, reference, state).resampler
    assert error.value.missing == ["context_embedding.2.bias"]


def test_unexpected_key_is_listed(tmp_path, reference):
    state = _streaming_state(reference)
    state["base_model.extra_layer.weight"] = torch.zeros(2)
    with pytest.raises(StateDictMismatchError) as error:
        _ = _loaded(tmp_path, reference, state).streaming_unet
    assert error.value.unexpected == ["extra_layer.weight"]


def test_key_outside_every_component_is_rejected(tmp_path, reference):
    state = _streaming_state(reference)
    state["noise_generator.buffer"] = torch.zeros(2)
    with pytest.raises(StateDictMismatchError, match="noise_generator.buffer"):
        _ = _loaded(tmp_path, reference, state).vae


def test_shape_mismatch_is_listed(tmp_path, reference):
    state = _streaming_state(reference)
    state["resampler.context_embedding.0.bias"] = torch.zeros(3)
    with pytest.raises(StateDictMismatchError, match=r"context_embedding.0.bias: \(64,\) vs \(3,\)"):
        _ = _loaded(tmp_path, reference, state).resampler


def test_pointwise_conv_layout_loads_into_linear_projections(tmp_path, reference):
    state = _streaming_state(reference)
    key = "base_model.down_blocks.0.attentions.0.proj_in.weight"
    state[key] = state[key][:, :, None, None].clone()
    loaded = _loaded(tmp_path, reference, state).streaming_unet.state_dict()
    assert torch.equal(loaded["down_blocks.0.attentions.0.proj_in.weight"], state[key][:, :, 0, 0])


def test_missing_sources_list_every_expected_file(tmp_path):
    with pytest.raises(MissingSourceError) as error:
        WeightSource({STREAMING_T2V: tmp_path / "absent.ckpt"})
    message = str(error.value)
    assert set(error.value.missing) == set(SOURCE_FILES)
    for name, where in SOURCE_FILES.items():
        assert f"{name}: {where}" in message
    assert "absent.ckpt does not exist" in message


def test_stage1_folder_without_weights_names_the_files(tmp_path, reference):
    sources = _write_sources(tmp_path, reference)
    for file in (sources[MODELSCOPE_T2V] / "unet").iterdir():
        file.unlink()
    components = Components(TINY, seed=0, weights=WeightSource(sources))
    with pytest.raises(MissingSourceError, match="diffusion_pytorch_model.fp16.safetensors"):
        _ = components.stage1_unet


def test_cli_rejects_an_unknown_graph_name(tmp_path, capsys):
    assert cli.main(["--out", str(tmp_path), "--only", "not_a_graph"]) == 2
    assert "unknown graph name 'not_a_graph'" in capsys.readouterr().err


def test_cli_rejects_an_unknown_preset(tmp_path, capsys):
    assert cli.main(["--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_cli_full_preset_without_sources_lists_them(tmp_path, capsys):
    assert cli.main(["--preset", "full", "--out", str(tmp_path), "--no-enhancer"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in SOURCE_FILES)
