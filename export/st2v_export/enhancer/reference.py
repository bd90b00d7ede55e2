"""The MS-Vid2Vid-XL reference modules, loaded from the installed `modelscope` package.

`modelscope` (PyPI) ships the enhancer's network code under
`modelscope/models/multi_modal/video_to_video/modules/`. Importing that package the usual way
needs xformers (no wheel for our torch), fairscale and rotary-embedding-torch, of which the
export calls nothing. So the two files we need are executed directly from their installed
paths, with small stand-ins for those three imports:

- `xformers.ops.memory_efficient_attention` is never reached: `MemoryEfficientCrossAttention`
  gets the forward of `attention.py` (same maths, no batch splitting above 16384 rows).
- `fairscale`'s `checkpoint_wrapper` is only used when `use_checkpoint=True`, which we never set.
- `RotaryEmbedding` is only built when `USE_TEMPORAL_TRANSFORMER` is False; it is True upstream.

The loaded modules are private copies (not registered in `sys.modules` under modelscope's
names), so patching their classes cannot leak into other users of modelscope.
"""

from __future__ import annotations

import contextlib
import importlib.util
import pathlib
import sys
import types
from collections.abc import Iterator
from functools import cache

from .attention import cross_attention_forward

MODELSCOPE_MODULES_DIR = ("models", "multi_modal", "video_to_video", "modules")


class ReferenceCodeError(RuntimeError):
    """The modelscope enhancer code is missing or no longer has the expected shape."""


def _modules_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("modelscope")
    if spec is None or spec.origin is None:
        raise ReferenceCodeError(
            "python package `modelscope` is not installed: expected modelscope==1.40.2 "
            "(see export/requirements.txt)"
        )
    return pathlib.Path(spec.origin).parent.joinpath(*MODELSCOPE_MODULES_DIR)


def _unreachable(what: str):
    def fail(*_args, **_kwargs):
        raise ReferenceCodeError(f"{what} must not run during export")

    return fail


def _stand_in_modules() -> dict[str, types.ModuleType]:
    xformers = types.ModuleType("xformers")
    xformers_ops = types.ModuleType("xformers.ops")
    xformers_ops.memory_efficient_attention = _unreachable("xformers attention")
    xformers.ops = xformers_ops
    fairscale = types.ModuleType("fairscale")
    fairscale_nn = types.ModuleType("fairscale.nn")
    fairscale_checkpoint = types.ModuleType("fairscale.nn.checkpoint")
    fairscale_checkpoint.checkpoint_wrapper = _unreachable("activation checkpointing")
    rotary = types.ModuleType("rotary_embedding_torch")
    rotary.RotaryEmbedding = _unreachable("rotary temporal attention")
    return {
        "xformers": xformers,
        "xformers.ops": xformers_ops,
        "fairscale": fairscale,
        "fairscale.nn": fairscale_nn,
        "fairscale.nn.checkpoint": fairscale_checkpoint,
        "rotary_embedding_torch": rotary,
    }


@contextlib.contextmanager
def _temporarily_importable(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """Makes `modules` importable only while the reference file executes."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update({name: m for name, m in modules.items() if saved[name] is None})
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)


def _load_file(stem: str) -> types.ModuleType:
    path = _modules_dir() / f"{stem}.py"
    if not path.is_file():
        raise ReferenceCodeError(f"modelscope enhancer module not found: expected {path}")
    spec = importlib.util.spec_from_file_location(f"st2v_export.enhancer._ms_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    with _temporarily_importable(_stand_in_modules()):
        spec.loader.exec_module(module)
    return module


@cache
def unet_module() -> types.ModuleType:
    """modelscope's `unet_v2v.py` with export-friendly attention."""
    module = _load_file("unet_v2v")
    if not module.USE_TEMPORAL_TRANSFORMER:
        raise ReferenceCodeError("unet_v2v.USE_TEMPORAL_TRANSFORMER is False; expected True")
    module.MemoryEfficientCrossAttention.forward = cross_attention_forward
    return module


@cache
def autoencoder_module() -> types.ModuleType:
    """modelscope's `autoencoder.py` (LDM AutoencoderKL)."""
    return _load_file("autoencoder")
