"""Fault injection: SIGKILL at many moments (inside checkpoint writes too), a full disk, damaged checkpoints.

After every kill the files on disk must be whole, and the same command must finish the run with each
epoch in metrics.jsonl exactly once and best.pth holding the best epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tinyrun import REPO, cli, make_tiny_dataset, s3_config, upload_tree, write_config

from autox_video.storage import atomic
from autox_video.training.checkpoints import unreadable_reason

pytestmark = pytest.mark.slow

FAULTY = [sys.executable, str(REPO / "tests" / "faulty_cli.py")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), per_class=3)


def _temps(folder: Path, name: str) -> list[Path]:
    return [p for d in (folder, folder / "lists") if d.is_dir() for p in d.glob(f".{name}*{atomic.TMP_MARK}*")]


Moment = Callable[[Path, float], bool]  # (work dir, seconds since start) -> kill now?


def after(seconds: float) -> Moment:
    return lambda work, t: t >= seconds


def writing(name: str, nth: int = 1, extra: float = 0.0) -> Moment:
    """While the nth temporary file of `name` (a glob) of this run exists (+extra s: its bytes complete)."""
    seen: list[float] = []
    last: set[Path] = set()

    def moment(work: Path, t: float) -> bool:
        nonlocal last
        now = set(_temps(work, name))
        if now - last:
            seen.append(t)
        last = now
        return len(seen) >= nth and t >= seen[nth - 1] + extra and bool(now)

    return moment


def marked(marks: Path, name: str) -> Moment:
    return lambda work, t: (marks / f"upload-{name}").exists()


def _run_until(cmd: list[str], env: dict[str, str], work: Path, moment: Moment) -> tuple[int, str]:
    """Run `cmd` and SIGKILL its process group at `moment`; (return code, the end of its log)."""
    log = work.parent / "killed-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, text=True, start_new_session=True)
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 300:
            if moment(work, time.monotonic() - start):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
    return proc.returncode, log.read_text()[-3000:]


def _assert_files_whole(work: Path) -> None:
    """What a reader (a resume, the operator, a person) finds after a kill: nothing torn but a last JSON line."""
    for pth in work.glob("*.pth"):
        assert unreadable_reason(pth) is None, f"{pth.name} is torn"
    if (work / "last_checkpoint").is_file():
        assert unreadable_reason(work / Path((work / "last_checkpoint").read_text()).name) is None
    for name in ("progress.json", "config.yaml", "classes.txt", "skipped.txt", "lists/train.jsonl"):
        if (work / name).is_file():
            text = (work / name).read_text()
            assert not text or text.endswith("\n"), f"{name} is torn"
            if name == "progress.json":
                json.loads(text)
    atomic.read_jsonl(work / "metrics.jsonl")  # a torn last line is allowed, anything else raises


def _assert_finished_run(work: Path, epochs: int, metrics: list[dict], best: dict) -> None:
    assert [r["epoch"] for r in metrics] == list(range(1, epochs + 1))  # each epoch exactly once
    best_row = max(metrics, key=lambda r: (r["top1"], -r["epoch"]))
    assert best["meta"]["epoch"] == best_row["epoch"]


def test_sigkill_at_many_moments_inside_writes_then_the_same_command_finishes(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=8)
    cmd = [*FAULTY, "train", "--config", str(config)]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "AUTOX_TEST_WRITE_DELAY": "0.4",
        "AUTOX_TEST_SLOW_NAMES": "pth,last_checkpoint,progress.json,metrics.jsonl,config.yaml,train.jsonl",
    }
    # Each rerun resumes where the last kill left it, so the moments are counted within each run:
    # "the first epoch checkpoint this run writes" falls later in the whole run at each kill.
    moments: list[tuple[str, Moment, str | None]] = [  # (what, when, the file whose write it must land in)
        ("during start-up", after(2.0), None),
        ("writing config.yaml", writing("config.yaml"), "config.yaml"),
        ("writing the sample list", writing("train.jsonl"), "train.jsonl"),
        ("staging the epoch's best weights", writing("best.pending.epoch_*.pth"), "best.pending.epoch_*.pth"),
        ("writing an epoch checkpoint, half written", writing("epoch_*.pth"), "epoch_*.pth"),
        ("an epoch checkpoint written, not renamed", writing("epoch_*.pth", extra=0.5), "epoch_*.pth"),
        ("writing the last_checkpoint pointer", writing("last_checkpoint"), "last_checkpoint"),
        ("writing progress.json after an epoch", writing("progress.json", nth=2), "progress.json"),
        ("appending to metrics.jsonl", lambda w, t: t > 1 and _torn(w), None),
        ("writing the next epoch checkpoint", writing("epoch_*.pth"), "epoch_*.pth"),
        ("writing the pointer after it", writing("last_checkpoint"), "last_checkpoint"),
        ("a moment 9 s into a run", after(9.0), None),
        ("an epoch checkpoint's bytes complete", writing("epoch_*.pth", extra=0.45), "epoch_*.pth"),
        ("writing the second epoch checkpoint of a run", writing("epoch_*.pth", nth=2), "epoch_*.pth"),
    ]
    for what, moment, inside in moments:
        code, log = _run_until(cmd, env, work, moment)
        assert code == -signal.SIGKILL, f"{what}: the run was not alive to be killed:\n{log}"
        if inside:
            assert _temps(work, inside), f"{what}: the kill missed the write"
        _assert_files_whole(work)

    done = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [p for p in work.rglob(".*") if atomic.TMP_MARK in p.name]  # stale temporaries cleaned up
    assert not list(work.glob("*.corrupt"))  # nothing was ever torn, so nothing was moved aside
    metrics = atomic.read_jsonl(work / "metrics.jsonl")
    best = torch.load(work / "best.pth", map_location="cpu", weights_only=True)
    _assert_finished_run(work, 8, metrics, best)
    progress = json.loads((work / "progress.json").read_text())
    assert progress["phase"] == "succeeded" and progress["best_epoch"] == best["meta"]["epoch"]


def _torn(work: Path) -> bool:
    path = work / "metrics.jsonl"
    return path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")


def test_sigkill_during_s3_uploads_then_a_fresh_pod_finishes(s3_server, s3_env, bucket, dataset, tmp_path) -> None:
    client = s3_server.client()
    upload_tree(client, bucket, dataset.root, "data")
    config = s3_config(tmp_path, dataset, bucket, epoch=3)
    marks = tmp_path / "marks"
    marks.mkdir()
    cmd = [*FAULTY, "train", "--config", str(config)]
    moments = [
        ("uploading epoch_1.pth", marked(marks, "epoch_1.pth")),
        ("uploading metrics.jsonl", marked(marks, "metrics.jsonl")),
        ("uploading best.pth", marked(marks, "best.pth")),
        ("uploading epoch_2.pth", marked(marks, "epoch_2.pth")),
        ("uploading progress.json", marked(marks, "progress.json")),
        ("uploading epoch_3.pth", marked(marks, "epoch_3.pth")),
    ]
    for i, (what, moment) in enumerate(moments):
        # Every other restart lands on a new node: an empty disk that must restore from S3.
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "AUTOX_TEST_WRITE_DELAY": "0.5",
            "AUTOX_TEST_MARKS": str(marks),
            "AUTOX_CACHE_DIR": str(tmp_path / f"disk{i // 2}"),
        }
        code, log = _run_until(cmd, env, tmp_path / "run", moment)
        assert code == -signal.SIGKILL, f"{what}: the run was not alive to be killed:\n{log}"
        for mark in marks.iterdir():
            mark.unlink()

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "AUTOX_CACHE_DIR": str(tmp_path / "last-disk")}
    done = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    body = client.get_object(Bucket=bucket, Key="runs/r1/metrics.jsonl")["Body"].read().decode()
    metrics = [json.loads(line) for line in body.splitlines() if line.strip()]
    client.download_file(bucket, "runs/r1/best.pth", str(tmp_path / "best.pth"))
    best = torch.load(tmp_path / "best.pth", map_location="cpu", weights_only=True)
    _assert_finished_run(tmp_path, 3, metrics, best)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_the_rerun_resumes(dataset, tmp_path: Path) -> None:
    """A real small filesystem (tmpfs) filled up after epoch 1; where mounting is not allowed, an injected ENOSPC."""
    disk = tmp_path / "disk"
    real = _tmpfs(disk, "24m")
    try:
        work = disk / "run"
        config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if real:
            proc = subprocess.Popen(
                [sys.executable, "-m", "autox_video", "train", "--config", str(config)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            while proc.poll() is None and not (work / "last_checkpoint").is_file():
                time.sleep(0.02)
            free = shutil.disk_usage(disk).free
            (disk / "filler").write_bytes(b"\0" * max(0, free - 64 * 1024))  # room for JSON, not for weights
            out, err = proc.communicate(timeout=600)
        else:
            done = subprocess.run(
                [*FAULTY, "train", "--config", str(config)],
                env={**env, "AUTOX_TEST_ENOSPC": "epoch_2.pth"},
                text=True,
                capture_output=True,
                timeout=600,
            )
            err = done.stderr
            proc = done  # type: ignore[assignment]
        assert proc.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("autox-video: error: ") and "no space left on the device" in last, last
        assert ".pth" in last and "run the same command again" in last
        assert "Traceback" not in err
        assert unreadable_reason(work / "epoch_1.pth") is None  # the last complete checkpoint still loads
        assert not [p for p in work.rglob(".*") if atomic.TMP_MARK in p.name]  # the failed write cleaned up

        (disk / "filler").unlink(missing_ok=True)
        again = cli("train", "--config", str(config))
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resuming from" in again.stdout + again.stderr
        metrics = atomic.read_jsonl(work / "metrics.jsonl")
        best = torch.load(work / "best.pth", map_location="cpu", weights_only=True)
        _assert_finished_run(work, 3, metrics, best)
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)])


def test_a_truncated_newest_checkpoint_is_moved_aside_and_the_previous_one_resumed(dataset, tmp_path: Path) -> None:
    """As mmengine's in-place writes used to leave it after a kill: the run must not stay dead."""
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=2)
    first = cli("train", "--config", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    data = (work / "epoch_2.pth").read_bytes()
    (work / "epoch_2.pth").write_bytes(data[: len(data) // 3])
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=2)
    again = cli("train", "--config", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "epoch_2.pth: unreadable checkpoint" in log and "moved aside to epoch_2.pth.corrupt" in log
    assert "resuming from epoch_1.pth" in log
    assert (work / "epoch_2.pth.corrupt").is_file() and unreadable_reason(work / "epoch_2.pth") is None
    metrics = atomic.read_jsonl(work / "metrics.jsonl")
    best = torch.load(work / "best.pth", map_location="cpu", weights_only=True)
    _assert_finished_run(work, 2, metrics, best)


def test_a_second_train_on_a_live_work_dir_is_refused_naming_the_first(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3)
    slow = {**os.environ, "AUTOX_TEST_WRITE_DELAY": "1.0"}  # ~10 s per epoch: still running when the second starts
    cmd = [*FAULTY, "train", "--config", str(config)]
    first = subprocess.Popen(
        cmd, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not (work / "progress.json").is_file() and time.time() < deadline:
            time.sleep(0.1)
        second = cli("train", "--config", str(config))
        assert second.returncode == 2
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"autox-video: error: {work} is in use by another run (autox-video train, pid ")
        assert f"pid {first.pid} on host" in line
        assert first.poll() is None  # and the first run was not disturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    third = cli("train", "--config", str(config))  # the first one died: its lock is taken over
    assert third.returncode == 0, third.stderr[-3000:]
