"""The stateless search driver of a VideoTrainingJob with spec.search: one pass per event or timer tick.

The operator keeps no database: the trials live in status.trials and output/trials.jsonl (the local
search's ledger format). Each pass reads them, the trial children (PyTorchJobs or TrainJobs: one list
call) and each running trial's progress.json and metrics.jsonl, rebuilds the Optuna study in memory
(`study_from_ledger`), asks the pruner about trials with a new validation and the sampler for new
trials, then writes the status first and acts after it: a new trial is recorded before its child
exists, a pruned one before its child is deleted, so a restarted operator neither loses nor repeats
a trial.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from autox_operator import constants as C
from autox_operator import metrics, s3
from autox_operator.builders import (
    Owner,
    build_trial_children,
    build_trial_config,
    child_name,
    label_value,
    normalise_prefix,
    trial_prefix,
    trial_suffix,
)
from autox_operator.children import Engine, engine_of_status
from autox_operator.joblock import job_lock
from autox_operator.kube import Kube
from autox_operator.prerequisites import Blocked, Invalid, check_child_owner, error_reason, storage_access
from autox_operator.settings import OperatorSettings
from autox_operator.status import now_iso, phase_of, status_diff
from autox_operator.trials import (
    Trial,
    counts,
    from_row,
    from_status,
    observe,
    pareto_status,
    parse_time,
    promotion,
    pruned,
    search_conditions,
    search_phase,
    status_entry,
    trial_events,
)
from autox_video.config import Config
from autox_video.errors import ConfigError
from autox_video.search import front, ledger
from autox_video.search import space as sp
from autox_video.search.section import grid_values, parse_search
from autox_video.search.tune import why_not_start
from autox_video.spec.common import TERMINAL_PHASES
from autox_video.spec.search import Domain, SearchSpec
from autox_video.spec.trainer_config import measures
from autox_video.spec.training import VideoTrainingJobSpec

Event = tuple[str, str, str]


@dataclass(frozen=True)
class Plan:
    """What a job's spec.search resolves to: the space, its Optuna distributions, trial 0, ASHA's rungs."""

    search: SearchSpec
    cfg: Config
    space: dict[str, Domain]
    dists: dict[str, Any]
    default: dict[str, Any] | None
    grid: list[dict[str, Any]] | None
    rung_epochs: list[int]
    seed: int


@dataclass(frozen=True)
class Pass:
    """What one pass did: the job as read, its phase before, the status patch and the Events to post."""

    body: dict[str, Any]
    old_phase: str | None
    patch: dict[str, Any]
    events: list[Event]


def make_plan(spec: VideoTrainingJobSpec, settings: OperatorSettings) -> Plan:
    """Resolve spec.search (Invalid with the field named when it cannot work)."""
    assert spec.search is not None
    if spec.dataset.val is None or spec.training.eval_interval < 1:
        raise Invalid(
            "InvalidSpec", "spec.dataset.val: a search ranks trials by validation top-1: set it (and evalInterval >= 1)"
        )
    try:
        cfg = build_trial_config(spec, settings, 0, {})
    except ConfigError as err:
        raise Invalid("InvalidSpec", str(err)) from None
    if spec.search.sampler == "nsga2":
        # NSGA-II keeps each trial's generation in the study; a study rebuilt from the ledger each pass
        # would start every trial in generation 0, i.e. sample at random.
        raise Invalid(
            "InvalidSpec",
            "spec.search.sampler: nsga2 is not supported by the operator (its generations live in the study, "
            "which the operator rebuilds each pass): use tpe, which is multi-objective with two objectives",
        )
    try:
        search = parse_search(spec.search.model_copy(deep=True), Config)
        assert isinstance(search, SearchSpec)
        space, _ = sp.resolve_space(search, cfg, cuda=spec.resources.gpus_per_replica > 0)
        grid = None
        if search.sampler == "grid":
            values = grid_values(space)
            grid = [dict(zip(values, point, strict=True)) for point in itertools.product(*values.values())]
    except ConfigError as err:
        raise Invalid("InvalidSpec", f"spec.{err}") from None
    return Plan(
        search=search,
        cfg=cfg,
        space=space,
        dists=sp.distributions(space),
        default=sp.params_of(space, cfg),
        grid=grid,
        rung_epochs=sp.rungs(search, cfg).epochs(cfg.epoch) if search.pruner == "asha" else [],
        seed=search.seed if search.seed is not None else cfg.seed,
    )


# --- the study, rebuilt in memory --------------------------------------------------------------


def ledger_row(trial: Trial, plan: Plan) -> dict[str, Any]:
    """The trial's trials.jsonl row, made by the local ledger's own `row_of` (one format)."""
    import optuna

    state = {
        "running": optuna.trial.TrialState.RUNNING,
        "succeeded": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
        "failed": optuna.trial.TrialState.FAIL,
    }[trial.state]
    frozen = optuna.trial.create_trial(
        state=state,
        value=trial.best_top1 if state == optuna.trial.TrialState.COMPLETE else None,
        params=trial.params,
        distributions={k: plan.dists[k] for k in trial.params},
        intermediate_values=trial.top1_by_epoch,
        user_attrs={
            "overrides": trial.overrides,
            "epochs": trial.epochs,
            "seconds": trial.seconds,
            "reason": trial.reason,
            "default": trial.default,
            **trial.figures,
        },
    )
    frozen.number = trial.number
    return ledger.row_of(frozen)  # the figures: top-level keys, from the user attrs


def build_study(plan: Plan, trials: list[Trial]) -> Any:
    """The search's Optuna study (in memory) holding these trials: multi-objective with a speed objective,
    each finished trial's constraint value with a limit in search.latency (the local search's study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line per pass
    limit = plan.search.latency if front.has_constraint(plan.search.latency) else None
    return ledger.study_from_ledger(
        [ledger_row(t, plan) for t in trials],
        plan.dists,
        sampler=sp.sampler(plan.search, plan.space, plan.seed),
        pruner=sp.pruner(plan.search, plan.cfg),
        rung_epochs=plan.rung_epochs,
        objectives=plan.search.objectives,
        constraint=limit,
    )


def next_params(plan: Plan, trials: list[Trial]) -> tuple[dict[str, Any], bool] | None:
    """(params, is the default config) of the next trial; None when a grid has no point left."""
    if not trials and plan.default is not None:
        return dict(plan.default), True  # trial 0: a search never ends worse than the default recipe
    if plan.grid is not None:  # in grid order; rebuilt trials carry no grid ids for Optuna's GridSampler
        tried = [t.params for t in trials]
        point = next((p for p in plan.grid if p not in tried), None)
        return (point, False) if point is not None else None
    return dict(build_study(plan, trials).ask(plan.dists).params), False


def to_prune(plan: Plan, trials: list[Trial], asked: set[int]) -> set[int]:
    """Running trials in `asked` (a new validation since the last pass) that the pruner stops."""
    if plan.search.pruner == "none" or not asked:
        return set()
    study = build_study(plan, trials)
    running = [t for t in trials if not t.finished and t.top1_by_epoch]
    for t in running:
        if t.number not in asked:
            # A rebuilt study leaves a running trial's newest rung out; asking records it (the answer is
            # ignored: it was given when that value was new), so that the trials asked now compete with it.
            ledger.should_prune(study, t.number)
    return {t.number for t in running if t.number in asked and ledger.should_prune(study, t.number)}


def stop_reason(plan: Plan, trials: list[Trial], *, now: str, started_at: str | None) -> str | None:
    """Why no new trial may start (the local search's rule: trials, grid, trial-epochs and hours budget)."""
    running = [t for t in trials if not t.finished]
    rates = [t.seconds / t.epochs for t in trials if t.finished and t.epochs and t.seconds]
    start, end = parse_time(started_at), parse_time(now)
    return why_not_start(
        plan.search,
        epoch=plan.cfg.epoch,
        started=len(trials),
        grid_size=len(plan.grid) if plan.grid is not None else None,
        used_epochs=sum(t.epochs for t in trials if t.finished),
        reserved_epochs=plan.cfg.epoch * len(running),
        elapsed_s=(end - start).total_seconds() if start and end else 0.0,
        est_trial_s=statistics.median(rates) * plan.cfg.epoch if rates else None,
    )


# --- one pass ----------------------------------------------------------------------------------


def trial_name(owner: str, number: int) -> str:
    """The trial's child name (deterministic: the same trial always has the same child)."""
    return child_name(owner, trial_suffix(number))


def load_trials(status: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[Trial]:
    """The trials of status.trials, with their ledger rows; the ledger alone when status has none."""
    by_number = {int(r["number"]): r for r in rows if isinstance(r.get("number"), int)}
    entries = status.get("trials") or []
    if entries:
        return [from_status(e, by_number.get(int(e["number"]))) for e in sorted(entries, key=lambda e: e["number"])]
    return [from_row(r) for _, r in sorted(by_number.items())]  # re-created job over the same output


def _read_running(
    access: s3.S3Access, output: str, trial: Trial, child: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, list[dict], dict[str, Any] | None]:
    """(progress.json, metrics.jsonl, the measured figures) of a running trial; the figures only once it ended."""
    prefix = trial_prefix(output, trial.number)
    progress = s3.read_json(access, f"{prefix}{C.PROGRESS_FILE}")
    ended = (progress or {}).get("phase") == "succeeded" or phase_of(child)[0] == "Succeeded"
    result = s3.read_json(access, f"{prefix}{C.TRIAL_RESULT_FILE}") if ended else None
    return progress, s3.read_jsonl(access, f"{prefix}{C.METRICS_FILE}"), result


def _promote(
    access: s3.S3Access, spec: VideoTrainingJobSpec, best: Trial, config: Config, *, measured: bool
) -> str | None:
    """Copy the best trial's best.pth and config to output/ (server-side); the URI, or None if it has none.

    `measured` (the trials time their exported model): output/export/ becomes the promoted trial's export/,
    so that serving (runtime triton) serves the model best.pth holds, never an earlier trial's."""
    out, prefix = normalise_prefix(spec.output), trial_prefix(spec.output, best.number)
    if not s3.exists(access, f"{prefix}{C.BEST_FILE}"):
        return None
    s3.copy(access, f"{prefix}{C.BEST_FILE}", f"{out}{C.BEST_FILE}")
    if s3.exists(access, f"{prefix}{C.CONFIG_KEY}"):  # the trainer's resolved config, else the one we gave it
        s3.copy(access, f"{prefix}{C.CONFIG_KEY}", f"{out}{C.BEST_CONFIG_FILE}")
    else:
        s3.put_text(access, f"{out}{C.BEST_CONFIG_FILE}", config.to_yaml())
    if measured:
        export, target = f"{prefix}{C.EXPORT_DIR}", f"{out}{C.EXPORT_DIR}"
        # model.json last: it is what says an export is whole (serving waits for it)
        files = sorted(s3.list_folder(access, export), key=lambda name: (name == C.MODEL_JSON, name))
        for name in files:
            s3.copy(access, f"{export}{name}", f"{target}{name}")
        for stale in set(s3.list_folder(access, target)) - set(files):
            s3.delete(access, f"{target}{stale}")
    return f"{out}{C.BEST_FILE}"


def _start_trials(
    plan: Plan, spec: VideoTrainingJobSpec, settings: OperatorSettings, trials: list[Trial], *, now: str, since: str
) -> list[Trial]:
    while sum(not t.finished for t in trials) < plan.search.parallel:
        if stop_reason(plan, trials, now=now, started_at=since) is not None:
            break
        chosen = next_params(plan, trials)
        if chosen is None:
            break
        params, default = chosen
        number = len(trials)
        overrides = sp.overrides(plan.space, params)
        trial = Trial(number, "running", params, start_time=now, default=default, overrides=overrides)
        try:
            build_trial_config(spec, settings, number, overrides)
        except ConfigError as err:  # a combination the config model rejects: recorded, the search goes on
            trial = replace(trial, state="failed", reason=str(err), completion_time=now)
        trials.append(trial)
    return trials


def _observe_all(
    plan: Plan,
    access: s3.S3Access,
    spec: VideoTrainingJobSpec,
    owner: str,
    trials: list[Trial],
    pjs: dict[str, Any],
    *,
    now: str,
) -> list[Trial]:
    """Running trials updated from their children and outputs; those the pruner stops, pruned."""
    seen, asked = [], set()
    for t in trials:
        if t.finished:
            seen.append(t)
            continue
        child = pjs.get(trial_name(owner, t.number))
        progress, metrics, result = _read_running(access, spec.output, t, child)
        new = observe(t, child, progress, metrics, now=now, result=result)
        if not new.finished and set(new.top1_by_epoch) - set(t.top1_by_epoch):
            asked.add(t.number)
        seen.append(new)
    stop = to_prune(plan, seen, asked)
    return [pruned(t, now=now) if t.number in stop else t for t in seen]


def _children(kube: Kube, engine: Engine, namespace: str, owner: Owner) -> dict[str, Any]:
    labels = {C.LABEL_MANAGED_BY: C.MANAGED_BY, C.LABEL_JOB_NAME: label_value(owner.name)}
    return {
        pj["metadata"]["name"]: pj
        for pj in kube.list_children(engine, namespace, labels)
        if owner.uid in {r.get("uid") for r in pj["metadata"].get("ownerReferences") or []}
    }


def _act(
    kube: Kube,
    owner: Owner,
    spec: VideoTrainingJobSpec,
    settings: OperatorSettings,
    trials: list[Trial],
    pjs: dict[str, Any],
    engine: Engine,
) -> None:
    """After the status is written: delete pruned trials' children, create missing ones, apply suspend."""
    suspend = spec.run_policy.suspend
    for t in trials:
        name = trial_name(owner.name, t.number)
        pj = pjs.get(name)
        if t.state == "pruned" and pj is not None:
            kube.delete_child(engine, owner.namespace, name)
        elif t.state == "running" and pj is None:
            config = build_trial_config(spec, settings, t.number, t.overrides)
            configmap, child = build_trial_children(owner, spec, config, t.number, settings, engine)
            check_child_owner("ConfigMap", kube.apply_configmap(configmap), owner)
            check_child_owner(engine.kind, kube.create_child(engine, child).get("metadata") or {}, owner)
        elif t.state == "running" and pj is not None and engine.is_suspended(pj) != suspend:
            # Kueue un-suspends a queued trial on admission: the operator only ever suspends it.
            if suspend or not spec.queue_name:
                kube.patch_child(engine, owner.namespace, name, engine.suspend_patch(suspend))


def desired_status(
    plan: Plan,
    trials: list[Trial],
    status: Mapping[str, Any],
    owner: str,
    pjs: dict[str, Any],
    *,
    suspended: bool,
    now: str,
    engine: str = "pytorchjob",
    queue: str | None = None,
) -> dict[str, Any]:
    """The job's status fields from its trials (pure, given the children read in this pass)."""
    since = status.get("startTime") or (now if trials else None)
    phases = {t.number: phase_of(pjs.get(trial_name(owner, t.number)))[0] for t in trials}
    stop = stop_reason(plan, trials, now=now, started_at=since)
    phase, message = search_phase(trials, phases, suspended=suspended, stop_reason=stop, search=plan.search)
    if queue and phase == "Pending" and any(phases[t.number] == "Suspended" for t in trials if not t.finished):
        phase, message = "Queued", f"waiting for Kueue to admit trials from LocalQueue {queue!r}; {message}"
    best, _ = promotion(trials, plan.search)
    cap = plan.search.budget.trial_epochs
    out = {
        "phase": phase,
        "message": message,
        "conditions": search_conditions(phase, message, status.get("conditions") or [], now=now),
        "trials": [status_entry(t, trial_name(owner, t.number), engine) for t in trials],
        "trialCounts": counts(trials),
        "trialsSummary": f"{len(trials)}/{plan.search.trials}",
        "epoch": sum(t.epochs for t in trials),
        "totalEpochs": min(cap, plan.search.trials * plan.cfg.epoch) if cap else plan.search.trials * plan.cfg.epoch,
        "startTime": since,
        "completionTime": (status.get("completionTime") or now) if phase in TERMINAL_PHASES else None,
    }
    if best is not None:
        out.update(
            bestTrial=best.number,
            bestTop1=best.best_top1,
            bestLatencyMs=best.latency_ms,
            bestVideosPerS=best.videos_per_s,
        )
    if plan.search.speed_objective is not None:
        out["pareto"] = pareto_status(trials, plan.search)
    return out


def new_best_message(best: Trial, why: str | None) -> str:
    """The NewBest Event's text: the promoted trial, its figures and which rule chose it."""
    latency = f", {best.latency_ms:.3g} ms" if best.latency_ms is not None else ""
    return f"trial {best.number} is the best so far: top-1 {best.best_top1:.4f}{latency}" + (f" ({why})" if why else "")


def sync_search(namespace: str, name: str, kube: Kube, settings: OperatorSettings) -> Pass | None:
    """One pass over a searching job; None when it is gone, finished, not a search, or not started."""
    with job_lock(C.TRAINING_PLURAL, namespace, name):
        body = kube.get_job(C.TRAINING_PLURAL, namespace, name)
        status = (body or {}).get("status") or {}
        if body is None or status.get("trialCounts") is None or status.get("phase") in TERMINAL_PHASES:
            return None
        with metrics.timed(C.TRAINING_KIND, "search"):
            return _search_pass(body, status, namespace, name, kube, settings)


def _search_pass(
    body: dict[str, Any], status: Mapping[str, Any], namespace: str, name: str, kube: Kube, settings: OperatorSettings
) -> Pass | None:
    try:
        spec = VideoTrainingJobSpec.model_validate(body["spec"])
        if spec.search is None:
            return None
        plan = make_plan(spec, settings)
        owner = Owner.from_body(body)
        access = storage_access(kube, namespace, spec.storage, settings)
        ledger_uri = f"{normalise_prefix(spec.output)}{C.LEDGER_FILE}"
        rows = s3.read_jsonl(access, ledger_uri)
        before = load_trials(status, rows)
        engine = engine_of_status(status)
        pjs = _children(kube, engine, namespace, owner)
        now = now_iso()
        trials = _observe_all(plan, access, spec, owner.name, before, pjs, now=now)
        suspended = spec.run_policy.suspend
        if not suspended:
            since = status.get("startTime") or now
            trials = _start_trials(plan, spec, settings, list(trials), now=now, since=since)
        desired = desired_status(
            plan,
            trials,
            status,
            owner.name,
            pjs,
            suspended=suspended,
            now=now,
            engine=engine.name,
            queue=spec.queue_name,
        )
        events = trial_events(before, trials)
        best, why = promotion(trials, plan.search)
        if best is not None and (status.get("bestTrial") != best.number or not status.get("bestCheckpoint")):
            config = build_trial_config(spec, settings, best.number, best.overrides)
            desired["bestCheckpoint"] = _promote(access, spec, best, config, measured=measures(plan.search))
            if status.get("bestTrial") != best.number:
                events.append(("Normal", "NewBest", new_best_message(best, why)))
    except (ValidationError, Blocked, s3.S3Error) as err:
        metrics.error(C.TRAINING_KIND, error_reason(err))
        text = err.message if isinstance(err, Blocked) else str(err).splitlines()[0]
        patch = status_diff(status, {"message": f"search paused, retrying: {text}"})
        if patch:
            kube.patch_job_status(C.TRAINING_PLURAL, namespace, name, patch)
        return Pass(body, status.get("phase"), patch, [])
    patch = status_diff(status, desired)
    if patch:
        kube.patch_job_status(C.TRAINING_PLURAL, namespace, name, patch)  # recorded first ...
    new_rows = [ledger_row(t, plan) for t in trials]
    if new_rows != rows:
        s3.put_text(access, ledger_uri, "".join(json.dumps(r) + "\n" for r in new_rows))
    _act(kube, owner, spec, settings, trials, pjs, engine)  # ... then acted on
    return Pass(body, status.get("phase"), patch, events)


def start_search(
    body: Mapping[str, Any], spec: VideoTrainingJobSpec, settings: OperatorSettings, engine: Engine | None = None
) -> dict[str, Any]:
    """The status that hands a validated job to the search driver (its first pass starts the trials on `engine`)."""
    plan = make_plan(spec, settings)
    return {
        "engine": engine.name if engine is not None else "pytorchjob",
        "phase": "Suspended" if spec.run_policy.suspend else "Pending",
        "message": f"search of up to {plan.search.trials} trials, {plan.search.parallel} at once: starting",
        "trialCounts": counts([]),
        "trialsSummary": f"0/{plan.search.trials}",
        "observedGeneration": body["metadata"].get("generation"),
    }


def best_training_spec(
    spec: VideoTrainingJobSpec, status: Mapping[str, Any], settings: OperatorSettings
) -> VideoTrainingJobSpec:
    """A searched job's spec with its best trial's values, so inference inherits what the best model used."""
    entry = next((e for e in status.get("trials") or [] if e.get("number") == status.get("bestTrial")), None)
    if spec.search is None or entry is None:
        return spec
    try:
        overrides = sp.overrides(make_plan(spec, settings).space, entry.get("params") or {})
    except (Blocked, ConfigError, KeyError, StopIteration):
        return spec
    model = {k: overrides[k] for k in ("backbone", "pretrained") if k in overrides}
    training = {k: v for k, v in overrides.items() if k in type(spec.training).model_fields}
    return spec.model_copy(
        update={
            "model": spec.model.model_copy(update=model),
            "training": spec.training.model_copy(update=training),
        }
    )
