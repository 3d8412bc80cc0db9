"""`autox-video weights list | pull`: the registry's weights, whether this machine has them, and fetching them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autox_video import families, storage
from autox_video.errors import ConfigError
from autox_video.weights.resolve import fetch_official, weights_dir


@dataclass(frozen=True)
class Row:
    """One backbone's official weights as `weights list` shows them."""

    backbone: str
    url: str
    size_mb: int
    licence: str
    cached: str | None  # the local file holding them, if any


def rows(checkpoints_dir: Path = Path("checkpoints")) -> list[Row]:
    """Every full-size backbone's weights, with the local copy (./checkpoints first, then the cache) if any."""
    out = []
    for name in families.NAMES:
        w = families.model(name).weights
        if w is None:
            continue
        here = [p for p in (checkpoints_dir / w.file_name, weights_dir() / w.file_name) if p.is_file()]
        out.append(Row(name, w.url, w.size_mb, w.licence, str(here[0]) if here else None))
    return out


def table(checkpoints_dir: Path = Path("checkpoints")) -> str:
    """`weights list` as text: backbone, size, cached or not, licence, source."""
    lines = [f"{'backbone':<16} {'size':>7}  {'cached':<6}  licence / source"]
    for r in rows(checkpoints_dir):
        lines.append(f"{r.backbone:<16} {r.size_mb:>4} MB  {'yes' if r.cached else 'no':<6}  {r.licence}")
        lines.append(f"{'':<33}{r.url}")
    tiny = [n for n in families.NAMES if families.model(n).tiny]
    lines.append(f"tiny backbones train from random weights: {', '.join(tiny)}")
    return "\n".join(lines)


def pull(backbones: list[str], to: str | None = None) -> list[str]:
    """Fetch each backbone's weights into the cache (and copy them under `to`: s3:// prefix or folder); the files."""
    unknown = [b for b in backbones if b not in families.MODELS]
    if unknown:
        raise ConfigError(f"weights pull: unknown backbone {unknown[0]!r}; one of {', '.join(families.NAMES)}")
    done = []
    for name in backbones:
        w = families.model(name).weights
        if w is None:
            raise ConfigError(f"weights pull: {name} is a tiny backbone and has no pretrained weights")
        path, _, _ = fetch_official(name, w)
        target = str(path)
        if to:
            target = storage.join(to, w.file_name) if storage.is_s3(to) else str(Path(to) / w.file_name)
            if not storage.is_s3(to):
                Path(to).mkdir(parents=True, exist_ok=True)
            storage.upload(str(path), target)
        done.append(target)
    return done
