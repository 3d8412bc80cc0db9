"""Progress on a terminal: whether to draw bars, the bars (tqdm), and lines that do not break them.

Bars go to stderr, on rank 0, and only when stderr is a terminal: pods, CI and pipes get plain lines
instead, so logs stay greppable. `AUTOX_PROGRESS=0` (or `plain`, `off`) turns bars off on a terminal
too. `AUTOX_VERBOSE=1` (what `--verbose` sets; child processes inherit it) lets mmengine's own log
lines through. Every command (and a weights download) gets its bar from `bar()`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

PROGRESS_ENV = "AUTOX_PROGRESS"
VERBOSE_ENV = "AUTOX_VERBOSE"
_OFF = frozenset({"0", "off", "no", "false", "plain", "none"})


def draw_bars(stream: TextIO | None = None) -> bool:
    """Whether to draw progress bars: on rank 0, when `stream` (default stderr) is a terminal, unless turned off."""
    if os.environ.get(PROGRESS_ENV, "").strip().lower() in _OFF:
        return False
    if os.environ.get("RANK", "0") != "0":
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def verbose() -> bool:
    """Whether mmengine's own log lines (per-iteration, environment, config) are shown."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", *_OFF)


def set_verbose(on: bool) -> None:
    """Show (or hide) mmengine's own log lines here and in every child process started after this."""
    os.environ[VERBOSE_ENV] = "1" if on else "0"


class _NoBar:
    """Stands in for a bar when none is drawn (bars off, or tqdm not installed): every call does nothing."""

    n = 0
    total: float | None = None

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def reset(self, total: float | None = None) -> None:
        self.n, self.total = 0, total

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(
    total: float | None,
    desc: str,
    unit: str = "it",
    *,
    initial: float = 0,
    leave: bool = True,
    unit_scale: bool = False,
    enabled: bool = True,
) -> Any:
    """A tqdm bar on stderr when bars are drawn (and `enabled`), else an object with its methods that does nothing."""
    if not enabled or not draw_bars():
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the [train] extra
        return _NoBar()
    sized = _columns() > 0  # a terminal that reports no size (0 columns) would get an empty bar
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        unit_scale=unit_scale,
        file=sys.stderr,
        dynamic_ncols=sized,
        ncols=None if sized else 100,
        nrows=None if sized else 24,
    )


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def say(line: str, *, err: bool = False) -> None:
    """Print one line (stdout, or stderr with err) without tearing a bar being drawn."""
    stream = sys.stderr if err else sys.stdout
    if "tqdm" in sys.modules and draw_bars():
        from tqdm import tqdm

        tqdm.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)


class BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A logging handler on stderr that writes around any bar being drawn."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record as say() would."""
        try:
            say(self.format(record), err=True)
        except Exception:  # as logging.StreamHandler does: never raise from a log call
            self.handleError(record)
