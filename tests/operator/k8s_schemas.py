"""Validate objects against CRD openAPIV3Schemas with `jsonschema`, the way the API server would.

Kubernetes schemas are OpenAPI v3.0 (JSON Schema draft 4 plus `nullable` and `x-kubernetes-*`).
`strict=True` also rejects unknown fields, as `kubectl apply` (field validation Strict) does,
so a typo in a builder (`restartpolicy`) fails the test instead of being pruned silently.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
# Vendored once with their provenance (third_party/k8s/README.md): a clone alone passes `make test`.
K8S_SCHEMAS = ROOT / "third_party" / "k8s"
PYTORCHJOB_CRD = K8S_SCHEMAS / "kubeflow.org_pytorchjobs.yaml"
TRAINJOB_CRD = K8S_SCHEMAS / "trainer.kubeflow.org_trainjobs.yaml"
RUNTIME_CRD = K8S_SCHEMAS / "trainer.kubeflow.org_clustertrainingruntimes.yaml"
TRAINER_CRDS = [TRAINJOB_CRD, RUNTIME_CRD]  # Kubeflow Trainer v2
KSERVE_CRD = K8S_SCHEMAS / "serving.kserve.io_inferenceservices.yaml"  # about 2 MB: load once per session


def to_jsonschema(node: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """An OpenAPI v3 (structural) schema node -> a JSON Schema draft-4 node."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if "properties" in node:
        out["properties"] = {k: to_jsonschema(v, strict=strict) for k, v in node["properties"].items()}
        if strict and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_jsonschema(node["additionalProperties"], strict=strict)
    if isinstance(node.get("items"), dict):
        out["items"] = to_jsonschema(node["items"], strict=strict)
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [to_jsonschema(sub, strict=strict) for sub in node[key]]
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if "oneOf" in out:  # oneOf-of-required rules: a null object satisfies none of them
            out = {"anyOf": [{"type": "null"}, out]}
    return out


# libyaml's loader when built in: the KServe CRD takes seconds with the pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_crd(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506  (a safe loader)


def crd_schema(crd: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    version = next(v for v in versions if v.get("storage", True))
    return to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]), strict=strict)


class SchemaSet:
    """Validators for every kind of a few CRDs, looked up by (apiVersion, kind)."""

    def __init__(self, crd_paths: list[Path], *, strict: bool = True) -> None:
        self.validators: dict[tuple[str, str], jsonschema.Draft4Validator] = {}
        for path in crd_paths:
            crd = load_crd(path)
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]), strict=strict)
                self.validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(
                    schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
                )

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Every schema violation of `obj`, as 'path: message' lines (empty when valid)."""
        validator = self.validators[(obj["apiVersion"], obj["kind"])]
        return [
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]

    def validate(self, obj: dict[str, Any]) -> None:
        errors = self.errors(obj)
        if errors:
            name = obj.get("metadata", {}).get("name")
            raise AssertionError(f"{obj['kind']} {name!r} violates its CRD schema:\n  " + "\n  ".join(errors))


def our_crd_paths() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))
