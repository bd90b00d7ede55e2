"""Custom presets: any well-formed name, dimensions from a dict or a JSON file, exported end to
end with a schema-valid manifest that records the preset's dimensions. The exports here are a few
small graphs of a preset narrower than tiny (a few seconds)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import REPO_ROOT
from st2v_export import presets
from st2v_export.cli import main
from st2v_export.manifest import preset_dimensions
from st2v_export.model_set import enhancer_dimensions, export_model_set
from st2v_export.presets import PresetError, preset_from_dict

SCHEMA = json.loads((REPO_ROOT / "models" / "manifest.schema.json").read_text())

TOY = {
    "name": "toy-world.v1",
    "text": {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
             "num_attention_heads": 1, "projection_dim": 8},
    "vision": {"layers": 1, "width": 16, "head_width": 16},
    "image_embed_dim": 16,
    "unet": {"block_out_channels": [8, 8, 8, 8], "cross_attention_dim": 8},
    "vae": {"block_out_channels": [8, 8, 8, 8]},
    # The enhancer's latent 18x8: the smallest height its padded down-sampling allows but one.
    "stage3": {"height": 144, "width": 64},
    "stage3_content": {"height": 64, "width": 64},
}
ROLES = ["text_encoder", "apm_resampler", "vae_decoder", "enhancer_vae_decoder"]


def _schema_of(definition: str) -> dict:
    return {"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{definition}"}


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    manifest, _ = export_model_set(preset_from_dict(TOY), out, roles=ROLES, log=lambda _: None)
    return out, manifest


def test_custom_preset_export_writes_a_schema_valid_manifest(toy_export):
    out, manifest = toy_export
    written = json.loads((out / "manifest.json").read_text())
    assert written == manifest
    jsonschema.validate(written, SCHEMA)
    assert written["preset"] == "toy-world.v1"
    assert written["name"] == "streamingt2v-toy-world.v1"
    assert sorted(written["graphs"]) == sorted(ROLES)
    for entry in written["graphs"].values():
        assert (out / entry["file"]).is_file()


def test_manifest_records_the_custom_dimensions(toy_export):
    _, manifest = toy_export
    dimensions = manifest["preset_dimensions"]
    assert dimensions["text"]["hidden_size"] == 8
    assert dimensions["text"]["vocab_size"] == presets.CLIP_VOCAB_SIZE  # kept from the base
    assert dimensions["unet"]["block_out_channels"] == [8, 8, 8, 8]
    assert dimensions["unet"]["layers_per_block"] == 2
    assert dimensions["image_embed_dim"] == 16
    assert dimensions["resolutions"] == {
        "stage1": {"height": 64, "width": 64},
        "stage2": {"height": 64, "width": 64},
        "stage3": {"height": 144, "width": 64},
        "stage3_content": {"height": 64, "width": 64},
    }
    assert dimensions["enhancer"]["architecture"] == "tiny"
    assert dimensions["enhancer"]["unet"]["dim_mult"] == [1, 1, 1, 1]
    stage3 = manifest["pipeline"]["stage3"]
    assert (stage3["height"], stage3["width"]) == (144, 64)


def test_graphs_have_the_custom_sizes(toy_export):
    _, manifest = toy_export
    graphs = manifest["graphs"]
    text_out = graphs["text_encoder"]["outputs"][0]["shape"]
    assert text_out[-1] == 8
    images = graphs["enhancer_vae_decoder"]["outputs"][0]["shape"]
    assert images[-2:] == [144, 64]


def test_builtin_preset_dimensions_follow_the_schema():
    schema = _schema_of("preset_dimensions")
    for name in presets.BUILTIN_PRESETS:
        preset = presets.get_preset(name)
        jsonschema.validate(preset_dimensions(preset, enhancer_dimensions(preset)), schema)
        jsonschema.validate(preset_dimensions(preset), schema)


def test_only_a_padding_other_than_zeros_is_recorded_and_the_schema_knows_it():
    schema = _schema_of("preset_dimensions")
    zeros = preset_dimensions(presets.TINY)
    assert "stage2_padding" not in zeros
    wrapping = preset_dimensions(preset_from_dict({"name": "wrap", "stage2_padding": "circular"}))
    assert wrapping == {**zeros, "stage2_padding": "circular"}
    jsonschema.validate(wrapping, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**zeros, "stage2_padding": "reflect"}, schema)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("tiny", True), ("full-random", True), ("toy", True), ("parity.320x512", True),
        ("a_b-c.9", True), ("7b", True), ("x" * 64, True),
        ("", False), ("a/b", False), ("../up", False), ("Toy", False), ("-toy", False),
        (".toy", False), ("toy world", False), ("tøy", False), ("x" * 65, False),
    ],
)
def test_preset_names_follow_the_schema_pattern(name, valid):
    assert jsonschema.Draft202012Validator(SCHEMA["properties"]["preset"]).is_valid(name) == valid
    if valid:
        assert presets.check_preset_name(name) == name
    else:
        with pytest.raises(PresetError, match="invalid preset name.*1 to 64 characters"):
            presets.check_preset_name(name)


def test_a_trailing_newline_is_not_a_name():
    # Python's `$` also matches before a final newline (ECMA-262's, the schema's, does not).
    with pytest.raises(PresetError):
        presets.check_preset_name("toy\n")


def test_a_manifest_without_dimensions_still_validates(tiny_manifest):
    # Sets exported before `preset_dimensions` existed lack it.
    older = {key: value for key, value in tiny_manifest.items() if key != "preset_dimensions"}
    jsonschema.validate(older, SCHEMA)


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "Toy"}, "invalid preset name 'Toy'"),
        ({"name": "tiny"}, "'tiny' is built in"),
        ({"name": "toy", "depth": 3}, r"unknown key\(s\) \['depth'\]"),
        ({"name": "toy", "base": "huge"}, "unknown preset 'huge'"),
        ({"name": "toy", "unet": 8}, "unet must be an object"),
        ({"name": "toy", "stage2": {"height": 64}}, "stage2 must be"),
        ({"name": "toy", "stage2": {"height": 60, "width": 64}}, "stage2.height must be a positive multiple"),
        ({"name": "toy", "stage3_content": {"height": 96, "width": 80}}, "larger than the stage3 frame"),
        ({"name": "toy", "image_embed_dim": 0}, "image_embed_dim must be a positive integer"),
        ({"name": "toy", "enhancer": "huge"}, "unknown enhancer 'huge'"),
        ({"name": "toy", "seeded_random": False}, "need enhancer 'full'"),
        ({"name": "toy", "seeded_random": "no"}, "seeded_random must be true or false"),
        ({"name": "toy", "cond_embedding_channels": [4, 0]}, "list of positive integers"),
        ({"name": "toy", "stage2_padding": "reflect"}, "unknown stage2_padding 'reflect'"),
        ({"name": "toy", "seeded_random": False, "enhancer": "full", "stage2_padding": "circular"},
         "trained with stage2_padding 'zeros'"),
    ],
)
def test_bad_custom_definitions_are_refused(definition, message):
    with pytest.raises(PresetError, match=message):
        preset_from_dict(definition)


def test_enhancer_resolution_is_checked_before_any_export(tmp_path):
    toy = preset_from_dict({"name": "toy", "stage3": {"height": 96, "width": 128}})
    with pytest.raises(PresetError, match="enhancer cannot run at stage3 96x128"):
        export_model_set(toy, tmp_path, roles=["enhancer_vae_decoder"], log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_registered_preset_exports_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "PRESETS", dict(presets.PRESETS))
    toy = presets.register_preset(preset_from_dict(TOY))
    assert presets.register_preset(preset_from_dict(TOY)) is not None  # same definition: no-op
    with pytest.raises(PresetError, match="already registered with other dimensions"):
        presets.register_preset(preset_from_dict({**TOY, "image_embed_dim": 32}))
    manifest, _ = export_model_set(toy.name, tmp_path, roles=["apm_resampler"], log=lambda _: None)
    assert manifest["preset"] == "toy-world.v1"
    assert manifest["preset_dimensions"]["image_embed_dim"] == 16


def test_cli_exports_a_preset_file_and_refuses_to_mix_presets(tmp_path, capsys):
    preset_file = tmp_path / "toy.json"
    preset_file.write_text(json.dumps(TOY))
    out = tmp_path / "set"
    only = ["--only", "apm_resampler", "--no-simplify"]
    assert main(["--preset-file", str(preset_file), "--out", str(out), *only]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(manifest, SCHEMA)
    assert manifest["preset"] == "toy-world.v1"
    assert manifest["preset_dimensions"]["unet"]["block_out_channels"] == [8, 8, 8, 8]

    # Partial re-exports into that set: the same preset is fine, another one would mix two sets.
    assert main(["--preset-file", str(preset_file), "--out", str(out), *only]) == 0
    capsys.readouterr()
    assert main(["--preset", "tiny", "--out", str(out), *only]) == 2
    assert "exported with preset 'toy-world.v1'" in capsys.readouterr().err
    preset_file.write_text(json.dumps({**TOY, "image_embed_dim": 32}))
    assert main(["--preset-file", str(preset_file), "--out", str(out), *only]) == 2
    assert "other dimensions of preset 'toy-world.v1'" in capsys.readouterr().err

    preset_file.write_text(json.dumps({**TOY, "name": "toy/v1"}))
    assert main(["--preset-file", str(preset_file), "--out", str(out), *only]) == 2
    error = capsys.readouterr().err
    assert str(preset_file) in error and "invalid preset name 'toy/v1'" in error
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--preset-file", str(preset_file), "--out", str(out)])
