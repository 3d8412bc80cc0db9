"""One exception hierarchy for every error a user can fix or should know about."""

from __future__ import annotations


class AutoXError(Exception):
    """Base of all autox-video errors; the CLI prints it on one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(AutoXError):
    """A bad config file, key, value or command-line flag (usage error)."""

    exit_code = 2


class AnnotationError(ConfigError):
    """A bad annotation list: the message names file:line."""


class DataError(AutoXError):
    """Unusable input data (too many unreadable videos, empty dataset)."""


class CheckpointError(AutoXError):
    """A checkpoint that cannot be found or does not match the model."""


class StorageError(AutoXError):
    """An S3 or local storage operation failed (names the URI and the cause)."""


class TrainingDiverged(AutoXError):
    """The training loss became NaN or infinite (names the epoch and iteration)."""


class S3Error(StorageError):
    """An S3 call failed; `reason` is one CamelCase word (BucketNotFound, StorageUnreachable, ...)."""

    def __init__(self, message: str, reason: str = "StorageError", *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient  # an outage: the same call may succeed later


class ExportError(AutoXError):
    """A model that cannot be exported (names the backbone and the operator at fault)."""
