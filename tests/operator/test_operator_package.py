"""The operator package: torch-free imports, and the `autox-operator` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from autox_operator.main import kopf_args

HEAVY = ("torch", "torchvision", "mmaction", "mmengine", "mmcv", "decord")


def test_the_operator_never_imports_torch_mmaction2_or_decord() -> None:
    code = (
        "import sys\n"
        "import autox_operator.handlers, autox_operator.main, autox_operator.reconcile\n"
        "import autox_operator.search, autox_operator.trials\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_builders_and_status_import_no_kubernetes_client_and_no_kopf() -> None:
    code = (
        "import sys\n"
        "import autox_operator.builders, autox_operator.status, autox_operator.trials, autox_operator.metrics\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kopf')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]),
        (
            [],
            {"AUTOX_NAMESPACES": "team-a, team-b"},
            ["--namespace=team-a", "--namespace=team-b", "--liveness=http://0.0.0.0:8080/healthz"],
        ),
        (
            ["-n", "x", "--verbose"],
            {"AUTOX_NAMESPACES": "team-a"},
            ["--liveness=http://0.0.0.0:8080/healthz", "-n", "x", "--verbose"],
        ),
        (["--liveness=http://127.0.0.1:9/h"], {}, ["--all-namespaces", "--liveness=http://127.0.0.1:9/h"]),
        (
            [],
            {"AUTOX_LIVENESS": "http://0.0.0.0:9090/healthz"},
            ["--all-namespaces", "--liveness=http://0.0.0.0:9090/healthz"],
        ),
    ],
)
def test_kopf_args(argv: list[str], env: dict[str, str], expected: list[str]) -> None:
    assert kopf_args(argv, env) == ["run", "--standalone", "--module", "autox_operator.handlers", *expected]


def test_autox_operator_command_wraps_kopf_run() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from autox_operator.main import main; main(['--help'])"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "autox-operator run" in out.stdout and "--liveness" in out.stdout
