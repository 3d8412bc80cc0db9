"""Run a validated manifest here: write config.yaml, launch the trainer (torchrun when >1 process), print status.

Status lines follow `kubectl get vtj` (NAME, PHASE, EPOCH, BEST-TOP1, PROGRESS, and the ETA) and are printed when they
change, from the progress.json the trainer writes to the output as a pod does. Ctrl-C stops the run; running
the same command again resumes it (the trainer resumes from the latest checkpoint under the output).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from autox_video import storage, terminal
from autox_video.errors import AutoXError, ConfigError
from autox_video.runlocal.manifest import Manifest, load_manifest, manifest_config
from autox_video.runlocal.registry import find_run, record_run, registry_path
from autox_video.runlocal.run_bar import RunBar
from autox_video.spec.progress import estimate
from autox_video.spec.trainer_config import INHERITED_KEYS, normalise_prefix, results_uri
from autox_video.spec.training import TRAINING, VideoTrainingJobSpec
from autox_video.storage import atomic

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # the Secret's keys (spec.storage.secretRef)


def _poll_seconds() -> float:
    return float(os.environ.get("AUTOX_RUN_POLL_SECONDS") or 5.0)


def gpus_present() -> int:
    """CUDA GPUs on this machine (0 without torch or CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # no torch, no driver: CPU
        return 0


def processes(gpus_per_replica: int, nproc: int | None = None, present: int | None = None) -> int:
    """Processes to launch: --nproc, else the manifest's GPUs per replica capped to those present (CPU: 1)."""
    if nproc is not None:
        if nproc < 1:
            raise ConfigError(f"--nproc: expected a number >= 1, got {nproc!r}")
        return nproc
    present = gpus_present() if present is None else present
    return max(1, min(gpus_per_replica, present))


def child_env(manifest: Manifest, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The trainer's environment: S3 credentials from the environment, endpoint and region from spec.storage."""
    env = dict(os.environ if environ is None else environ)
    st = manifest.spec.storage
    missing = [k for k in CREDENTIAL_KEYS if not env.get(k)]
    if st.secret_ref and missing:
        raise ConfigError(
            f"{manifest.path}: spec.storage.secretRef {st.secret_ref!r}: set {' and '.join(missing)} in the "
            "environment (the Secret's keys) to run it here"
        )
    env["AWS_DEFAULT_REGION"] = st.region
    if st.endpoint:
        env["AWS_ENDPOINT_URL"] = st.endpoint
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _eta(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def status_line(name: str, phase: str, progress: Mapping[str, Any] | None) -> str:
    """One `kubectl get vtj`-style row: NAME PHASE EPOCH BEST-TOP1 PROGRESS ETA."""
    p = progress or {}
    epoch, total, best = p.get("epoch"), p.get("total_epochs"), p.get("best_top1")
    done = estimate(p, datetime.now(UTC)) if p else None  # the ETA counts down between writes
    pct = f"{done.percentage}%" if done is not None and done.percentage is not None else ""
    eta = _eta(done.remaining_seconds) if done is not None and phase == "Running" else ""
    epoch_col = f"{epoch}/{total}" if isinstance(epoch, int) and isinstance(total, int) else ""
    best_col = f"{best:.4f}" if isinstance(best, int | float) else ""
    return f"{name:<24} {phase:<10} {epoch_col:<7} {best_col:<10} {pct:<9} {eta}".rstrip()


HEADER = f"{'NAME':<24} {'PHASE':<10} {'EPOCH':<7} {'BEST-TOP1':<10} {'PROGRESS':<9} ETA"


def read_progress(output: str) -> dict[str, Any] | None:
    """The trainer's progress.json under `output`, or None when it is not there (yet)."""
    uri = f"{normalise_prefix(output)}progress.json"
    try:
        if storage.is_s3(uri) and storage.stat(uri) is None:
            return None
        data = json.loads(storage.read_text(uri))
    except (AutoXError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


SEARCH_FILES = ("trials.jsonl", "search.json")  # beside best.pth and best_config.yaml
BEST_FILE, BEST_CONFIG_FILE = "best.pth", "best_config.yaml"


def _ledger(work: Path) -> list[dict[str, Any]]:
    try:
        return atomic.read_jsonl(work / "trials.jsonl")
    except OSError:
        return []


def search_line(name: str, phase: str, work: Path, trials: int) -> str:
    """The status row of a local search: NAME PHASE TRIALS (started/most) BEST-TOP1, from trials.jsonl."""
    rows = _ledger(work)
    scores = [r["best_top1"] for r in rows if isinstance(r.get("best_top1"), int | float)]
    best = f"{max(scores):.4f}" if scores else ""
    return f"{name:<24} {phase:<10} {f'{len(rows)}/{trials}':<7} {best:<10}".rstrip()


def publish_search(work: Path, output: str) -> None:
    """Copy what a finished search promoted to the output: best.pth, best_config.yaml, trials.jsonl, search.json."""
    prefix = normalise_prefix(output)
    for name in (BEST_FILE, BEST_CONFIG_FILE, *SEARCH_FILES):
        if (work / name).is_file():
            if storage.is_s3(prefix):
                storage.upload(work / name, f"{prefix}{name}")
            else:
                atomic.copy_file(work / name, Path(prefix) / name)


def _searched_spec(spec: VideoTrainingJobSpec, output: str) -> VideoTrainingJobSpec:
    """A searched job's spec with its best trial's values of what an inference job inherits (best_config.yaml)."""
    try:
        best = yaml.safe_load(storage.read_text(f"{normalise_prefix(output)}{BEST_CONFIG_FILE}")) or {}
    except (AutoXError, OSError, yaml.YAMLError):
        return spec
    params = {k: best[k] for k in INHERITED_KEYS if k in best}
    if "num_class" in best:
        params["num_class"] = best["num_class"]
    model = {"backbone": best["backbone"]} if "backbone" in best else {}
    return spec.model_copy(
        update={
            "training": spec.training.model_copy(update=params),
            "model": spec.model.model_copy(update=model),
        }
    )


def _training_ref(manifest: Manifest) -> tuple[str, VideoTrainingJobSpec]:
    """(checkpoint, training spec) of the local run that spec.model.trainingJobRef names."""
    ref = manifest.spec.model.training_job_ref
    entry = find_run(TRAINING.kind, ref)
    field = f"{manifest.path}: spec.model.trainingJobRef {ref!r}"
    if entry is None:
        raise ConfigError(f"{field}: no local run of that name in {registry_path()}: run its manifest first")
    if entry.get("phase") != "Succeeded":
        raise ConfigError(f"{field}: the local run is {entry.get('phase')!r}, not Succeeded: run it to the end first")
    spec = VideoTrainingJobSpec.model_validate(entry["spec"])
    if spec.search is not None:  # the search promoted its best trial to output/best.pth
        return f"{normalise_prefix(entry['output'])}{BEST_FILE}", _searched_spec(spec, entry["output"])
    progress = read_progress(entry["output"]) or {}
    checkpoint = progress.get("best_checkpoint") or normalise_prefix(entry["output"])  # a prefix means its best.pth
    return checkpoint, spec


def _supervise(cmd: list[str], env: dict[str, str], log_path: Path, on_poll: Callable[[], None]) -> int:
    """Run `cmd` with its output in `log_path`, calling `on_poll` every poll interval; returns its exit code."""
    with open(log_path, "ab") as log:
        # Its own session: a terminal's Ctrl-C reaches only us, and we pass on exactly one SIGINT (a second
        # one would make the trainer stop at once instead of between iterations).
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                on_poll()
                try:
                    proc.wait(timeout=_poll_seconds())
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            proc.send_signal(2)  # SIGINT: the trainer stops at once; its checkpoints stay
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return proc.returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_manifest(
    path: str | Path,
    *,
    nproc: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    out: Callable[[str], None] = terminal.say,
) -> int:
    """Validate, build config.yaml, launch and supervise the run of a manifest; returns the exit code."""
    manifest = load_manifest(path)
    training = manifest.kind == TRAINING.kind
    searching = training and manifest.spec.search is not None
    run_dir = storage.cache_root() / "runs" / manifest.kind / manifest.name
    storage.configure(manifest.spec.storage.endpoint, manifest.spec.storage.region)  # our own reads of the output
    checkpoint, ref_spec = (None, None) if training or manifest.spec.model.checkpoint else _training_ref(manifest)
    if searching:
        # A local search keeps its Optuna study and the trials' checkpoints on this disk; the results it
        # promotes (best.pth, best_config.yaml, trials.jsonl) go to spec.output at the end, as on Kubernetes.
        search = manifest.spec.search.model_dump(mode="json", exclude_none=True)
        overrides = {"search": search, "work_dir": str(run_dir / "search"), **(overrides or {})}
    config = manifest_config(manifest, overrides=overrides, checkpoint=checkpoint, training=ref_spec)
    config_path = run_dir / "config.yaml"
    atomic.write_text(config_path, config.to_yaml())
    if dry_run:
        out(config.to_yaml().rstrip())
        return 0
    env = child_env(manifest)
    n = processes(manifest.spec.resources.gpus_per_replica, nproc)
    replicas = manifest.spec.resources.replicas
    output = manifest.spec.output
    out(f"config: {config_path}  log: {run_dir / 'run.log'}  local runs: {registry_path()}")
    if replicas > 1:
        out(f"note: spec.resources.replicas={replicas}: this machine runs one replica's work with all the data")
    command = "tune" if searching else "train" if training else "test"
    cmd = [sys.executable, "-m", "autox_video", command, "--config", str(config_path)]
    if n > 1:
        cmd += ["--nproc", str(n)]  # the CLI relaunches itself under torchrun (tune: per trial)
    fields: dict[str, Any] = {"manifest": str(manifest.path), "output": output, "config": str(config_path)}
    fields["spec"] = manifest.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    record_run(manifest.kind, manifest.name, phase="Running", processes=n, **fields)
    out(HEADER)
    last: list[str] = []
    shown_phase = [""]  # the phase of the last call
    bar = RunBar(manifest.name, searching=searching, enabled=training)

    def show(phase: str) -> None:
        if searching:
            work = Path(config.work_dir)
            line = search_line(manifest.name, phase, work, manifest.spec.search.trials)
            bar.search(_ledger(work), manifest.spec.search.trials)
        else:
            progress = read_progress(output) if training else None
            line = status_line(manifest.name, phase, progress)
            bar.training(progress)
        # With a bar drawn, a row per phase is enough: the bar shows the epochs (trials) in between.
        changed, shown_phase[0] = phase != shown_phase[0], phase
        if (not last or line != last[-1]) and (changed or not bar.drawn):
            last.append(line)
            out(line)

    show("Pending")
    try:
        code = _supervise(cmd, env, run_dir / "run.log", lambda: show("Running"))
    except KeyboardInterrupt:
        record_run(manifest.kind, manifest.name, phase="Suspended")
        show("Suspended")
        bar.close()
        raise
    if code == 0 and searching:
        publish_search(Path(config.work_dir), output)
    phase = "Succeeded" if code == 0 else "Failed"
    extra = {} if training else {"resultsUri": results_uri(output)}
    record_run(manifest.kind, manifest.name, phase=phase, exitCode=code, **extra)
    show(phase)
    bar.close()
    if code != 0:
        out(_tail(run_dir / "run.log"))
        out(f"{manifest.name}: {command} exited with {code}; log: {run_dir / 'run.log'}")
        return 1
    if not training:
        out(f"results: {results_uri(output)}")
    if searching:
        out(f"best: {normalise_prefix(output)}{BEST_FILE} (config: {normalise_prefix(output)}{BEST_CONFIG_FILE})")
    return 0
