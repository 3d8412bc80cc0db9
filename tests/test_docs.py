"""The documentation site: `mkdocs build --strict` passes, its reference pages hold what the code has, and a
broken link or a page left out of the nav fails the build (what `make docs` and CI rely on)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autox_video.cli import build_parser
from autox_video.config import Config
from autox_video.spec.search import SearchConfig

ROOT = Path(__file__).resolve().parents[1]


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")]),
        "NO_MKDOCS_2_WARNING": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"), "-d", str(site)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _text(page: Path) -> str:
    """The page's text without tags (code spans and highlighted blocks split words into elements)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def _crd_paths(schema: dict, path: str) -> list[str]:
    out = [path]
    for name, sub in (schema.get("properties") or {}).items():
        out += _crd_paths(sub, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        for name, sub in (items.get("properties") or {}).items():
            out += _crd_paths(sub, f"{path}[].{name}")
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_strict_build_makes_every_nav_page_and_keeps_the_pictures(site: Path) -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    pages: list[str] = []

    def walk(items: list) -> None:
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            walk(value) if isinstance(value, list) else pages.append(value)

    walk(nav)
    assert "guide/weights.md" in pages and "how-it-works.md" in pages
    for page in pages:
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), page
    # The README shows docs/curves.png; the report guide shows both pictures from the built site.
    assert (site / "curves.png").is_file() and (site / "report.png").is_file()
    assert 'src="../../curves.png"' in (site / "guide/report/index.html").read_text(encoding="utf-8")
    assert not (site / "gen_reference.py").exists()  # the hook is not published


def test_config_reference_lists_every_key_with_its_default_and_meaning(site: Path) -> None:
    text = _text(site / "reference/config/index.html")
    keys = {line.strip() for line in text.splitlines()}
    flat = " ".join(text.split())
    for name, field in Config.model_fields.items():
        assert name in keys or f"{name} family" in keys, f"config key {name} has no row in the reference"
        meaning = " ".join((field.description or "").replace("`", "").split())
        assert meaning and meaning[:40] in flat, f"{name}: no meaning in the reference"
    assert "'swin_b'" in text and "4 x video_length" in text  # a default, and the family table
    for name in SearchConfig.model_fields:
        assert f"search.{name}" in text, name


def test_crd_reference_lists_every_field_of_every_crd(site: Path) -> None:
    text = _text(site / "reference/crds/index.html")
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["spec"]["names"]["kind"] in text
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for top in ("spec", "status"):
            for field in _crd_paths(schema["properties"][top], top):
                assert f"{field}\n" in text or f"{field} " in text, f"{path.name}: {field}"
    assert "spec.runtime.backend" in text and "status.engine" in text and "status.child" in text


def test_cli_reference_is_each_commands_help(site: Path) -> None:
    text = _text(site / "reference/cli/index.html")
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert len(subs.choices) >= 8
    for name, sub in subs.choices.items():
        assert f"usage: autox-video {name}" in text, name
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, f"{name} {flag}"


@pytest.mark.parametrize(
    ("page", "addition", "complaint"),
    [
        ("index.md", "\nSee [the missing page](guide/no-such-page.md).\n", "no-such-page.md"),
        ("index.md", "\nSee [a missing section](how-it-works.md#no-such-section).\n", "no-such-section"),
        ("guide/orphan.md", "# A page the nav does not list\n", "orphan.md"),
    ],
    ids=["broken-link", "broken-anchor", "page-not-in-nav"],
)
def test_strict_build_fails_on_a_broken_link_or_an_orphan_page(
    tmp_path: Path, page: str, addition: str, complaint: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copytree(ROOT / "crds", project / "crds")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    target = project / "docs" / page
    target.write_text((target.read_text(encoding="utf-8") if target.exists() else "") + addition, encoding="utf-8")
    done = _build(project, tmp_path / "site")
    assert done.returncode != 0
    assert complaint in done.stdout + done.stderr


def test_readme_keeps_the_two_commands_first_and_links_only_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("```bash") : readme.index("```", readme.index("```bash") + 7)]
    assert block.splitlines()[1].startswith("make demo") and block.splitlines()[2].startswith("make test")
    links = re.findall(r"\]\(([^)#\s]+)", readme)  # outside the mkdocs build: nothing else checks these
    assert "docs/how-it-works.md" in links and "docs/guide/kubernetes.md" in links
    for link in links:
        if "://" not in link:
            assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"
