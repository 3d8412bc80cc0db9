"""tune(): a budgeted Optuna search over config keys; each trial an ordinary training run.

work_dir/
  study.db            the Optuna study (SQLite): what makes a killed `tune` resume by the same command
  trials.jsonl        one line per trial (number, params, state, epochs, best top-1, seconds, reason)
  trials/NNNN/        each trial's own work dir (config.yaml, checkpoints, metrics.jsonl, trial.json)
  best.pth            the promoted trial's weights; best_config.yaml its resolved config; search.json a summary
  search.png          each trial's validation top-1 by epoch (redrawn as each trial ends); with measured
                      trials also the accuracy/latency plane: the Pareto front joined, the limit dashed,
                      the promoted one marked
  export/             the promoted model exported (when trials are measured): what `serve` loads

With a speed objective (`search.objectives: [top1, latency]` or `[top1, throughput]`) the study is
multi-objective (Optuna's TPE), each trial measures its own best weights on its own device (worker.py),
ASHA still prunes on top-1 alone, and the promoted trial is the most accurate one meeting
`search.latency`'s limit (`front.promotion`); `tune --pick N` promotes trial N afterwards.

A RUNNING trial found at start (the last `tune` was killed) runs again with its number and params in its
own dir, where fit() resumes it from its checkpoint, and is told to the study when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autox_video import terminal
from autox_video.config import Config
from autox_video.errors import ConfigError
from autox_video.search import front, ledger
from autox_video.search import space as sp
from autox_video.search.measure import wanted
from autox_video.search.plot import try_draw_search
from autox_video.search.section import grid_values
from autox_video.search.worker import MEASURE_ATTR, read_result
from autox_video.spec.search import SearchConfig
from autox_video.storage import atomic

STUDY = "autox-video"
STUDY_FILE = "study.db"
LIMITS = {"max_ms", "min_videos_per_s"}


@dataclass
class SearchResult:
    """What a search produced."""

    work_dir: Path
    rows: list[dict[str, Any]]
    best_trial: int | None
    best_top1: float | None
    best_checkpoint: Path | None
    best_config: Path | None
    table: str = ""
    front: list[int] = field(default_factory=list)  # Pareto-optimal trials (top-1 vs speed), most accurate first
    export_dir: Path | None = None  # the promoted model's export/ (when trials are measured)


@dataclass
class Slot:
    """Where one trial runs: its GPUs (None on CPU) and its share of the CPUs."""

    gpus: list[str] | None
    cpus: list[int]


@dataclass
class Running:
    """A trial process in flight."""

    number: int
    proc: subprocess.Popen[bytes]
    slot: Slot
    started: float
    rows_seen: int = 0
    log: Any = field(default=None, repr=False)


def resolve_search(cfg: Config, trials: int | None = None, parallel: int | None = None) -> SearchConfig:
    """The config's `search:` (none or 'auto': the defaults, auto space) with the command line's caps."""
    search = cfg.search if isinstance(cfg.search, SearchConfig) else SearchConfig()
    update = {k: v for k, v in (("trials", trials), ("parallel", parallel)) if v is not None}
    for k, v in update.items():
        if int(v) < 1:
            raise ConfigError(f"--{k} {v}: must be at least 1")
    return search.model_copy(update=update)


def make_slots(parallel: int, nproc: int, gpu_ids: list[str]) -> list[Slot]:
    """One slot per trial run at once: `nproc` GPUs each when there are GPUs, the CPUs divided evenly."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    if gpu_ids:
        parallel = max(1, min(parallel, len(gpu_ids) // nproc))
    per = max(1, len(cpus) // parallel)
    slots = []
    for i in range(parallel):
        share = cpus[i * per : (i + 1) * per] or cpus
        gpus = gpu_ids[i * nproc : (i + 1) * nproc] if gpu_ids else None
        slots.append(Slot(gpus, share))
    return slots


def why_not_start(
    search: SearchConfig,
    *,
    epoch: int,
    started: int,
    grid_size: int | None,
    used_epochs: int,
    reserved_epochs: int,
    elapsed_s: float,
    est_trial_s: float | None,
) -> str | None:
    """Why no new trial may start now (None: it may): trials cap, grid done, or a budget it would overrun."""
    if started >= search.trials:
        return f"{search.trials} trials started"
    if grid_size is not None and started >= grid_size:
        return f"every one of the {grid_size} grid points tried"
    cap = search.budget.trial_epochs
    if cap is not None and used_epochs + reserved_epochs + epoch > cap:
        return f"budget: {used_epochs + reserved_epochs} of {cap} trial-epochs used, a trial needs {epoch}"
    if search.budget.hours is not None:
        left = search.budget.hours * 3600 - elapsed_s
        if left <= 0 or (est_trial_s is not None and est_trial_s > left):
            est = f", a trial takes ~{est_trial_s / 60:.1f} min" if est_trial_s is not None else ""
            return f"budget: {elapsed_s / 3600:.2f} of {search.budget.hours:g} hours used{est}"
    return None


def _gpu_ids() -> list[str]:
    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:
        count = 0
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def _local_work_dir(cfg: Config) -> Path:
    if cfg.work_dir.startswith("s3://"):
        raise ConfigError(
            f"work_dir {cfg.work_dir}: a local search keeps its study on disk: use a local work_dir "
            "(searches with an s3:// output run on Kubernetes through spec.search)"
        )
    return Path(cfg.work_dir).resolve()


def _check_trainable(cfg: Config) -> None:
    if cfg.ann_file_train is None:
        raise ConfigError("ann_file_train is not set: add it to config.yaml or pass --ann-file-train")
    if cfg.ann_file_val is None or cfg.evaluation < 1:
        raise ConfigError(
            "tune ranks trials by validation top-1: set ann_file_val and evaluation >= 1 (validate every N epochs)"
        )


def _signature(dists: dict[str, Any], cfg: Config, search: SearchConfig | None = None) -> str:
    from optuna.distributions import distribution_to_json

    sig: dict[str, Any] = {"epoch": cfg.epoch, "space": {k: distribution_to_json(v) for k, v in sorted(dists.items())}}
    if search is not None and wanted(search.objectives, search.latency):  # a top-1 search keeps its old signature
        # The limit is not in it: choosing it after the search (the same command, another max_ms) is the point
        # of a front; only what the figures were measured with is.
        sig.update(objectives=search.objectives, latency=search.latency.model_dump(exclude=LIMITS))
    return json.dumps(sig)


class Search:
    """One `tune` session over the study in work_dir."""

    def __init__(
        self, cfg: Config, search: SearchConfig, *, nproc: int = 1, echo: Callable[[str], None] = terminal.say
    ):
        import optuna

        self.cfg, self.search, self.nproc, self.echo = cfg, search, max(1, nproc), echo
        self.work = _local_work_dir(cfg)
        gpu_ids = _gpu_ids()
        self.space, self.notes = sp.resolve_space(search, cfg, cuda=bool(gpu_ids))
        self.dists = sp.distributions(self.space)
        self.grid_size = None
        if search.sampler == "grid":
            self.grid_size = 1
            for values in grid_values(self.space).values():
                self.grid_size *= len(values)
        self.slots = make_slots(search.parallel, self.nproc, gpu_ids)
        self.free = list(self.slots)
        seed = search.seed if search.seed is not None else cfg.seed
        self.storage_url = f"sqlite:///{self.work / STUDY_FILE}"
        self.work.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(self.storage_url, engine_kwargs={"connect_args": {"timeout": 60}})
        self.objectives = list(search.objectives)
        self.measured = wanted(self.objectives, search.latency)
        self.constraint = search.latency if front.has_constraint(search.latency) else None
        try:
            self.study = optuna.create_study(
                storage=storage,
                study_name=STUDY,
                directions=ledger.directions(self.objectives),
                sampler=sp.sampler(search, self.space, seed),
                pruner=sp.pruner(search, cfg),
                load_if_exists=True,
            )
        except ValueError as err:  # the stored study has other directions
            where = self.work / STUDY_FILE
            raise ConfigError(f"{where}: {err}; restore search.objectives or use a new work_dir") from None
        if len(self.study.directions) != len(self.objectives):
            raise ConfigError(
                f"{self.work / STUDY_FILE} holds a search with {len(self.study.directions)} objective(s), "
                f"search.objectives has {len(self.objectives)}: restore them to resume it, or use a new work_dir"
            )
        self.running: dict[int, Running] = {}
        self.session_start = time.time()
        self.elapsed_before = float(self.study.user_attrs.get("elapsed_s", 0.0))
        self.stopped: str | None = None
        self.bar: Any = terminal.bar(None, "trials", enabled=False)  # drawn while run() runs

    # --- study bookkeeping -------------------------------------------------------------------
    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def _trial(self, number: int) -> Any:
        import optuna

        frozen = next(t for t in self._trials() if t.number == number)
        return optuna.trial.Trial(self.study, frozen._trial_id)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.session_start

    def write_ledger(self) -> list[dict[str, Any]]:
        """Rewrite trials.jsonl from the study."""
        rows = ledger.rows_of(self.study)
        ledger.write(self.work / ledger.LEDGER, rows)
        return rows

    def check_same_search(self) -> None:
        """A study made for another space or trial length cannot go on: the sampler's history would lie."""
        # Trial processes load the study from storage, which does not keep the pruner: they rebuild it.
        rung = sp.rungs(self.search, self.cfg)
        self.study.set_user_attr(
            "pruner",
            {"kind": self.search.pruner, "min_epochs": rung.min_epochs, "reduction_factor": rung.reduction_factor},
        )
        self.study.set_user_attr(
            MEASURE_ATTR, {"objectives": self.objectives, "latency": self.search.latency.model_dump()}
        )
        signature = _signature(self.dists, self.cfg, self.search)
        saved = self.study.user_attrs.get("signature")
        if saved is None:
            self.study.set_user_attr("signature", signature)
        elif saved != signature:
            raise ConfigError(
                f"{self.work / STUDY_FILE} holds a search over another space or epoch count: restore the "
                "search settings to resume it, or use a new work_dir"
            )

    def enqueue_default(self) -> None:
        """The config itself is trial 0 when it lies in the space: a search never ends worse than it."""
        if self.study.user_attrs.get("default_enqueued") is not None:
            return
        params = sp.params_of(self.space, self.cfg)
        if params is not None:
            self.study.enqueue_trial(params, user_attrs={"default": True})
            self.echo(f"trial 0 is the config itself: {_show(sp.overrides(self.space, params))}")
        self.study.set_user_attr("default_enqueued", params is not None)

    # --- scheduling --------------------------------------------------------------------------
    def _started(self) -> int:
        import optuna

        return sum(t.state != optuna.trial.TrialState.WAITING for t in self._trials())

    def _used_epochs(self) -> int:
        return sum(int(t.user_attrs.get("epochs", 0)) for t in self._trials() if t.state.is_finished())

    def _est_trial_s(self) -> float | None:
        rates = [
            t.user_attrs["seconds"] / t.user_attrs["epochs"]
            for t in self._trials()
            if t.state.is_finished() and t.user_attrs.get("epochs") and t.user_attrs.get("seconds")
        ]
        return statistics.median(rates) * self.cfg.epoch if rates else None

    def why_not_start(self) -> str | None:
        """Why a new trial may not start now (None: it may)."""
        return why_not_start(
            self.search,
            epoch=self.cfg.epoch,
            started=self._started(),
            grid_size=self.grid_size,
            used_epochs=self._used_epochs(),
            reserved_epochs=self.cfg.epoch * len(self.running),
            elapsed_s=self._elapsed(),
            est_trial_s=self._est_trial_s(),
        )

    def trial_config(self, number: int, overrides: dict[str, Any]) -> Config:
        """The trial's Config: the search's config with the trial's values, in trials/NNNN, searching nothing."""
        # Family keys the user left to the defaults stay unset: a trial on another backbone gets its recipe.
        base = self.cfg.family_free_values()
        base.update(overrides, work_dir=str(self.work / ledger.trial_dir_name(number)), search=None)
        try:
            return Config(**base)
        except Exception as err:  # a combination the config model rejects (one line)
            raise ConfigError(f"trial {number}: {_show(overrides)}: {str(err).splitlines()[-1].strip()}") from None

    def launch(self, number: int) -> None:
        """Start trial `number` (new, or interrupted before) in a free slot."""
        trial = self._trial(number)
        frozen = next(t for t in self._trials() if t.number == number)
        overrides = sp.overrides(self.space, frozen.params)
        tdir = self.work / ledger.trial_dir_name(number)
        try:
            tcfg = self.trial_config(number, overrides)
        except ConfigError as err:
            self._finish(number, {"state": "failed", "reason": str(err), "epochs": 0, "seconds": 0.0}, trial)
            return
        trial.set_user_attr("overrides", overrides)
        tdir.mkdir(parents=True, exist_ok=True)
        if not (tdir / "config.yaml").is_file():
            atomic.write_text(tdir / "config.yaml", tcfg.to_yaml())
        slot = self.free.pop(0)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "AUTOX_TRIAL_CPUS": ",".join(map(str, slot.cpus))}
        env["OMP_NUM_THREADS"] = env["AUTOX_TRIAL_THREADS"] = str(max(1, len(slot.cpus) // self.nproc))
        if slot.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        worker = ["-m", "autox_video.search.worker", str(tdir)]
        worker += ["--storage", self.storage_url, "--study", STUDY, "--number", str(number)]
        if self.nproc > 1:
            worker = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}", *worker]
        log = open(tdir / "train.log", "ab")  # noqa: SIM115  (closed when the trial ends)
        proc = subprocess.Popen(
            [sys.executable, *worker], stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )
        self.running[number] = Running(number, proc, slot, time.time(), log=log)
        again = " (resuming)" if read_result(tdir).get("attempt") else ""
        where = f"GPU {','.join(slot.gpus)}" if slot.gpus else f"{len(slot.cpus)} CPUs"
        self.echo(f"trial {number} started{again} on {where}: {_show(overrides)}")
        self.write_ledger()

    def _finish(self, number: int, res: dict[str, Any], trial: Any | None = None) -> None:
        import optuna

        trial = trial or self._trial(number)
        state = res.get("state")
        for key in ("epochs", "seconds", "reason"):
            if res.get(key) is not None:
                trial.set_user_attr(key, res[key])
        if state in ("succeeded", "pruned") and self.measured:
            ledger.record_figures(trial, res, self.constraint)  # before tell: the sampler reads the constraint
        speed = _speed_words(res) if self.measured else ""
        if state == "succeeded" and res.get("best_top1") is not None:
            self.study.tell(number, ledger.objective_values(res["best_top1"], res, self.objectives))
            what = f"succeeded: best top-1 {res['best_top1']:.4f}{speed}"
        elif state == "pruned":
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED)
            what = f"pruned after {res.get('epochs')} of {self.cfg.epoch} epochs{speed}"
        else:
            if state == "succeeded":
                trial.set_user_attr("reason", "no validation top-1")
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            what = f"failed: {res.get('reason') or 'no validation top-1'}"
        self.study.set_user_attr("elapsed_s", self._elapsed())
        self.echo(f"trial {number} {what}")
        self.bar.update(1)
        self._show_best()
        try_draw_search(self.work, self.write_ledger(), self.search.speed_objective, latency=self.search.latency)

    def _reap(self, run: Running) -> None:
        rc = run.proc.returncode
        run.log.close()
        self.free.append(run.slot)
        del self.running[run.number]
        tdir = self.work / ledger.trial_dir_name(run.number)
        res = read_result(tdir)
        if res.get("state") == "interrupted" or rc == 130:
            self.stopped = "interrupted"
            return  # stays RUNNING in the study: the same command resumes it
        if res.get("state") not in ("succeeded", "pruned", "failed"):
            res = {**res, "state": "failed", "reason": f"the trial process {_exit_words(rc)}{_last_line(tdir)}"}
        self._finish(run.number, res)

    def _show_progress(self, run: Running) -> None:
        rows = atomic.read_jsonl(self.work / ledger.trial_dir_name(run.number) / "metrics.jsonl")
        for row in rows[run.rows_seen :]:
            self.echo(f"trial {run.number} epoch {row.get('epoch')}/{self.cfg.epoch}: top-1 {row.get('top1', 0):.4f}")
        run.rows_seen = len(rows)

    def _show_best(self) -> None:
        """The bar's postfix: the best top-1 so far and its trial."""
        import optuna

        done = [t for t in self._trials() if t.state == optuna.trial.TrialState.COMPLETE and t.values]
        if done:
            best = max(done, key=lambda t: (t.values[0], -t.number))
            self.bar.set_postfix(best=f"{best.values[0]:.4f} (trial {best.number})")

    def run(self) -> None:
        """Start trials while slots, trials and budget allow; reap them; until nothing is left to run."""
        total = min(self.search.trials, self.grid_size or self.search.trials)
        ended = sum(t.state.is_finished() for t in self._trials())
        self.bar = terminal.bar(total, "trials", "trial", initial=min(ended, total))
        self._show_best()
        try:
            self._run()
        finally:
            self.bar.close()

    def _run(self) -> None:
        import optuna

        # Interrupted last time: run them first, with their numbers and params.
        pending = [t.number for t in self._trials() if t.state == optuna.trial.TrialState.RUNNING]
        for number in pending:
            res = read_result(self.work / ledger.trial_dir_name(number))
            if res.get("state") in ("succeeded", "pruned", "failed"):
                self._finish(number, res)  # it ended, but `tune` died before telling the study
        pending = [t.number for t in self._trials() if t.state == optuna.trial.TrialState.RUNNING]
        while True:
            while self.free and self.stopped is None:
                if pending:
                    self.launch(pending.pop(0))
                    continue
                reason = self.why_not_start()
                if reason is not None:
                    if not self.running:  # else a trial still running may end early and free budget
                        self.stopped = reason
                        self.echo(f"no more trials: {reason}")
                    break
                trial = self.study.ask(self.dists)
                self.launch(trial.number)
            if not self.running:
                return
            time.sleep(0.5)
            for run in list(self.running.values()):
                self._show_progress(run)
                if run.proc.poll() is not None:
                    self._reap(run)

    def stop(self) -> None:
        """Ctrl-C: ask every trial to stop at its next iteration (they resume later), then wait for them."""
        for run in self.running.values():
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGINT)
        deadline = time.time() + 120
        for run in list(self.running.values()):
            try:
                run.proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
            run.log.close()
        self.running.clear()
        self.study.set_user_attr("elapsed_s", self._elapsed())
        self.write_ledger()


def promote_trial(work: Path, number: int) -> tuple[Path | None, Path | None]:
    """Copy trial `number`'s best.pth and resolved config to the search's work dir (atomically)."""
    tdir = work / ledger.trial_dir_name(number)
    weights = config = None
    if (tdir / "best.pth").is_file():
        weights = work / "best.pth"
        atomic.copy_file(tdir / "best.pth", weights)
    if (tdir / "config.yaml").is_file():
        config = work / "best_config.yaml"
        atomic.copy_file(tdir / "config.yaml", config)
    return weights, config


def export_promoted(weights: Path, echo: Callable[[str], None]) -> Path | None:
    """Export the promoted best.pth into export/ beside it (autox_video.export); a failure is said, not raised."""
    import shutil

    from autox_video.errors import AutoXError
    from autox_video.export.run import export_checkpoint

    out = weights.parent / "export"
    shutil.rmtree(out, ignore_errors=True)  # no file of an earlier promoted model is left beside the new one
    try:
        export_checkpoint(str(weights), str(out))
    except AutoXError as err:
        echo(f"the promoted model is not exported: {err}")
        return None
    return out


def _die_with_parent() -> None:
    from autox_video.search.worker import _die_with_parent as die

    die()


def _exit_words(rc: int | None) -> str:
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        hint = " (out of memory?)" if -rc == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {rc}"


def _last_line(tdir: Path) -> str:
    try:
        lines = [ln for ln in (tdir / "train.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()[:300]}" if lines else ""


def _speed_words(res: dict[str, Any]) -> str:
    if res.get("latency_ms") is None:
        return f"; not measured ({res['measure_error']})" if res.get("measure_error") else ""
    return f"; {res['latency_ms']:.2f} ms, {res['videos_per_s']:.1f} videos/s"


def front_table(rows: list[dict[str, Any]], numbers: list[int], promoted: int | None = None) -> str:
    """The Pareto-optimal trials: trial, top-1, latency, videos/s, GFLOPs, backbone, img size (promoted: *)."""
    by = {r["number"]: r for r in rows}
    head = ["trial", "top-1", "latency ms", "videos/s", "GFLOPs", "params", "backbone", "img size"]
    body = []
    for n in numbers:
        r, over = by[n], by[n].get("overrides") or {}
        body.append(
            [
                f"{n}{' *' if n == promoted else ''}",
                f"{r['best_top1']:.4f}",
                f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else "-",
                f"{r['videos_per_s']:.1f}" if r.get("videos_per_s") is not None else "-",
                f"{r['gflops']:.3g}" if r.get("gflops") is not None else "-",
                f"{r['model_params'] / 1e6:.2f}M" if r.get("model_params") is not None else "-",
                str(over.get("backbone", "(config)")),
                str(over.get("img_size", "(config)")),
            ]
        )
    widths = [max(len(x[c]) for x in [head, *body]) for c in range(len(head))]
    return "\n".join("  ".join(x[c].ljust(widths[c]) for c in range(len(head))).rstrip() for x in [head, *body])


def _show(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()) or "-"


def ranked_table(rows: list[dict[str, Any]]) -> str:
    """Trials best first: succeeded by top-1, then pruned by their best top-1, then failed."""
    order = {"succeeded": 0, "pruned": 1, "running": 2, "failed": 3}
    ranked = sorted(rows, key=lambda r: (order[r["state"]], -(r["best_top1"] or -1.0), r["number"]))
    head = ["rank", "trial", "state", "top-1", "epochs", "min", "params"]
    body = [
        [
            str(i + 1),
            str(r["number"]),
            r["state"],
            f"{r['best_top1']:.4f}" if r["best_top1"] is not None else "-",
            str(r["epochs"]),
            f"{r['seconds'] / 60:.1f}" if r.get("seconds") else "-",
            _show(r["overrides"]) + (f"  [{r['reason']}]" if r["state"] == "failed" and r.get("reason") else ""),
        ]
        for i, r in enumerate(ranked)
    ]
    widths = [max(len(x[c]) for x in [head, *body]) for c in range(len(head) - 1)]
    lines = ["  ".join(x[c].ljust(widths[c]) for c in range(len(widths))) + "  " + x[-1] for x in [head, *body]]
    return "\n".join(ln.rstrip() for ln in lines)


def tune(
    cfg: Config,
    *,
    trials: int | None = None,
    parallel: int | None = None,
    nproc: int | None = None,
    echo: Callable[[str], None] = terminal.say,
) -> SearchResult:
    """Search `cfg.search` (or `auto`) in cfg.work_dir; resumes a search found there. Returns its summary."""
    import optuna

    from autox_video.storage.lock import hold_work_dir
    from autox_video.training.inputs import check_lists

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = resolve_search(cfg, trials, parallel)
    _check_trainable(cfg)
    check_lists(cfg, "tune")  # trials would each fail on a bad list, after the study was made
    s = Search(cfg, search, nproc=nproc or 1, echo=echo)
    with hold_work_dir(s.work, "autox-video tune"):
        s.check_same_search()
        how = "auto space" if search.space is None else "space"
        echo(f"search: {search.sampler} sampler, pruner {search.pruner}, {how}:")
        for line in sp.describe(s.space) + [f"  ({n})" for n in s.notes]:
            echo(line)
        caps = [f"{search.trials} trials", f"{len(s.slots)} at once", f"{cfg.epoch} epochs each"]
        if search.budget.trial_epochs:
            caps.append(f"budget {search.budget.trial_epochs} trial-epochs")
        if search.budget.hours:
            caps.append(f"budget {search.budget.hours:g} h")
        if search.pruner == "asha":
            caps.append(f"ASHA rungs at epochs {sp.rungs(search, cfg).epochs(cfg.epoch) or 'none'}")
        echo("  " + ", ".join(caps))
        if len(s.slots) < search.parallel:
            echo(f"  parallel {search.parallel} -> {len(s.slots)}: {nproc or 1} GPU(s) per trial")
        s.enqueue_default()
        try:
            s.run()
        except KeyboardInterrupt:
            s.stop()
            raise
        rows = s.write_ledger()
        table = ranked_table(rows)
        echo(table)
        result = finish(s.work, rows, search, echo=echo)
    result.table = table
    return result


def finish(
    work: Path, rows: list[dict[str, Any]], search: SearchConfig, *, pick: int | None = None, echo: Callable = print
) -> SearchResult:
    """Promote (the trial `front.promotion` chooses, or `pick`), export it when trials are measured, print the
    front, draw search.png and write search.json."""
    measured = wanted(search.objectives, search.latency)
    numbers = front.pareto_front(rows, search.speed_objective) if measured else []
    if pick is None:
        chosen, why = front.promotion(rows, search)
    else:
        chosen, why = pick, "picked with --pick"
    by = {r["number"]: r for r in rows}
    weights = config = export_dir = None
    if chosen is not None:
        weights, config = promote_trial(work, chosen)
        if measured and weights is not None:
            export_dir = export_promoted(weights, echo)
    try_draw_search(work, rows, search.speed_objective, chosen, search.latency)
    top1 = by[chosen]["best_top1"] if chosen is not None else None
    summary = {
        "best_trial": chosen,
        "best_top1": top1,
        "best_checkpoint": str(weights) if weights else None,
        "promotion": why,
        "objectives": list(search.objectives),
        "trials": {state: sum(r["state"] == state for r in rows) for state in ledger.STATES},
    }
    if measured:
        summary.update(
            pareto=[
                {"trial": n, "top1": by[n]["best_top1"], **{k: by[n].get(k) for k in ledger.FIGURES}} for n in numbers
            ],  # noqa: E501
            limit=front.describe_limit(search.latency) or None,
            export=str(export_dir) if export_dir else None,
        )
    atomic.write_json(work / "search.json", summary)
    if measured:
        echo(f"Pareto front (top-1 vs {search.speed_objective or 'latency'}; * promoted):")
        echo(front_table(rows, numbers, chosen) if numbers else "  (no measured trial succeeded)")
    if chosen is not None:
        ms = by[chosen].get("latency_ms")
        speed = f", {ms:.2f} ms" if ms is not None else ""
        where = f"; export {export_dir}" if export_dir else ""
        echo(f"best: trial {chosen} ({why}), top-1 {top1:.4f}{speed}; weights {weights}, config {config}{where}")
    else:
        echo("no trial finished with a validation top-1")
    return SearchResult(work, rows, chosen, top1, weights, config, "", numbers, export_dir)


def pick(cfg: Config, number: int, *, echo: Callable[[str], None] = terminal.say) -> SearchResult:
    """`tune --pick N`: promote trial N of the search in cfg.work_dir (its best.pth, config, export)."""
    from autox_video.storage.lock import hold_work_dir

    search = resolve_search(cfg)
    work = _local_work_dir(cfg)
    rows = ledger.read(work / ledger.LEDGER)
    if not rows:
        raise ConfigError(f"{work / ledger.LEDGER}: no search here; run `autox-video tune` first")
    row = next((r for r in rows if r["number"] == number), None)
    if row is None:
        raise ConfigError(f"--pick {number}: no trial {number} in {work / ledger.LEDGER} (trials 0..{len(rows) - 1})")
    if row["state"] != "succeeded" or not (work / ledger.trial_dir_name(number) / "best.pth").is_file():
        raise ConfigError(f"--pick {number}: trial {number} is {row['state']} with no best.pth; pick a succeeded one")
    with hold_work_dir(work, "autox-video tune --pick"):
        return finish(work, rows, search, pick=number, echo=echo)
