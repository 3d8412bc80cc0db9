"""One trial, in a process of its own: `fit()` on the trial's config, reporting to the study's pruner.

`python -m autox_video.search.worker TRIAL_DIR --storage URL --study NAME --number N` (under
torchrun when the trial uses several processes). A process per trial keeps a crash, an OOM kill or
a leaked GPU context of one trial out of the search; a trial dir holding a checkpoint resumes.
After each validated epoch rank 0 reports its top-1 (metrics.jsonl) to the trial and asks the
pruner; a pruned trial raises at once. The outcome goes to `TRIAL_DIR/trial.json`, which the search
reads when the process ends and then tells the study. When the search weighs speed (`search.objectives`
or a limit in `search.latency`, kept in the study's user attr `measure`), the trial then measures its own
best weights on its own device (`autox_video.search.measure`): trial.json gains `latency_ms`,
`videos_per_s`, `gflops` and `model_params`, and the trial's export/ holds the exported model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from autox_video.storage import atomic

RESULT = "trial.json"
MEASURE_ATTR = "measure"  # study user attr: {"objectives": [...], "latency": search.latency as a dict}
PRUNED_EXIT = 3  # non-zero, so that torchrun stops the other ranks of a pruned trial at once


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a killed `tune` leaves no orphan training)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def read_result(trial_dir: Path) -> dict[str, Any]:
    """The trial's trial.json ({} if it has none)."""
    path = trial_dir / RESULT
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def pruner_of(spec: dict[str, Any]) -> Any:
    """The search's pruner from the study's user attrs (Optuna's storage keeps no pruner)."""
    import optuna

    if spec.get("kind") != "asha":
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=int(spec["min_epochs"]), reduction_factor=int(spec["reduction_factor"])
    )


class Reporter:
    """fit()'s publisher on rank 0: new metrics.jsonl rows -> trial.report; pruned -> TrialPruned."""

    def __init__(self, storage: str, study_name: str, number: int, total_epochs: int, result: dict[str, Any]):
        self.storage, self.study_name, self.number, self.total_epochs = storage, study_name, number, total_epochs
        self.result = result
        self.start = time.time()
        self._trial: Any = None

    def trial(self) -> Any:
        """The running Optuna trial (opened on first use: only rank 0 talks to the study)."""
        if self._trial is None:
            import optuna

            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            study.pruner = pruner_of(study.user_attrs.get("pruner") or {})
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == self.number)
            self._trial = optuna.trial.Trial(study, frozen._trial_id)
        return self._trial

    def _should_prune(self, trial: Any) -> bool:
        from autox_video.search import ledger

        if len(trial.study.directions) == 1:
            return bool(trial.should_prune())
        return ledger.should_prune(trial.study, self.number)  # on top-1 alone, through a shadow study

    def measure_spec(self) -> dict[str, Any] | None:
        """The search's `measure` user attr when trials are measured (None: they are not)."""
        from autox_video.search.measure import wanted
        from autox_video.spec.search import LatencyConfig

        spec = self.trial().study.user_attrs.get(MEASURE_ATTR)
        if not spec:
            return None
        return spec if wanted(spec["objectives"], LatencyConfig(**spec["latency"])) else None

    def save(self, work: Path, **update: Any) -> None:
        """Write trial.json with this attempt's time added."""
        self.result.update(update, seconds=round(self.result.get("seconds_before", 0.0) + time.time() - self.start, 1))
        atomic.write_json(work / RESULT, self.result)

    def __call__(self, work: Path, epoch: int, final: bool) -> None:
        """After each epoch: report validations not yet reported; stop here if the pruner says so."""
        if epoch < 0 or final:
            return
        import optuna

        from autox_video.search import ledger
        from autox_video.training.hooks import read_metrics

        trial = self.trial()
        done = set(ledger.top1_by_epoch(trial.storage.get_trial(trial._trial_id)))
        new = [
            r for r in read_metrics(work / "metrics.jsonl") if r.get("epoch") not in done and r.get("top1") is not None
        ]
        for row in new:
            ledger.report_top1(trial, int(row["epoch"]), float(row["top1"]))
        self.save(work, epochs=epoch)
        if new and epoch < self.total_epochs and self._should_prune(trial):
            raise optuna.TrialPruned(f"pruned at epoch {epoch} of {self.total_epochs} (top-1 {new[-1]['top1']:.4f})")


def _threads() -> None:
    cpus = os.environ.get("AUTOX_TRIAL_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):  # this trial's share: the loader's defaults follow it
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    n = os.environ.get("AUTOX_TRIAL_THREADS")
    if n:
        import torch

        torch.set_num_threads(int(n))


def run(trial_dir: Path, storage: str, study_name: str, number: int) -> int:
    """Train the trial; write trial.json; the exit code says how it ended (0 ok, 3 pruned, 1 failed)."""
    import optuna

    from autox_video.config import load_config
    from autox_video.errors import AutoXError
    from autox_video.training import distributed
    from autox_video.training.train import fit

    _threads()
    cfg = load_config(trial_dir / "config.yaml")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    previous = read_result(trial_dir)
    result = {
        "number": number,
        "state": "running",
        "attempt": int(previous.get("attempt", 0)) + 1,
        "seconds_before": float(previous.get("seconds", 0.0) or 0.0),
        "pid": os.getpid(),
    }
    reporter = Reporter(storage, study_name, number, cfg.epoch, result)
    if rank0:
        reporter.save(trial_dir)
    try:
        out = fit(cfg, publisher=reporter if rank0 else None)
    except optuna.TrialPruned as err:
        if rank0:
            _set_phase(trial_dir, "pruned", str(err))
            measure(trial_dir, reporter)  # a pruned trial's speed still tells the sampler where the fast models are
            reporter.save(trial_dir, state="pruned", reason=str(err), epochs=_epochs(trial_dir))
        print(f"autox-video: trial {number}: {err}", file=sys.stderr)
        return PRUNED_EXIT
    except KeyboardInterrupt:
        if rank0:
            reporter.save(trial_dir, state="interrupted", epochs=_epochs(trial_dir))
        return 130
    except BaseException as err:  # an error of this trial (OOM, NaN loss, bad combination): the search goes on
        reason = (str(err).splitlines() or [type(err).__name__])[0][:500]
        if not isinstance(err, AutoXError):
            reason = f"{type(err).__name__}: {reason}"
        if rank0:
            reporter.save(trial_dir, state="failed", reason=reason, epochs=_epochs(trial_dir))
        print(f"autox-video: trial {number} failed: {reason}", file=sys.stderr)
        return 1
    distributed.teardown()
    if rank0:
        reporter.save(trial_dir, best_top1=out.best_top1, epochs=out.epochs)
        measure(trial_dir, reporter)
        reporter.save(trial_dir, state="succeeded")  # last: a trial killed while measuring runs again
    return 0


def measure(trial_dir: Path, reporter: Reporter) -> None:
    """Time the trial's best weights when the search weighs speed (figures into trial.json; a failure is noted)."""
    spec = reporter.measure_spec()
    best = trial_dir / "best.pth"
    if spec is None or not best.is_file():
        return
    from autox_video.search.ledger import FIGURES
    from autox_video.search.measure import measure_checkpoint
    from autox_video.spec.search import LatencyConfig

    try:
        figures = measure_checkpoint(best, LatencyConfig(**spec["latency"]), trial_dir / "export")
    except Exception as err:  # an unexportable model still has its top-1; it is just never on the front
        reason = (str(err).splitlines() or [type(err).__name__])[0][:300]
        print(f"autox-video: trial {reporter.number}: not measured: {reason}", file=sys.stderr)
        reporter.save(trial_dir, measure_error=reason)
        return
    extra = {k: v for k, v in figures.items() if k not in FIGURES}
    reporter.save(trial_dir, **{k: figures.get(k) for k in FIGURES}, measured=extra)


def _epochs(trial_dir: Path) -> int:
    try:
        return int(json.loads((trial_dir / "progress.json").read_text()).get("epoch") or 0)
    except (OSError, ValueError):
        return 0


def _set_phase(trial_dir: Path, phase: str, message: str) -> None:
    """progress.json says what happened: fit() marks any exception 'failed', a pruned trial did not fail."""
    path = trial_dir / "progress.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    data.update(phase=phase, message=message)
    atomic.write_json(path, data)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one trial process."""
    import logging

    from autox_video import warning_filters

    warning_filters.install()  # before fit() imports mmaction2 and torch
    _die_with_parent()
    ap = argparse.ArgumentParser(prog="python -m autox_video.search.worker", description=__doc__.splitlines()[0])
    ap.add_argument("trial_dir", type=Path)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--number", type=int, required=True)
    args = ap.parse_args(argv)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    logging.basicConfig(level=logging.INFO if rank0 else logging.WARNING, format="%(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return run(args.trial_dir, args.storage, args.study, args.number)


if __name__ == "__main__":
    sys.exit(main())
