"""One trial, in a process of its own: `fit()` on the trial's config, reporting to the study's pruner.

`python -m autox_video.search.worker TRIAL_DIR --storage URL --study NAME --number N` (under
torchrun when the trial uses several processes). A process per trial keeps a crash, an OOM kill or
a leaked GPU context of one trial out of the search; a trial dir holding a checkpoint resumes.
After each validated epoch rank 0 reports its top-1 (metrics.jsonl) to the trial and asks the
pruner; a pruned trial raises at once. The outcome goes to `TRIAL_DIR/trial.json`, which the search
reads when the process ends and then tells the study.
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

    def save(self, work: Path, **update: Any) -> None:
        """Write trial.json with this attempt's time added."""
        self.result.update(update, seconds=round(self.result.get("seconds_before", 0.0) + time.time() - self.start, 1))
        atomic.write_json(work / RESULT, self.result)

    def __call__(self, work: Path, epoch: int, final: bool) -> None:
        """After each epoch: report validations not yet reported; stop here if the pruner says so."""
        if epoch < 0 or final:
            return
        import optuna

        from autox_video.training.hooks import read_metrics

        trial = self.trial()
        done = set(trial.storage.get_trial(trial._trial_id).intermediate_values)
        new = [
            r for r in read_metrics(work / "metrics.jsonl") if r.get("epoch") not in done and r.get("top1") is not None
        ]
        for row in new:
            trial.report(float(row["top1"]), int(row["epoch"]))
        self.save(work, epochs=epoch)
        if new and epoch < self.total_epochs and trial.should_prune():
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
    if rank0:
        reporter.save(trial_dir, state="succeeded", best_top1=out.best_top1, epochs=out.epochs)
    distributed.teardown()
    return 0


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
