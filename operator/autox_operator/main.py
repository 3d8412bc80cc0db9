"""`autox-operator`: `kopf run` with our handlers, the watched namespaces and the liveness endpoint.

autox-operator                       # namespaces from $AUTOX_NAMESPACES (comma-separated), else all
autox-operator -n team-a -n team-b   # any other `kopf run` option is passed through

With AUTOX_LEADER_ELECTION=<lease name> (the chart sets it), replicas elect one active operator through
that coordination.k8s.io Lease in $POD_NAMESPACE (autox_operator.leader); the others wait as standbys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

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


def liveness_port(args: Sequence[str]) -> int | None:
    """The port of the `--liveness=URL` among kopf's arguments (a standby answers the probe there)."""
    url = next((a.split("=", 1)[1] for a in args if a.startswith("--liveness=")), None)
    return urlsplit(url).port if url else None


def main(argv: Sequence[str] | None = None) -> None:
    from kopf.cli import main as kopf_main

    from autox_operator.leader import LeaseConfig, run_as_leader

    args = kopf_args(sys.argv[1:] if argv is None else argv, os.environ)
    election = LeaseConfig.from_env()
    if election is None:
        kopf_main(args=args, prog_name="autox-operator")
        return
    run_as_leader(election, lambda: kopf_main(args=args, prog_name="autox-operator"), health_port=liveness_port(args))


if __name__ == "__main__":
    main()
