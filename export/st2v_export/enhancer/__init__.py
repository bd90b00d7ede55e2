"""Export of the stage-3 enhancer (MS-Vid2Vid-XL): text encoder, UNet, VAE encoder and decoder."""

from .graphs import enhancer_graphs
from .reference import ReferenceCodeError
from .weights import (
    ENHANCER_SOURCE_FILES,
    SOURCE_DIRECTORY_KEY,
    SOURCE_ORIGIN,
    CheckpointError,
    MissingSourceFilesError,
    SourceFile,
)

__all__ = [
    "ENHANCER_SOURCE_FILES",
    "SOURCE_DIRECTORY_KEY",
    "SOURCE_ORIGIN",
    "CheckpointError",
    "MissingSourceFilesError",
    "ReferenceCodeError",
    "SourceFile",
    "enhancer_graphs",
]
