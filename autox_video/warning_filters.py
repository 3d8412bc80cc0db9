"""Warnings that tell the user nothing they can act on, silenced at their source (and only those).

Each filter names the warning's category, the module that issues it and the start of its message,
so any other warning of the same library still shows. `install()` runs before mmaction2, mmcv or
torch is imported by the CLI or a search worker.
"""

from __future__ import annotations

import logging
import warnings

# (category, issuing module, message start): printed on every run, nothing the user can change.
IGNORED_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # mmaction2 imports mmcv's transformer bricks; we use mmcv-lite on purpose (no compiled ops needed).
    (UserWarning, r"mmcv\.cnn\.bricks\.transformer", r"Fail to import ``MultiScaleDeformableAttention``"),
    # Swin's relative position index calls torch.meshgrid without `indexing` inside mmaction2.
    (UserWarning, r"torch\.functional", r"torch\.meshgrid: in an upcoming release"),
)

# mmengine's logger-based notices: its CheckpointHook always builds a FileClient (unused since we pass
# backend_args), which announces its own deprecation and that of its HardDiskBackend alias.
IGNORED_MMENGINE_LOGS: tuple[str, ...] = (
    '"FileClient" will be deprecated in future',
    '"HardDiskBackend" is the alias of "LocalBackend"',
)


class MmengineNoticeFilter(logging.Filter):
    """Drops mmengine's log records listed in IGNORED_MMENGINE_LOGS."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for an ignored notice."""
        message = record.getMessage()
        return not any(message.startswith(start) for start in IGNORED_MMENGINE_LOGS)


def install() -> None:
    """Add the filters of IGNORED_WARNINGS (idempotent: warnings dedupes identical filters)."""
    for category, module, message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def quiet_mmengine_logger(logger: logging.Logger, *, verbose: bool) -> None:
    """On mmengine's logger: drop its notices; unless verbose, only WARNING and above reach the terminal.

    The log file in the work dir keeps every INFO line either way.
    """
    for handler in logger.handlers:
        handler.addFilter(MmengineNoticeFilter())
        if not verbose and type(handler) is logging.StreamHandler:  # the console one; a FileHandler is a subclass
            handler.setLevel(max(handler.level, logging.WARNING))
