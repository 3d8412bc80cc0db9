"""A clone of this repository alone builds and passes its tests: nothing reads a folder beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
SIBLING = "shared"
FORBIDDEN = ["../" + SIBLING, SIBLING + "/k8s", SIBLING + "/DESIGN", f'parent / "{SIBLING}"']


def _repository_files() -> list[str]:
    """The files a commit of the working tree holds: tracked plus untracked-but-not-ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file()})


def test_no_file_of_the_project_reads_the_sibling_folder() -> None:
    offenders = []
    for name in _repository_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (pictures) name no paths
        offenders += [f"{name}: {needle!r}" for needle in FORBIDDEN if needle in text]
    assert not offenders, "files refer to a folder beside the checkout: " + "; ".join(offenders)


def test_every_vendored_schema_has_its_provenance_line() -> None:
    vendored = ROOT / "third_party" / "k8s"
    readme = (vendored / "README.md").read_text()
    for schema in sorted(vendored.glob("*.yaml")):
        assert f"`{schema.name}`" in readme, f"{schema.name} has no source/version/licence line in the README"


@pytest.mark.slow
def test_a_copy_with_no_sibling_folders_runs_the_schema_tests(tmp_path: Path) -> None:
    """The repository's files alone, in an empty folder, validate against the vendored CRDs."""
    clone = tmp_path / "empty" / "autox-video"
    for name in _repository_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    env = {**os.environ, "PYTHONPATH": f"{clone}{os.pathsep}{clone / 'operator'}"}
    tests = [
        "tests/operator/test_operator_trainjob.py",
        "tests/operator/test_helm_chart.py::test_the_chart_runtime_is_a_valid_non_root_torch_runtime_with_the_trainer_image",
        "tests/operator/test_crds.py",
    ]
    present = [t for t in tests if (clone / t.split("::")[0]).is_file()]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *present],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert " passed" in done.stdout and not (tmp_path / "empty" / SIBLING).exists()
