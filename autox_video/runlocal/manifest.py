"""Load and validate a VideoTrainingJob / VideoInferenceJob manifest as the API server and the operator would.

Validation: the generated CRD schema (crds/, with jsonschema, draft-4 semantics) when both are at hand, then
always the pydantic spec models the CRDs are generated from (the operator's check). Errors are one line
naming the field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from autox_video.config import Config
from autox_video.errors import ConfigError
from autox_video.spec import trainer_config
from autox_video.spec.common import API_VERSION, NAME_PATTERN
from autox_video.spec.inference import INFERENCE, VideoInferenceJobSpec
from autox_video.spec.training import TRAINING, VideoTrainingJobSpec

KINDS: dict[str, type[BaseModel]] = {TRAINING.kind: VideoTrainingJobSpec, INFERENCE.kind: VideoInferenceJobSpec}


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its kind, name, parsed spec and the file it came from."""

    kind: str
    name: str
    spec: Any  # VideoTrainingJobSpec | VideoInferenceJobSpec
    path: Path


def _to_draft4(node: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3.0 structural schema node as JSON Schema draft 4 (drops x-kubernetes-*, maps nullable)."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if "properties" in node:
        out["properties"] = {k: _to_draft4(v) for k, v in node["properties"].items()}
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            out[key] = _to_draft4(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [_to_draft4(sub) for sub in node[key]]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_errors(doc: Mapping[str, Any]) -> list[str] | None:
    """The CRD schema's complaints about `doc` as 'field: message' lines; None when jsonschema is not installed.

    The schema is rendered from the spec models as `make crds` renders crds/ (so it holds in an installed
    wheel too); CEL rules are not evaluated here: the models' validators check the same things next.
    """
    try:
        import jsonschema
    except ImportError:
        return None
    from autox_video.spec.crdgen import render_crd

    info = TRAINING if doc.get("kind") == TRAINING.kind else INFERENCE
    crd = render_crd(info)
    schema = _to_draft4(copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]


def _pydantic_error(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in ("spec", *first["loc"]))
    return f"{field}: {first['msg']} (got {first.get('input')!r})"


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest file; ConfigError (one line, naming the field) when it is not valid."""
    p = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
    except OSError as err:
        raise ConfigError(f"{p}: cannot read the manifest ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ConfigError(f"{p}: expected one VideoTrainingJob or VideoInferenceJob document, found {len(docs)}")
    doc = docs[0]
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{p}: apiVersion: expected {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") not in KINDS:
        raise ConfigError(f"{p}: kind: expected one of {sorted(KINDS)}, got {doc.get('kind')!r}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name) or len(name) > 253:
        raise ConfigError(f"{p}: metadata.name: expected a Kubernetes object name, got {name!r}")
    if not isinstance(doc.get("spec"), dict):
        raise ConfigError(f"{p}: spec: required (a mapping)")
    errors = crd_errors(doc)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{p}: {errors[0]}{more}")
    try:
        spec = KINDS[doc["kind"]].model_validate(doc["spec"])
    except ValidationError as err:
        raise ConfigError(f"{p}: {_pydantic_error(err)}") from None
    return Manifest(kind=doc["kind"], name=name, spec=spec, path=p.resolve())


def manifest_config(
    manifest: Manifest,
    *,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    training: VideoTrainingJobSpec | None = None,
) -> Config:
    """The trainer config.yaml the operator would put in the job's ConfigMap (plus local `overrides`)."""
    if manifest.kind == TRAINING.kind:
        return trainer_config.training_config(manifest.spec, overrides=overrides)
    if checkpoint is None:
        checkpoint = manifest.spec.model.checkpoint
    if checkpoint is None:
        raise ConfigError(f"{manifest.path}: spec.model.trainingJobRef: no checkpoint found for it")
    return trainer_config.inference_config(manifest.spec, checkpoint=checkpoint, training=training, overrides=overrides)
