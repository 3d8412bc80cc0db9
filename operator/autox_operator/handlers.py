"""kopf handlers: glue between Kubernetes events and `reconcile` (each a few lines).

kopf run --standalone -m autox_operator.handlers    (what `autox-operator` runs)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from autox_operator import constants as C
from autox_operator import metrics, outages, reconcile, search
from autox_operator.children import ENGINES, child_of_status, engine_of_status
from autox_operator.kube import Kube, connection_info, load_configuration
from autox_operator.prerequisites import Invalid, Waiting
from autox_operator.settings import SYNC_INTERVAL, OperatorSettings
from autox_operator.status import KSERVE_NOT_SERVED, failed_status, phase_event, waiting_status
from autox_video.spec.common import API_VERSION

TRAINING = (C.CR_GROUP, C.CR_VERSION, C.TRAINING_PLURAL)
INFERENCE = (C.CR_GROUP, C.CR_VERSION, C.INFERENCE_PLURAL)
PLURAL_OF_KIND = {C.TRAINING_KIND: C.TRAINING_PLURAL, C.INFERENCE_KIND: C.INFERENCE_PLURAL}
KIND_OF_PLURAL = {plural: kind for kind, plural in PLURAL_OF_KIND.items()}
# What a start raises on purpose (its reason is counted in _blocked): not an unexpected error.
HANDLED = (kopf.TemporaryError, kopf.PermanentError)
StartFn = Callable[[Mapping[str, Any], Kube, OperatorSettings], dict[str, Any]]
START: dict[str, StartFn] = {C.TRAINING_PLURAL: reconcile.start_training, C.INFERENCE_PLURAL: reconcile.start_inference}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf tuning in one place, plus the API client and our settings (from the chart's env)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=C.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=C.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = C.FINALIZER
    settings.posting.level = logging.INFO  # our explicit Events (phase changes, waiting, suspend) ...
    settings.posting.loggers = False  # ... but not every log line (a waiting job retries often)
    settings.peering.standalone = True  # one replica (Deployment strategy Recreate)
    settings.scanning.disabled = True  # no list/watch on CRDs and namespaces: least privilege
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # An API server that does not answer a connection (a restart behind a load balancer, a partition)
    # is retried after 10 s, not after the 5 min request timeout kopf uses for connecting by default.
    settings.networking.connect_timeout = 10
    memo.settings = OperatorSettings.from_env()
    memo.kube = Kube.from_environment()
    # An unreachable API server or S3 endpoint: one line when it goes and one when it is back, not one per retry.
    memo.quiet = outages.install(memo.kube.server, memo.kube.ping)
    metrics.start(memo.settings.metrics_port)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop serving /metrics (the port is free for the next start); log as before."""
    metrics.stop()
    if memo.get("quiet") is not None:
        outages.uninstall(memo.quiet)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """The same cluster access as our own API client (in-cluster, else $KUBECONFIG)."""
    return kopf.ConnectionInfo(**connection_info(load_configuration()))


# --- start: validate, check prerequisites, create ConfigMap + child (PyTorchJob or TrainJob) ---


def _start(plural: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, *, again: bool = False) -> None:
    with metrics.timed(KIND_OF_PLURAL[plural], "start", handled=HANDLED):
        _start_job(plural, body, patch, memo, again=again)


def _start_job(plural: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, *, again: bool) -> None:
    status = body.get("status") or {}
    if reconcile.is_finished(status) and not again:
        return
    if reconcile.is_started(status):  # started before (operator restart): nothing to create
        child = child_of_status(status)
        if child and not memo.kube.get_child(engine_of_status(status), body.metadata.namespace, child):
            # Gone while we were away (ttlSecondsAfterFinished, a delete): settle the phase from the
            # run's outputs; never start the run a second time.
            _sync(plural, body.metadata.namespace, body.metadata.name, memo)
        return
    try:
        started = START[plural](body, memo.kube, memo.settings)
    except Invalid as err:
        _blocked(body, patch, failed_status(err.reason, err.message), err.reason)
        raise kopf.PermanentError(err.message) from None
    except Waiting as err:
        new = waiting_status(err.reason, err.message, previous=status.get("conditions") or [])
        _blocked(body, patch, new, err.reason)
        raise kopf.TemporaryError(err.message, delay=memo.settings.retry_delay) from None
    patch.status.update(started)
    _post_phase(body, status.get("phase"), started.get("phase"), started.get("message"))


def _blocked(body: kopf.Body, patch: kopf.Patch, new: dict[str, Any], reason: str) -> None:
    status = body.get("status") or {}
    patch.status.update(new)
    metrics.error(body.get("kind") or "", reason)
    if status.get("message") != new["message"]:  # once per cause, not on every retry
        kopf.warn(body, reason=reason, message=new["message"])


def _post_phase(body: Mapping[str, Any], old: str | None, new: str | None, message: str | None) -> None:
    event = phase_event(old, new, message)
    if event is not None:  # kopf.event takes any mapping with apiVersion, kind and metadata
        kopf.event(cast(kopf.Body, body), type=event[0], reason=event[1], message=event[2])


@kopf.on.resume(*TRAINING)
@kopf.on.create(*TRAINING)
def start_training(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    _start(C.TRAINING_PLURAL, body, patch, memo)


@kopf.on.resume(*INFERENCE)
@kopf.on.create(*INFERENCE)
def start_inference(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    _start(C.INFERENCE_PLURAL, body, patch, memo)


# --- spec changes: suspend/resume applies, the rest is reported ------------------------------


def _spec_changed(plural: str, body: kopf.Body, old: Any, new: Any, patch: kopf.Patch, memo: kopf.Memo) -> None:
    status = body.get("status") or {}
    if not reconcile.is_started(status):
        # Never started and no longer retried (it failed, or waits after an earlier edit): the edit is a new try.
        if status.get("phase") in ("Failed", "Pending"):
            _start(plural, body, patch, memo, again=True)
        return
    old, new = dict(old or {}), dict(new or {})
    if old.pop("serving", None) != new.pop("serving", None) and plural == C.TRAINING_PLURAL:
        _serve(body.metadata.namespace, body.metadata.name, memo)  # applies now to a succeeded job, else at success
    old_policy, new_policy = dict(old.pop("runPolicy", None) or {}), dict(new.pop("runPolicy", None) or {})
    suspend = bool(new_policy.pop("suspend", False))
    if bool(old_policy.pop("suspend", False)) != suspend and not reconcile.is_finished(status):
        engine, child = engine_of_status(status), child_of_status(status)
        queued = bool((new.get("queueName") or "").strip())
        # Kueue owns un-suspending a queued child (admission): the operator only ever suspends it.
        if child and (suspend or not queued):
            memo.kube.patch_child(engine, body.metadata.namespace, child, engine.suspend_patch(suspend))
        what = f"{engine.kind} {child}" if child else f"every running trial's {engine.kind}"
        field = "runPolicy.suspend" if engine.name == "pytorchjob" else "spec.suspend"
        message = f"{what} {field}={str(suspend).lower()}"
        if not suspend and queued:
            message = f"{what} stays suspended until Kueue admits it from LocalQueue {new['queueName']!r}"
        kopf.info(
            body, reason="Suspending" if suspend else "Resuming", message=message
        )  # a search's pass below applies it to the trials (and starts none while suspended)
        _sync(plural, body.metadata.namespace, body.metadata.name, memo)
    ignored = sorted(
        {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        | ({"runPolicy"} if old_policy != new_policy else set())
    )
    if ignored:
        kopf.warn(
            body,
            reason="SpecChangeIgnored",
            message=(
                f"spec.{', spec.'.join(ignored)} changed after the job started: only spec.runPolicy.suspend "
                "applies to a started job; delete and re-create it to apply the rest"
            ),
        )
    patch.status["observedGeneration"] = body.metadata.get("generation")


@kopf.on.update(*TRAINING, field="spec")
def training_spec_changed(body: kopf.Body, old: Any, new: Any, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    _spec_changed(C.TRAINING_PLURAL, body, old, new, patch, memo)


@kopf.on.update(*INFERENCE, field="spec")
def inference_spec_changed(body: kopf.Body, old: Any, new: Any, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    _spec_changed(C.INFERENCE_PLURAL, body, old, new, patch, memo)


# --- status: child (PyTorchJob, TrainJob) events and a timer for progress.json ------------------


@kopf.on.event(*TRAINING, id="training_observed")
@kopf.on.event(*INFERENCE, id="inference_observed")
def job_observed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Every watch event of our jobs: the jobs-by-phase and trials gauges of /metrics."""
    status = None if type == "DELETED" else dict(body.get("status") or {})
    metrics.observe_job(body.get("kind") or "", body.metadata.namespace or "", body.metadata.name or "", status)


def _sync(plural: str, namespace: str | None, name: str, memo: kopf.Memo) -> None:
    if namespace is None:  # both resources are namespaced
        return
    if plural == C.TRAINING_PLURAL:
        searched = search.sync_search(namespace, name, memo.kube, memo.settings)  # None: not a search
        if searched is not None:
            for kind, reason, message in searched.events:
                kopf.event(cast(kopf.Body, searched.body), type=kind, reason=reason, message=message)
            message = searched.patch.get("message", (searched.body.get("status") or {}).get("message"))
            _post_phase(searched.body, searched.old_phase, searched.patch.get("phase"), message)
            return
    result = reconcile.sync_status(plural, namespace, name, memo.kube, memo.settings)
    if result is not None:
        body, old_phase, patch = result
        message = patch["message"] if "message" in patch else (body.get("status") or {}).get("message")
        _post_phase(body, old_phase, patch.get("phase"), message)


def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A PyTorchJob or TrainJob of ours changed: map it to its owner (ownerReferences), update the owner's status."""
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") in PLURAL_OF_KIND:
            _sync(PLURAL_OF_KIND[ref["kind"]], body.metadata.namespace, ref["name"], memo)


# One watch per engine; kopf watches only what API discovery shows served (the other is skipped).
for _engine in ENGINES.values():
    kopf.on.event(
        _engine.group,
        _engine.version,
        _engine.plural,
        id=f"{_engine.name}_changed",
        labels={C.LABEL_MANAGED_BY: C.MANAGED_BY},
    )(child_changed)


def _following(status: Mapping[str, Any], **_: Any) -> bool:
    return reconcile.is_started(status) and not reconcile.is_finished(status)


# A pass that failed (the API server away) is tried again at the next tick, not after kopf's default 60 s.
@kopf.timer(*TRAINING, interval=SYNC_INTERVAL, backoff=SYNC_INTERVAL, when=_following)
def follow_training(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    _sync(C.TRAINING_PLURAL, namespace, name, memo)


@kopf.timer(*INFERENCE, interval=SYNC_INTERVAL, backoff=SYNC_INTERVAL, when=_following)
def follow_inference(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    _sync(C.INFERENCE_PLURAL, namespace, name, memo)


# --- serving: the InferenceService of a succeeded training job with spec.serving -------------------


def _serve(namespace: str | None, name: str, memo: kopf.Memo) -> None:
    if namespace is None:
        return
    result = reconcile.sync_serving(namespace, name, memo.kube, memo.settings)
    if result is None:
        return
    body, patch = result
    serving = patch.get("serving") or {}
    if serving.get("reason") == KSERVE_NOT_SERVED:  # the patch names a change: once per cause
        kopf.warn(cast(kopf.Body, body), reason=KSERVE_NOT_SERVED, message=serving["message"])
    elif serving.get("ready") is True and serving.get("url"):
        kopf.info(cast(kopf.Body, body), reason="Serving", message=f"serving at {serving['url']}")


def _serving(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    return reconcile.wants_serving(spec, status)


@kopf.timer(*TRAINING, interval=SYNC_INTERVAL, backoff=SYNC_INTERVAL, when=_serving)
def serve_training(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A succeeded job with spec.serving: its InferenceService created, kept up to date, its URL and readiness read."""
    _serve(namespace, name, memo)
