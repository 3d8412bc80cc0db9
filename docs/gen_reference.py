"""MkDocs hook: the reference pages, generated from the code at every `mkdocs build` so they cannot drift.

reference/config.md   every config.yaml key (Config, SearchConfig) with type, default and description
reference/crds.md     every field of each CRD in crds/ (walked from openAPIV3Schema)
reference/cli.md      `autox-video --help` and each subcommand's --help (the argparse parser itself)

The pages exist only in memory (mkdocs `File.generated`): nothing is written into docs/.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGES = ("reference/config.md", "reference/crds.md", "reference/cli.md")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _import_root(root: Path) -> None:
    # The checkout being documented, not whichever autox_video the environment has installed.
    for path in (root / "operator", root):
        if (path / "autox_video").is_dir() or (path / "autox_operator").is_dir():
            sys.path.insert(0, str(path))


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    """A readable type: `int`, `str | None`, `'auto' | 'fp32'`, `list['tensorboard' | 'mlflow']`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    if field.is_required():
        return "required"
    return f"`{field.default!r}`"


def _model_table(model: Any, prefix: str = "") -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append(
            f"| `{prefix}{name}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} "
            f"| {_cell(field.description or '')} |"
        )
    return rows


def config_page() -> str:
    """Markdown of every config.yaml key, from the pydantic models."""
    from autox_video import families
    from autox_video.config import ALIASES, Config
    from autox_video.spec.search import Budget, Domain, SearchConfig

    lines = [
        "# Config keys",
        "",
        "Generated from `autox_video/config.py` (the `Config` pydantic model) at build time.",
        "Precedence, lowest first: these defaults, a backbone family's own recipe (keys marked *family*),",
        "config.yaml, command-line flags (`--key-name V`) or API keyword arguments. An unknown key is an error",
        "that names the closest valid one. Aliases: "
        + ", ".join(f"`{a}` for `{k}`" for k, al in ALIASES.items() for a in al)
        + ".",
        "",
    ]
    table = _model_table(Config)
    lines += [
        row.replace(f"| `{k}` |", f"| `{k}` *family* |", 1) if k in families.FAMILY_KEYS else row
        for row, k in zip(table, ["", "", *Config.model_fields], strict=True)
    ]
    lines += [
        "",
        "## Family defaults",
        "",
        "What a key marked *family* is for each backbone when config.yaml leaves it out.",
        "",
    ]
    keys = list(families.FAMILY_KEYS)
    lines += ["| backbone | " + " | ".join(f"`{k}`" for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    seed_meaning = {"clip_len": "4 x video_length", "frame_interval": "6", "grad_clip": "none"}
    for name in families.NAMES:
        cfg = Config(backbone=name)
        values = [seed_meaning.get(k, "") if getattr(cfg, k) is None else getattr(cfg, k) for k in keys]
        lines.append(f"| `{name}` | " + " | ".join(_cell(v) for v in values) + " |")
    lines += [
        "",
        "## search",
        "",
        "The `search:` section of `autox-video tune` (also `spec.search`, in camelCase).",
        "",
    ]
    lines += _model_table(SearchConfig, "search.")
    lines += ["", "### search.budget", ""] + _model_table(Budget, "search.budget.")
    lines += ["", "### search.space.KEY", "", (Domain.__doc__ or "").strip().splitlines()[0], ""]
    lines += _model_table(Domain)
    return "\n".join(lines) + "\n"


def _schema_rows(schema: dict[str, Any], path: str, required: bool, out: list[str]) -> None:
    kind = schema.get("type", "")
    if schema.get("x-kubernetes-int-or-string"):
        kind = "integer or string"
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type"):
        kind = f"array of {schema['items']['type']}"
    extras = []
    if "enum" in schema:
        extras.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    for key, word in (("minimum", "min"), ("maximum", "max")):
        if key in schema:
            extras.append(f"{word} `{schema[key]}`")
    if "pattern" in schema:  # a Kubernetes quantity's regex says less than its name
        extras.append("a Kubernetes quantity" if "[KMGTPE]i" in schema["pattern"] else f"pattern `{schema['pattern']}`")
    default = f"`{schema['default']!r}`" if "default" in schema else ""
    description = " ".join(filter(None, [schema.get("description", ""), "; ".join(extras)]))
    out.append(f"| `{path}` | {_cell(kind)} | {'yes' if required else ''} | {_cell(default)} | {_cell(description)} |")
    needed = set(schema.get("required", []))
    for name, sub in (schema.get("properties") or {}).items():
        _schema_rows(sub, f"{path}.{name}", name in needed, out)
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        needed = set(items.get("required", []))
        for name, sub in items["properties"].items():
            _schema_rows(sub, f"{path}[].{name}", name in needed, out)


def crds_page(root: Path) -> str:
    """Markdown of every field of every CRD in crds/, from its openAPIV3Schema."""
    lines = [
        "# Custom resources",
        "",
        "Generated from `crds/*.yaml` (themselves generated from `autox_video/spec` by `make crds`) at build time.",
        "",
    ]
    for path in sorted((root / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        names = crd["spec"]["names"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            short = ", ".join(f"`{s}`" for s in names.get("shortNames", []))
            lines += [
                f"## {names['kind']}",
                "",
                f"`{crd['spec']['group']}/{version['name']}`, short name {short}. {schema.get('description', '')}",
                "",
            ]
            columns = version.get("additionalPrinterColumns") or []
            if columns:
                lines += ["`kubectl get` columns:", "", "| column | field | meaning |", "|---|---|---|"]
                lines += [f"| {c['name']} | `{c['jsonPath']}` | {_cell(c.get('description', ''))} |" for c in columns]
                lines.append("")
            lines += ["| field | type | required | default | description |", "|---|---|---|---|---|"]
            rows: list[str] = []
            needed = set(schema.get("required", []))
            for name in ("spec", "status"):
                if name in schema.get("properties", {}):
                    _schema_rows(schema["properties"][name], name, name in needed, rows)
            lines += rows + [""]
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    """Markdown of `autox-video --help` and every subcommand's --help, from the argparse parser."""
    from autox_video import cli

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same width every build
    parser = cli.build_parser()
    lines = ["# Command line", "", "Generated from `autox_video/cli.py`'s argparse parser at build time.", ""]
    lines += ["```text", parser.format_help().rstrip(), "```", ""]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        lines += [f"## {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages to the site (mkdocs event)."""
    root = _root(config)
    _import_root(root)
    contents = {
        "reference/config.md": config_page(),
        "reference/crds.md": crds_page(root),
        "reference/cli.md": cli_page(),
    }
    for uri in PAGES:
        files.append(File.generated(config, uri, content=contents[uri]))
    return files
