"""Crash-safe files without training: atomic writes, torn JSON lines, the work-dir lock, location checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autox_video.config import build_config
from autox_video.errors import ConfigError, StorageError
from autox_video.storage import atomic
from autox_video.storage.locations import check_file_target, check_folder
from autox_video.storage.lock import WorkDirBusy, hold_work_dir
from autox_video.training.checkpoints import resumable_checkpoint, unreadable_reason


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    atomic.write_json(path, {"epoch": 1})
    with pytest.raises(RuntimeError), atomic.atomic_open(path) as f:
        f.write('{"epoch": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_a_kill_mid_write_never_tears_the_target(tmp_path: Path) -> None:
    """A real SIGKILL while the bytes are being written: the target is the old version, whole."""
    target = tmp_path / "epoch_1.pth"
    atomic.torch_save({"state_dict": {"w": torch.ones(3)}}, target)
    script = (
        "import sys, time\n"
        "from autox_video.storage import atomic\n"
        "with atomic.atomic_open(sys.argv[1], 'wb') as f:\n"
        "    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert unreadable_reason(target) is None
    leftovers = [p for p in tmp_path.iterdir() if atomic.TMP_MARK in p.name]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 100000  # the kill landed inside the write
    assert atomic.remove_stale_temps(tmp_path) == leftovers and not leftovers[0].exists()


def test_a_torn_last_json_line_is_skipped_then_repaired_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "top1": 0.5}\n{"epoch": 2, "to')
    assert atomic.read_jsonl(path) == [{"epoch": 1, "top1": 0.5}]
    atomic.append_jsonl(path, {"epoch": 2, "top1": 0.6})
    assert atomic.read_jsonl(path) == [{"epoch": 1, "top1": 0.5}, {"epoch": 2, "top1": 0.6}]
    assert path.read_text().count("\n") == 2


def test_a_damaged_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(StorageError, match=r"metrics.jsonl:2: not a JSON line"):
        atomic.read_jsonl(path)


def test_enospc_is_one_line_and_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "epoch_1.pth"
    atomic.write_bytes(path, b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "_fsync", full)
    with pytest.raises(StorageError) as err:
        atomic.write_bytes(path, b"new")
    assert "no space left on the device" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]


def _checkpoint(path: Path, epoch: int) -> Path:
    torch.save({"meta": {"epoch": epoch}, "state_dict": {"w": torch.full((4,), float(epoch))}}, path)
    return path


def test_resume_moves_unreadable_checkpoints_aside_and_uses_the_newest_complete_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for e in (1, 2, 3, 4):
        _checkpoint(tmp_path / f"epoch_{e}.pth", e)
    data = (tmp_path / "epoch_4.pth").read_bytes()
    (tmp_path / "epoch_4.pth").write_bytes(data[: len(data) // 2])  # truncated by a kill (mmengine in place)
    (tmp_path / "epoch_3.pth").write_bytes(b"")  # zero bytes
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_4.pth"))
    with caplog.at_level("WARNING", logger="autox_video"):
        assert resumable_checkpoint(tmp_path) == tmp_path / "epoch_2.pth"
    assert (tmp_path / "epoch_4.pth.corrupt").is_file() and (tmp_path / "epoch_3.pth.corrupt").is_file()
    assert not (tmp_path / "epoch_4.pth").exists()
    assert any("epoch_3.pth: unreadable checkpoint (empty file)" in r.message for r in caplog.records)
    assert any("resuming from epoch_2.pth" in r.message for r in caplog.records)


def test_nothing_loadable_left_means_a_fresh_start_said_clearly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "epoch_1.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level("WARNING", logger="autox_video"):
        assert resumable_checkpoint(tmp_path) is None
    assert "training starts from the beginning" in caplog.text
    assert resumable_checkpoint(tmp_path / "nothing-here") is None


def test_a_second_holder_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from autox_video.storage.lock import hold_work_dir\n"
        "with hold_work_dir(sys.argv[1], command='autox-video train'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(WorkDirBusy) as err, hold_work_dir(tmp_path):
            pass
        message = str(err.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message and "autox-video train" in message
        assert err.value.exit_code == 2 and "\n" not in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    start = time.monotonic()
    with hold_work_dir(tmp_path):  # the holder died: its lock is stale
        assert json.loads((tmp_path / ".autox.lock").read_text())["pid"] == os.getpid()
    assert time.monotonic() - start < 5
    assert not (tmp_path / ".autox.lock").exists()  # released: the work dir is as it was


def test_the_lock_file_goes_when_the_block_ends_by_an_error_or_not(tmp_path: Path) -> None:
    with pytest.raises(ValueError), hold_work_dir(tmp_path):
        raise ValueError("stop")
    assert list(tmp_path.iterdir()) == []
    with hold_work_dir(tmp_path):
        assert [p.name for p in tmp_path.iterdir()] == [".autox.lock"]
    assert list(tmp_path.iterdir()) == []


def test_locations_that_are_files_below_files_or_unwritable_are_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"^work_dir .*afile: is a file, not a folder"):
        check_folder("work_dir", afile)
    with pytest.raises(ConfigError, match=r"^work_dir .*afile/run: .*afile is a file, so no folder can be made"):
        check_folder("work_dir", afile / "run")
    with pytest.raises(ConfigError, match=r"^work_dir /sys/autox-test/run: cannot write there"):
        check_folder("work_dir", "/sys/autox-test/run")
    with pytest.raises(ConfigError, match=r"^test_results_path .*: is a folder: give a file path"):
        check_file_target("test_results_path", tmp_path)
    assert check_folder("work_dir", tmp_path / "new" / "run").is_dir()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3:/bucket/run", "is not an S3 URI: write it as s3://BUCKET/KEY"),
        ("S3://bucket/run", "is not an S3 URI"),
        ("s3://My_Bucket/run", "'My_Bucket' is not a bucket name"),
    ],
)
def test_malformed_s3_uris_are_rejected_when_the_config_loads(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"work_dir": value}, source="config.yaml")
    assert str(err.value).startswith(f"config.yaml: work_dir={value!r}") and message in str(err.value)
    assert build_config({"work_dir": "s3://bucket"}).work_dir == "s3://bucket"


def test_one_setting_under_two_names_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"config.yaml: 'epoch' and 'epochs' both set epoch; keep one"):
        build_config({"epoch": 3, "epochs": 5}, source="config.yaml")
    with pytest.raises(ConfigError, match=r"'videos_per_gpu' and 'batch_size' both set videos_per_gpu"):
        build_config({"videos_per_gpu": 3, "batch_size": 5}, source="config.yaml")
    assert build_config({"epochs": 5}, {"epoch": 2}).epoch == 2  # a flag over the file is precedence, not a clash
