"""`autox-operator`: `kopf run` with our handlers, the watched namespaces and the liveness endpoint.

autox-operator                       # namespaces from $AUTOX_NAMESPACES (comma-separated), else all
autox-operator -n team-a -n team-b   # any other `kopf run` option is passed through
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

HANDLERS_MODULE = "autox_operator.handlers"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def _given(args: Sequence[str], *flags: str) -> bool:
    return any(
        arg == flag or arg.startswith(f"{flag}=") or (len(flag) == 2 and arg.startswith(flag))
        for arg in args
        for flag in flags
    )


def kopf_args(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The `kopf run` command line for our arguments and environment."""
    args = ["run", "--standalone", "--module", HANDLERS_MODULE]
    if not _given(argv, "-n", "--namespace", "-A", "--all-namespaces"):
        namespaces = [n.strip() for n in environ.get("AUTOX_NAMESPACES", "").split(",") if n.strip()]
        args += [f"--namespace={n}" for n in namespaces] or ["--all-namespaces"]
    if not _given(argv, "-L", "--liveness"):
        args.append(f"--liveness={environ.get('AUTOX_LIVENESS') or DEFAULT_LIVENESS}")
    return args + list(argv)


def main(argv: Sequence[str] | None = None) -> None:
    from kopf.cli import main as kopf_main

    kopf_main(args=kopf_args(sys.argv[1:] if argv is None else argv, os.environ), prog_name="autox-operator")


if __name__ == "__main__":
    main()
