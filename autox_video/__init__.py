"""autox-video: train and apply Video Swin Transformer classifiers on labelled video folders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autox_video.errors import (
    AnnotationError,
    AutoXError,
    CheckpointError,
    ConfigError,
    DataError,
    StorageError,
)

__version__ = "0.1.0"
__all__ = [
    "AutoXVideo",
    "AutoXError",
    "AnnotationError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "StorageError",
    "__version__",
]

if TYPE_CHECKING:
    from autox_video.api import AutoXVideo


def __getattr__(name: str) -> Any:
    # Lazy: `autox_video.spec` and `autox_video.config` must import without torch (operator image).
    if name == "AutoXVideo":
        from autox_video.api import AutoXVideo

        return AutoXVideo
    raise AttributeError(f"module 'autox_video' has no attribute {name!r}")
