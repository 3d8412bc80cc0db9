"""What the handlers do, step by step: validate -> check prerequisites -> build -> apply -> status.

Raises `Waiting` (retry later: a Secret, bucket or training job is not there yet) or `Invalid`
(the spec cannot work: do not retry); both carry a message that says what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from autox_operator import constants as C
from autox_operator import metrics, s3
from autox_operator.builders import (
    TEST_ARGS,
    TRAIN_ARGS,
    JobSpec,
    Owner,
    build_configmap,
    build_inference_config,
    build_training_config,
    normalise_prefix,
    progress_uri,
    report_uri,
    results_uri,
)
from autox_operator.children import ENGINES, Engine, child_of_status, engine_of_status, get_engine
from autox_operator.children.inferenceservice import build_inference_service, isvc_name, served_uri, update_patch
from autox_operator.children.trainjob import runtime_name, trainer_status_patch
from autox_operator.exports import ensure_export
from autox_operator.joblock import job_lock
from autox_operator.kube import Kube
from autox_operator.prerequisites import (
    CHECKS_SKIPPED,
    Blocked,
    Invalid,
    Waiting,
    check_child_owner,
    check_storage,
    error_reason,
    parse_spec,
    storage_access,
    with_condition,
)
from autox_operator.search import best_training_spec, start_search
from autox_operator.settings import OperatorSettings
from autox_operator.status import (
    KSERVE_NOT_SERVED,
    inference_status,
    job_status,
    kserve_missing_status,
    nested_diff,
    now_iso,
    progress_fields,
    queued_status,
    results_fields,
    serving_status,
    status_diff,
    training_status,
    vanished_status,
    without_stale_eta,
)
from autox_video.errors import ConfigError
from autox_video.spec.common import TERMINAL_PHASES
from autox_video.spec.inference import VideoInferenceJobSpec
from autox_video.spec.training import VideoTrainingJobSpec

log = logging.getLogger(__name__)


def resolve_engine(kube: Kube, spec: JobSpec, settings: OperatorSettings) -> Engine:
    """The engine for a new job: spec.runtime.backend, else the operator's; `auto` takes the first served
    (TrainJob, then PyTorchJob). Waiting while it is not served or a TrainJob's runtime does not exist."""
    backend = spec.runtime.backend or settings.backend
    if backend == "auto":
        engine = next((e for e in ENGINES.values() if e.plural in kube.served(e.group, e.version)), None)
        if engine is None:
            raise Waiting(
                "NoTrainingOperator",
                "neither TrainJob (trainer.kubeflow.org/v1alpha1) nor PyTorchJob (kubeflow.org/v1) is served: "
                f"install {ENGINES['trainjob'].install_hint} or {ENGINES['pytorchjob'].install_hint}",
            )
    else:
        engine = get_engine(backend)
        if engine.plural not in kube.served(engine.group, engine.version):
            field = "spec.runtime.backend" if spec.runtime.backend else "the operator's trainer.backend"
            raise Waiting(
                f"{engine.kind}NotServed",
                f"{engine.plural}.{engine.group}/{engine.version} is not served ({field} is {backend}): "
                f"install {engine.install_hint}, or choose another backend",
            )
    if engine.name == "trainjob":
        name = runtime_name(spec, settings)
        if kube.get_training_runtime(name) is None:
            raise Waiting(
                "TrainingRuntimeNotFound",
                f"ClusterTrainingRuntime {name!r} not found: install it (the chart's trainer.runtime.install), "
                "or fix spec.runtime.name",
            )
    return engine


def observed_status(child: Mapping[str, Any] | None, spec: JobSpec | None) -> dict[str, Any]:
    """job_status of the child, Queued (not Suspended) while Kueue holds a job the user did not suspend."""
    observed = job_status(child)
    if spec is None:
        return observed
    return queued_status(observed, queue=spec.queue_name, user_suspend=spec.run_policy.suspend)


def child_fields(engine: Engine, name: str) -> dict[str, Any]:
    """The status fields that name a job's child (pytorchJob kept for PyTorchJob children)."""
    fields = {"engine": engine.name, "child": name}
    if engine.name == "pytorchjob":
        fields["pytorchJob"] = name
    return fields


def _apply_children(
    kube: Kube, owner: Owner, spec: JobSpec, engine: Engine, configmap: dict[str, Any], child: dict[str, Any]
) -> dict[str, Any]:
    # The ConfigMap first, checked before the child exists: another owner's is never overwritten.
    check_child_owner("ConfigMap", kube.apply_configmap(configmap), owner)
    existing = kube.create_child(engine, child)
    check_child_owner(engine.kind, existing.get("metadata") or {}, owner)
    return {
        **observed_status(existing, spec),
        **child_fields(engine, child["metadata"]["name"]),
        "configMap": configmap["metadata"]["name"],
    }


def start_training(body: Mapping[str, Any], kube: Kube, settings: OperatorSettings) -> dict[str, Any]:
    """Create the ConfigMap and child (PyTorchJob or TrainJob) of a VideoTrainingJob (idempotent): status fields."""
    spec = parse_spec(VideoTrainingJobSpec, body["spec"])
    owner = Owner.from_body(body)
    engine = resolve_engine(kube, spec, settings)
    skipped = check_storage(
        kube,
        owner.namespace,
        spec.storage,
        settings,
        buckets=[spec.output, spec.dataset.train],
        objects=[(spec.dataset.train, "spec.dataset.train")],
    )
    if spec.search is not None:
        return with_condition(start_search(body, spec, settings, engine), skipped)
    try:
        config = build_training_config(spec, settings)
    except ConfigError as err:
        raise Invalid("InvalidSpec", str(err)) from None
    child = engine.build(owner, spec, args=TRAIN_ARGS, settings=settings)
    started = _apply_children(kube, owner, spec, engine, build_configmap(owner, config), child)
    return with_condition({**started, "observedGeneration": body["metadata"].get("generation")}, skipped)


def resolve_checkpoint(
    kube: Kube, namespace: str, spec: VideoInferenceJobSpec, settings: OperatorSettings
) -> tuple[str, VideoTrainingJobSpec | None]:
    """The checkpoint to predict with and, for trainingJobRef, the training job's spec (a searched
    job's with its best trial's values: its bestCheckpoint is the promoted best.pth)."""
    if spec.model.checkpoint is not None:
        return spec.model.checkpoint, None
    ref = spec.model.training_job_ref
    assert ref is not None  # the model validator guarantees one of the two
    job = kube.get_job(C.TRAINING_PLURAL, namespace, ref)
    if job is None:
        raise Waiting(
            "TrainingJobNotFound",
            f"VideoTrainingJob {ref!r} not found in namespace {namespace!r}: "
            "create it, or fix spec.model.trainingJobRef",
        )
    status = job.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Failed":
        raise Invalid(
            "TrainingJobFailed",
            f"VideoTrainingJob {ref!r} failed ({status.get('message') or 'no message'}): "
            "re-run it, or set spec.model.checkpoint",
        )
    if phase != "Succeeded":
        raise Waiting("TrainingJobNotSucceeded", f"waiting for VideoTrainingJob {ref!r} to succeed (phase {phase})")
    checkpoint = status.get("bestCheckpoint") or status.get("latestCheckpoint")
    if not checkpoint:
        raise Invalid(
            "NoCheckpoint",
            f"VideoTrainingJob {ref!r} succeeded but reports no bestCheckpoint: set spec.model.checkpoint",
        )
    try:
        training = VideoTrainingJobSpec.model_validate(job.get("spec") or {})
    except ValidationError:
        training = None
    if training is not None and training.search is not None:
        training = best_training_spec(training, status, settings)
    return checkpoint, training


def start_inference(body: Mapping[str, Any], kube: Kube, settings: OperatorSettings) -> dict[str, Any]:
    """Create the ConfigMap and child (PyTorchJob or TrainJob) of a VideoInferenceJob once its checkpoint is known."""
    spec = parse_spec(VideoInferenceJobSpec, body["spec"])
    owner = Owner.from_body(body)
    checkpoint, training = resolve_checkpoint(kube, owner.namespace, spec, settings)
    engine = resolve_engine(kube, spec, settings)
    checkpoint_field = "spec.model.checkpoint" if spec.model.checkpoint else "the training job's bestCheckpoint"
    objects = [(checkpoint, checkpoint_field)]
    if spec.dataset.list:
        objects.append((spec.dataset.list, "spec.dataset.list"))
    buckets = [spec.output, spec.dataset.videos]
    skipped = check_storage(kube, owner.namespace, spec.storage, settings, buckets=buckets, objects=objects)
    try:
        config = build_inference_config(spec, settings, checkpoint=checkpoint, training=training)
    except ConfigError as err:
        raise Invalid("InvalidSpec", str(err)) from None
    child = engine.build(owner, spec, args=TEST_ARGS, settings=settings)
    started = _apply_children(kube, owner, spec, engine, build_configmap(owner, config), child)
    fields = {
        **started,
        "checkpoint": checkpoint,
        "resultsUri": results_uri(spec.output),
        "observedGeneration": body["metadata"].get("generation"),
    }
    return with_condition(fields, skipped)


def _observe_training(
    body: Mapping[str, Any], pytorchjob: dict[str, Any] | None, kube: Kube, settings: OperatorSettings
) -> dict[str, Any]:
    progress, readable, spec, outage = None, True, None, None
    try:
        spec = VideoTrainingJobSpec.model_validate(body["spec"])
        access = storage_access(kube, body["metadata"]["namespace"], spec.storage, settings)
        progress = s3.read_json(access, progress_uri(spec.output))
    except (ValidationError, Blocked, s3.S3Error) as err:
        readable = False  # keep what status has; the child's part still updates
        metrics.error(C.TRAINING_KIND, error_reason(err))
        if isinstance(err, s3.S3Error) and err.transient:
            outage = err
    current = body.get("status") or {}
    if outage is not None and (pytorchjob is None or job_status(pytorchjob).get("phase") in TERMINAL_PHASES):
        # The run ended while S3 is away: finishing now would freeze the last epoch and best checkpoint
        # read before the outage (a finished job is no longer followed). Stay, and finish once it is read.
        return (
            {}
            if is_finished(current)
            else {"message": f"the run ended; reading progress.json failed, retrying: {outage}"}
        )
    if pytorchjob is None:
        if is_finished(current):  # nothing to decide
            return without_stale_eta({**progress_fields(progress), "phase": current.get("phase")})
        if not readable:
            return {}  # S3 may answer next time
        done = (progress or {}).get("phase") == "succeeded"
        kind = engine_of_status(current).kind
        return without_stale_eta(
            {**progress_fields(progress), **vanished_status(child_of_status(current) or "", succeeded=done, kind=kind)}
        )
    return {**training_status(pytorchjob, progress), **observed_status(pytorchjob, spec)}


def _read_results(
    body: Mapping[str, Any], kube: Kube, settings: OperatorSettings
) -> tuple[str, dict[str, Any] | None, str | None]:
    """(URI, results.json, report.html's URI if it exists) of an inference job; raises
    Blocked/S3Error/ValidationError when unreadable."""
    spec = VideoInferenceJobSpec.model_validate(body["spec"])
    uri = (body.get("status") or {}).get("resultsUri") or results_uri(spec.output)
    access = storage_access(kube, body["metadata"]["namespace"], spec.storage, settings)
    results = s3.read_json(access, uri)
    # Written after results.json, only when every video had a label: its absence is no error.
    report = report_uri(uri) if results is not None and s3.exists(access, report_uri(uri)) else None
    return uri, results, report


def _observe_inference(
    body: Mapping[str, Any], pytorchjob: dict[str, Any] | None, kube: Kube, settings: OperatorSettings
) -> dict[str, Any]:
    current = body.get("status") or {}
    try:
        spec: VideoInferenceJobSpec | None = VideoInferenceJobSpec.model_validate(body["spec"])
    except ValidationError:
        spec = None
    observed = (
        None if pytorchjob is None else {**inference_status(pytorchjob, None), **observed_status(pytorchjob, spec)}
    )
    if is_finished(current) or (observed is not None and observed["phase"] != "Succeeded"):
        return observed or {}
    # The run ended (or its PyTorchJob is gone): Succeeded only once results.json has been read.
    try:
        uri, results, report = _read_results(body, kube, settings)
    except (ValidationError, Blocked, s3.S3Error) as err:
        # Stay in the current phase so the timer keeps following; the next read may work.
        metrics.error(C.INFERENCE_KIND, error_reason(err))
        return {"message": f"the run finished; reading its results.json failed, retrying: {err}"}
    if observed is None:  # the child is gone
        kind = engine_of_status(current).kind
        vanished = vanished_status(child_of_status(current) or "", succeeded=results is not None, kind=kind)
        return {**vanished, **results_fields(results, report)}
    desired = {**observed, **results_fields(results, report)}
    if results is None:
        desired["message"] = f"the job succeeded but wrote no results.json at {uri}"
    return desired


def sync_status(
    plural: str, namespace: str, name: str, kube: Kube, settings: OperatorSettings
) -> tuple[dict[str, Any], str | None, dict[str, Any]] | None:
    """Read the job, its child (and progress.json / results.json), patch the status if it changed.

    Returns (job body, phase before, status patch), or None when the job has no child yet.
    """
    kind = C.TRAINING_KIND if plural == C.TRAINING_PLURAL else C.INFERENCE_KIND
    with metrics.timed(kind, "sync"), job_lock(plural, namespace, name):
        body = kube.get_job(plural, namespace, name)
        status = (body or {}).get("status") or {}
        child = child_of_status(status)
        if body is None or not child:
            return None
        engine = engine_of_status(status)
        pytorchjob = kube.get_child(engine, namespace, child)
        observe = _observe_training if plural == C.TRAINING_PLURAL else _observe_inference
        observed = observe(body, pytorchjob, kube, settings)
        if "conditions" in observed:  # the child's conditions replace ours: keep the note that checks were skipped
            observed = with_condition(observed, _skip_note(status))
        patch = status_diff(status, observed)
        if patch:
            kube.patch_job_status(plural, namespace, name, patch)
        if pytorchjob is not None and engine.name == "trainjob" and plural == C.TRAINING_PLURAL:
            _report_to_trainjob(kube, engine, namespace, pytorchjob, {**status, **patch})
        return body, status.get("phase"), patch


def _skip_note(status: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == CHECKS_SKIPPED), None)


def _report_to_trainjob(
    kube: Kube, engine: Engine, namespace: str, trainjob: Mapping[str, Any], fields: Mapping[str, Any]
) -> None:
    # TrainJob's own progress view (KEP-2779 trainerStatus), filled from progress.json: no TLS endpoint in the pod.
    patch = trainer_status_patch(trainjob, fields, now=now_iso())
    if patch is not None:
        try:
            kube.patch_child_status(engine, namespace, trainjob["metadata"]["name"], patch)
        except ApiException as err:  # best effort: our own status is already written
            log.warning("TrainJob %s: trainerStatus not updated: %s", trainjob["metadata"]["name"], err.reason)


def is_finished(status: Mapping[str, Any] | None) -> bool:
    return (status or {}).get("phase") in TERMINAL_PHASES


def is_searching(status: Mapping[str, Any] | None) -> bool:
    """Whether the job was handed to the search driver (status.trialCounts is set at its start)."""
    return (status or {}).get("trialCounts") is not None


def is_started(status: Mapping[str, Any] | None) -> bool:
    """Whether the job has its child (PyTorchJob or TrainJob), or its search has started: a restart creates nothing."""
    return bool(child_of_status(status)) or is_searching(status)


# --- spec.serving: the InferenceService of a succeeded training job ------------------------------


def wants_serving(spec: Mapping[str, Any] | None, status: Mapping[str, Any] | None) -> bool:
    """Whether a training job has serving to do: it succeeded, and spec.serving is set or status.serving is left."""
    succeeded = (status or {}).get("phase") == "Succeeded"
    return succeeded and ((spec or {}).get("serving") is not None or bool((status or {}).get("serving")))


def _wait_for_export(
    kube: Kube,
    namespace: str,
    spec: VideoTrainingJobSpec,
    status: Mapping[str, Any],
    checkpoint: str,
    settings: OperatorSettings,
) -> None:
    """Waiting until output/export/ is there (a search's best trial's export copied there first)."""
    best_trial = status.get("bestTrial") if spec.search is not None else None
    if best_trial is None and not settings.read_secrets:
        return  # the operator may not look; the trainer exported before the job could succeed
    access = storage_access(kube, namespace, spec.storage, settings)
    ensure_export(access, spec.output, best_trial, checkpoint)


def _serving_desired(body: Mapping[str, Any], kube: Kube, settings: OperatorSettings) -> dict[str, Any] | None:
    spec = VideoTrainingJobSpec.model_validate(body["spec"])
    status = body.get("status") or {}
    owner = Owner.from_body(body)
    namespace, name = owner.namespace, isvc_name(owner.name)
    serving = spec.serving
    if serving is None or not serving.enabled:
        if status.get("serving") and C.ISVC_PLURAL in kube.served(C.KSERVE_GROUP, C.KSERVE_VERSION):
            kube.delete_inference_service(namespace, name)
        return None
    checkpoint = status.get("bestCheckpoint") or f"{normalise_prefix(spec.output)}{C.BEST_FILE}"
    served = served_uri(spec, checkpoint)
    if C.ISVC_PLURAL not in kube.served(C.KSERVE_GROUP, C.KSERVE_VERSION):
        return kserve_missing_status(name=name, runtime=serving.runtime, served=served)
    desired = build_inference_service(owner, spec, checkpoint=checkpoint, settings=settings)
    existing = kube.get_inference_service(namespace, name)
    if existing is None:
        if serving.runtime == "triton":
            _wait_for_export(kube, namespace, spec, status, checkpoint, settings)
        existing = kube.create_inference_service(desired)
    check_child_owner(C.ISVC_KIND, existing.get("metadata") or {}, owner)
    patch = update_patch(existing, desired)
    if patch is not None:  # spec.serving changed since the operator last applied it
        existing = kube.patch_inference_service(namespace, name, patch)
    return serving_status(existing, name=name, runtime=serving.runtime, served=served)


def sync_serving(
    namespace: str, name: str, kube: Kube, settings: OperatorSettings
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Create, update or delete a succeeded job's InferenceService and patch status.serving from it.

    Returns (job body, status patch), or None when the job has no serving to do. A blocked serving
    (another owner's InferenceService) is reported in status.serving; the job's phase never changes.
    """
    with metrics.timed(C.TRAINING_KIND, "serve"), job_lock(C.TRAINING_PLURAL, namespace, name):
        body = kube.get_job(C.TRAINING_PLURAL, namespace, name)
        if body is None or not wants_serving(body.get("spec"), body.get("status")):
            return None
        current = (body.get("status") or {}).get("serving")
        try:
            desired = _serving_desired(body, kube, settings)
        except ValidationError:
            return None  # the spec handlers report an invalid spec
        except (Waiting, Invalid) as err:  # e.g. another owner's InferenceService of that name
            desired = {**(current or {}), "ready": False, "reason": err.reason, "message": err.message}
        blocked = (desired or {}).get("reason")
        if blocked in (KSERVE_NOT_SERVED, "NameConflict", "PreviousJobBeingDeleted") and blocked != (current or {}).get(
            "reason"
        ):  # counted once per cause, not on every pass
            metrics.error(C.TRAINING_KIND, blocked)
        patch = {} if desired == current else {"serving": nested_diff(current, desired)}
        if patch:
            kube.patch_job_status(C.TRAINING_PLURAL, namespace, name, patch)
        return body, patch
