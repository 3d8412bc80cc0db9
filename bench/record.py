"""Shared benchmark plumbing: the machine in words, the table printer, `--record` into RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

# AUTOX_BENCH_RESULTS: where --record writes (tests point it at a temp file).
RESULTS = Path(os.environ.get("AUTOX_BENCH_RESULTS", Path(__file__).resolve().parent / "RESULTS.md"))
MARKERS = {"cpu": "<!-- cpu-results: newest first -->", "gpu": "<!-- gpu-results: newest first -->"}


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> str:
    """One line: CPU model and cores (and the GPU when `device` is cuda), OS, Python, key versions."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    parts = [
        f"{cpu_model()} x{cores} usable cores",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if device.startswith("cuda") and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            parts.insert(0, f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
    except ImportError:
        pass
    return ", ".join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table with right-aligned numeric columns (floats with 3 significant decimals)."""

    def cell(x: object) -> str:
        if isinstance(x, float) and x != x:
            return "-"  # NaN: not measured here (e.g. GPU memory on a CPU run)
        return f"{x:.3g}" if isinstance(x, float) and abs(x) < 100 else (f"{x:.0f}" if isinstance(x, float) else str(x))

    cells = [[str(h) for h in header]] + [[cell(x) for x in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headlines(values: dict[str, float]) -> str:
    """The `name: value` lines that end every benchmark's output."""
    return "\n".join(f"{k}: {v:.4g}" for k, v in values.items())


def record(kind: str, title: str, text: str, *, device: str = "cpu", note: str = "") -> Path:
    """Insert a dated entry (machine, command, output) under the CPU or GPU section of RESULTS.md."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry = (
        f"### {title}, {date}\n\n"
        f"- Machine: {machine(device)}\n"
        f"- Command: `{command}`\n" + (f"- Note: {note}\n" if note else "") + f"\n```\n{text.rstrip()}\n```\n\n"
    )
    marker = MARKERS[kind]
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if marker not in current:
        current = current.rstrip() + f"\n\n## {kind.upper()} results\n\n{marker}\n"
    head, tail = current.split(marker, 1)
    RESULTS.write_text(f"{head}{marker}\n\n{entry.rstrip()}\n\n{tail.lstrip()}", encoding="utf-8")
    return RESULTS


def publish(
    text: str, heads: dict[str, float], *, title: str, record_it: bool, device: str = "cpu", note: str = ""
) -> None:
    """Print a benchmark's table and headlines; with record_it, add them to RESULTS.md (GPU section for cuda)."""
    print(text)
    print(headlines(heads))
    if record_it:
        kind = "gpu" if device.startswith("cuda") else "cpu"
        path = record(kind, title, text + "\n" + headlines(heads), device=device, note=note)
        print(f"recorded in {path}", file=sys.stderr)
