"""Exports a whole model set: every graph, the tokenizer and the manifest, with progress."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import manifest as manifest_module
from . import tokenizer
from .checkpoint import OPEN_CLIP, RAFT, SOURCE_FILES, WeightSource, check_sources
from .graphs import EVAL_ROLES, STAGE2_ROLES, enhancer_specs, stage2_specs
from .onnx_export import ExportedGraph, ExportOptions, export_graph, sha256_of
from .presets import Preset, PresetError, resolve_preset
from .roles import role_interface
from .spec import GraphSpec


@dataclass
class GraphReport:
    graph: ExportedGraph
    seconds: float
    bytes: int


def enhancer_errors() -> tuple[type[Exception], ...]:
    """The enhancer exporter's error types (it checks its own source files)."""
    try:
        from .enhancer import CheckpointError, MissingSourceFilesError, ReferenceCodeError
    except ImportError:
        return ()
    return (CheckpointError, MissingSourceFilesError, ReferenceCodeError)


def enhancer_dimensions(preset: Preset, check: bool = False) -> dict | None:
    """The widths of the preset's enhancer, or None while `st2v_export.enhancer` cannot load.
    `check`: first make sure the enhancer can run at the preset's stage-3 size (PresetError)."""
    try:
        from .enhancer.configs import architecture_dimensions, check_stage3
    except ImportError:
        return None
    if check:
        check_stage3(preset)
    return architecture_dimensions(preset.enhancer)


def _selected(roles: list[str] | None) -> list[str] | None:
    if roles is None:
        return None
    for role in roles:
        role_interface(role)
    return list(roles)


def _specs(
    preset: Preset,
    seed: int,
    roles: list[str] | None,
    weights: WeightSource | None,
    sources: dict[str, Path] | None,
    include_enhancer: bool,
    log: Callable[[str], None],
) -> Iterable[GraphSpec]:
    stage2 = [role for role in STAGE2_ROLES if roles is None or role in roles]
    if roles is None and weights is not None:
        # Real weights for the eval graphs come from sources generation does not need.
        for role, source in zip(EVAL_ROLES, (OPEN_CLIP, RAFT), strict=True):
            if not weights.has(source):
                stage2.remove(role)
                log(f"skipping {role} (a graph of st2v eval): no --source {source}=PATH")
    yield from stage2_specs(preset, seed, weights, stage2)
    if include_enhancer and (roles is None or any(r not in STAGE2_ROLES for r in roles)):
        # A seeded preset's weight source (the toy runs) may hold a trained enhancer too.
        trained = weights if preset.seeded_random else None
        for spec in enhancer_specs(preset, seed, sources, trained):
            if roles is None or spec.role in roles:
                yield spec


def _source_entries(preset: Preset, sources: dict[str, Path] | None) -> list[dict]:
    vocab = tokenizer.default_vocab_path()
    entries = [{"name": "clip_bpe_vocab", "file": vocab.name, "sha256": sha256_of(vocab)}]
    for name, path in sorted((sources or {}).items()):
        path = Path(path)
        entry = {"name": name, "file": path.name}
        if path.is_file():
            entry["sha256"] = sha256_of(path)
        entries.append(entry)
    return entries


def _existing_graphs(out_dir: Path, preset: Preset, dimensions: dict) -> dict:
    """The graphs of the manifest already in `out_dir`, refused when it was exported from another
    preset (or from other dimensions under the same custom name): the sets would mix."""
    path = out_dir / manifest_module.MANIFEST_FILE
    if not path.is_file():
        return {}
    existing = json.loads(path.read_text())
    if existing.get("preset") != preset.name:
        differs = f"preset {existing.get('preset')!r}"
    elif existing.get("preset_dimensions", dimensions) != dimensions:
        differs = f"other dimensions of preset {preset.name!r}"
    else:
        return existing["graphs"]
    raise PresetError(
        f"{path} was exported with {differs}: re-exporting only some graphs with preset "
        f"{preset.name!r} would mix two model sets; export every graph (no --only) or write to "
        "another directory"
    )


def export_model_set(
    preset: str | Preset,
    out_dir: Path,
    seed: int = 0,
    roles: list[str] | None = None,
    sources: dict[str, Path] | None = None,
    include_enhancer: bool = True,
    trust_pickle: bool = False,
    log: Callable[[str], None] = print,
    options: ExportOptions = ExportOptions(),
    weights: WeightSource | None = None,
    training: dict | None = None,
) -> tuple[dict, list[GraphReport]]:
    """Exports the preset's graphs (or only `roles`, keeping the other entries of an existing
    manifest of the same preset in `out_dir`), writes tokenizer.json and a schema-valid
    manifest.json. `preset`: a registered preset's name or any Preset (custom ones included).
    `weights`: the stage-1/2 weights to export instead of the preset's own (its `--source`
    checkpoints, or seeded random); anything with WeightSource's `has` and `load_into`, such as
    the toy world's trained runs (`toy.weights.ToyWeights`), described by `training` in the
    manifest's provenance."""
    preset = resolve_preset(preset)
    roles = _selected(roles)
    exports_enhancer = include_enhancer and (roles is None or any(r not in STAGE2_ROLES for r in roles))
    enhancer = enhancer_dimensions(preset, check=exports_enhancer)
    # Checked before exporting: a refused partial re-export costs nothing.
    existing = {}
    if roles is not None:
        dimensions = manifest_module.preset_dimensions(preset, enhancer)
        existing = _existing_graphs(out_dir, preset, dimensions)
    if weights is None and not preset.seeded_random:
        check_sources(sources or {}, SOURCE_FILES)
        weights = WeightSource(sources or {}, trust_pickle)
    out_dir.mkdir(parents=True, exist_ok=True)

    reports = []
    specs = _specs(preset, seed, roles, weights, sources, include_enhancer, log)
    for index, spec in enumerate(specs, start=1):
        log(f"[{index}] {spec.role}: exporting")
        started = time.monotonic()
        graph = export_graph(spec, out_dir, options=options)
        size = sum((out_dir / f).stat().st_size for f in [graph.file] + [e["file"] for e in graph.external_data])
        reports.append(GraphReport(graph, time.monotonic() - started, size))
        log(f"[{index}] {spec.role}: done, max abs err {graph.parity.max_abs_err:.2e}")

    tokenizer.write_tokenizers(out_dir)
    manifest = manifest_module.build_manifest(
        preset,
        [report.graph for report in reports],
        seed,
        _source_entries(preset, sources),
        options.libraries(),
        enhancer,
        training,
    )
    manifest["graphs"] = existing | manifest["graphs"]
    manifest_module.validate_manifest(manifest)
    manifest_module.write_manifest(manifest, out_dir)
    return manifest, reports


def summary_table(reports: list[GraphReport]) -> str:
    header = f"{'graph':<22}{'params':>12}{'size MB':>10}{'max abs err':>14}{'tolerance':>12}{'seconds':>9}"
    rows = [header, "-" * len(header)]
    for report in reports:
        graph = report.graph
        rows.append(
            f"{graph.role:<22}{graph.parameters:>12,}{report.bytes / 1e6:>10.2f}"
            f"{graph.parity.max_abs_err:>14.2e}{graph.parity.tolerance:>12.1e}{report.seconds:>9.1f}"
        )
    return "\n".join(rows)
