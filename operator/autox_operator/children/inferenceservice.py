"""The serving.kserve.io/v1beta1 InferenceService of a VideoTrainingJob's spec.serving (KServe).

runtime autox: a custom predictor running `autox-video serve --checkpoint <best> --port 8080` in the
trainer image. runtime triton: the ONNX export's Triton repository (output/export/triton/) on KServe's
Triton runtime, with `autox-video serve --model <output/export/>` as the transformer that decodes videos.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from autox_operator import constants as C
from autox_operator.children.base import (
    Owner,
    child_metadata,
    child_name,
    compute_resources,
    container_security_context,
    pod_security_context,
    s3_env,
)
from autox_operator.settings import OperatorSettings
from autox_video.spec.serving import ServingResources
from autox_video.spec.trainer_config import normalise_prefix
from autox_video.spec.training import VideoTrainingJobSpec

SCRATCH = "scratch"  # the serve container's writable emptyDir (downloads, request videos)


def isvc_name(owner_name: str) -> str:
    """`<job>-serve`, shortened deterministically when too long."""
    return child_name(owner_name, C.SERVING_SUFFIX)


def export_uri(output: str) -> str:
    """Where `autox-video export` writes model.json and triton/<name>/config.pbtxt under spec.output."""
    return f"{normalise_prefix(output)}{C.EXPORT_DIR}"


def served_uri(spec: VideoTrainingJobSpec, checkpoint: str) -> str:
    """What the InferenceService serves: the checkpoint (autox) or the export directory (triton)."""
    assert spec.serving is not None
    return checkpoint if spec.serving.runtime == "autox" else export_uri(spec.output)


def _resources(res: ServingResources, *, gpus: bool = True) -> dict[str, Any]:
    return compute_resources(res.cpu, res.memory, res.gpus if gpus else 0)


def _serve_container(
    spec: VideoTrainingJobSpec, settings: OperatorSettings, args: list[str], *, gpus: bool
) -> dict[str, Any]:
    assert spec.serving is not None
    container: dict[str, Any] = {
        "name": C.KSERVE_CONTAINER,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [C.SERVE_COMMAND],
        "args": ["serve", *args, "--port", str(C.SERVE_PORT)],
        "ports": [{"containerPort": C.SERVE_PORT, "protocol": "TCP"}],
        "env": [
            *s3_env(spec.storage, settings),
            # Downloads (the checkpoint, s3:// videos) and request videos go to the scratch emptyDir, not the image.
            {"name": "AUTOX_CACHE_DIR", "value": C.CACHE_DIR},
            {"name": "TMPDIR", "value": C.DATA_DIR},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "volumeMounts": [{"name": SCRATCH, "mountPath": C.DATA_DIR}],
        "securityContext": container_security_context(),
    }
    resources = _resources(spec.serving.resources, gpus=gpus)
    if resources:
        container["resources"] = resources
    return container


def _component(spec: VideoTrainingJobSpec, *, ours: bool) -> dict[str, Any]:
    """A predictor's or transformer's pod fields: replicas, identity and Pod Security "restricted" (our image's
    user and a scratch emptyDir when `ours`; the Triton runtime's container keeps its own non-root user)."""
    serving = spec.serving
    assert serving is not None
    out: dict[str, Any] = {"minReplicas": serving.min_replicas}
    if serving.max_replicas is not None:
        out["maxReplicas"] = serving.max_replicas
    # spec.serving.serviceAccountName, else the job's own (workload identity reads the checkpoint / export).
    account = serving.service_account_name or spec.service_account_name
    if account:
        out["serviceAccountName"] = account
    if ours:
        out["securityContext"] = pod_security_context()
        out["volumes"] = [{"name": SCRATCH, "emptyDir": {}}]
    else:
        out["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    return out


# The restricted profile for a KServe runtime's container (its image's own non-root user stays).
MODEL_SECURITY_CONTEXT = {**container_security_context(), "runAsNonRoot": True}


def isvc_spec(spec: VideoTrainingJobSpec, checkpoint: str, settings: OperatorSettings, name: str) -> dict[str, Any]:
    """The InferenceService `name`'s spec for spec.serving, serving `checkpoint` (autox) or the export (triton);
    either way the model's v2 routes are /v2/models/<name>/..."""
    serving = spec.serving
    assert serving is not None
    if serving.runtime == "autox":
        # KServe passes a custom predictor no arguments: the model's name is ours to set (a transformer's
        # comes from KServe's --model_name, the same InferenceService name).
        container = _serve_container(spec, settings, ["--checkpoint", checkpoint, "--name", name], gpus=True)
        return {"predictor": {**_component(spec, ours=True), "containers": [container]}}
    export = export_uri(spec.output)
    model: dict[str, Any] = {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "storageUri": f"{export}{C.TRITON_DIR}",
        "securityContext": MODEL_SECURITY_CONTEXT,
    }
    resources = _resources(serving.resources)
    if resources:
        model["resources"] = resources
    # The transformer decodes videos on CPU and sends the clips to Triton: KServe's controller appends
    # --model_name <isvc> --predictor_host <predictor>.<namespace> --http_port 8080 to these args.
    transformer = _serve_container(spec, settings, ["--model", export], gpus=False)
    return {
        "predictor": {**_component(spec, ours=False), "model": model},
        "transformer": {**_component(spec, ours=True), "containers": [transformer]},
    }


def spec_hash(isvc_spec_: Mapping[str, Any]) -> str:
    """A short digest of an InferenceService spec: the annotation that says what the operator last applied."""
    return hashlib.sha256(json.dumps(isvc_spec_, sort_keys=True).encode()).hexdigest()[:16]


def build_inference_service(
    owner: Owner, spec: VideoTrainingJobSpec, *, checkpoint: str, settings: OperatorSettings
) -> dict[str, Any]:
    """The InferenceService <job>-serve for spec.serving, owned by the job (deleted with it)."""
    body = isvc_spec(spec, checkpoint, settings, isvc_name(owner.name))
    metadata = child_metadata(owner, isvc_name(owner.name))
    metadata["annotations"] = {C.ANNOTATION_SERVING_HASH: spec_hash(body)}
    return {
        "apiVersion": f"{C.KSERVE_GROUP}/{C.KSERVE_VERSION}",
        "kind": C.ISVC_KIND,
        "metadata": metadata,
        "spec": body,
    }


def update_patch(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that brings `existing` to `desired` (None when the operator applied this spec already):
    keys of ours no longer wanted (a runtime change's transformer, containers vs model) are removed."""
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    wanted = desired["metadata"]["annotations"][C.ANNOTATION_SERVING_HASH]
    if annotations.get(C.ANNOTATION_SERVING_HASH) == wanted:
        return None
    return {
        "metadata": {"annotations": {C.ANNOTATION_SERVING_HASH: wanted}},
        "spec": _merge_patch(existing.get("spec") or {}, desired["spec"]),
    }


def _merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning `old` into `new`: keys `new` lacks are nulled, at every depth
    (a runtime change drops the other runtime's securityContext fields too, not only its containers)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        patch[key] = (
            _merge_patch(before, value) if isinstance(before, Mapping) and isinstance(value, Mapping) else value
        )
    return patch
