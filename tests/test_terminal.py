"""What a run shows: bars on a terminal (a real pseudo-terminal), plain greppable lines through a pipe,
mmengine's own lines only with --verbose, and no warning the user cannot act on."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import warnings
from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, write_config

from autox_video import terminal, warning_filters

# Lines a user can do nothing about: library notices, deprecations, Python's warning format.
UNACTIONABLE = re.compile(
    r"warn\(|Warning:|MultiScaleDeformableAttention|mmcv-lite|meshgrid|deprecated|FileClient|HardDiskBackend"
)
MMENGINE_LINE = re.compile(r"mmengine - (INFO|WARNING)|Epoch\(train\)|Epoch\(val\)")


def in_pty(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run `python -m autox_video ARGS` with stdin/stdout/stderr on a 120x40 pseudo-terminal; its whole output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "autox_video", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        close_fds=True,
    )
    os.close(slave)
    shown = read_all(master)
    return proc.wait(timeout=timeout), shown


def read_all(master: int) -> str:
    """Everything written to a pty whose other end is closed (one read may hand over only a piece); closes it."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed and everything has been read
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # 4 per class: 12 training videos, 3 iterations of 4 per epoch.
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), per_class=4)


@pytest.fixture(scope="module")
def piped(dataset, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A plain `train` through pipes (as in a pod or CI), 2 epochs, a line every 2 iterations."""
    tmp = tmp_path_factory.mktemp("piped")
    config = write_config(tmp / "config.yaml", dataset, tmp / "run", epoch=2, log_interval=2)
    res = cli("train", "--config", str(config), env={"AUTOX_PROGRESS": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def tty(dataset, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """`train` then `test` on a terminal: (train output, test output)."""
    tmp = tmp_path_factory.mktemp("tty")
    config = write_config(tmp / "config.yaml", dataset, tmp / "run", epoch=2, log_interval=2)
    code, trained = in_pty("train", "--config", str(config), env={"AUTOX_PROGRESS": ""})
    assert code == 0, trained[-3000:]
    code, tested = in_pty("test", "--config", str(config), env={"AUTOX_PROGRESS": ""})
    assert code == 0, tested[-3000:]
    return trained, tested


def test_train_on_a_terminal_redraws_a_bar_per_epoch_with_loss_and_val_top1(tty) -> None:
    trained, _ = tty
    # tqdm redraws in place: carriage returns, epoch x/N, iterations of the epoch, rate and ETA.
    assert "\r" in trained
    for epoch in (1, 2):
        assert re.search(rf"\repoch {epoch}/2: 100%\|[^\r]*\| 3/3 \[\d\d:\d\d<\d\d:\d\d, *[\d.]+(it/s|s/it)", trained)
    assert re.search(r"epoch 1/2: 100%[^\r]*loss=\d\.\d{4}, val_top1=\d\.\d{4}\]", trained)
    # The second epoch's bar carries the first one's validation top-1 from its start.
    assert re.search(r"\repoch 2/2:   0%[^\r]*val_top1=\d\.\d{4}\]", trained)
    assert "done: 2 epochs, best val top-1" in trained
    assert not MMENGINE_LINE.search(trained)  # no --verbose
    assert "epoch 1/2 iter " not in trained  # the plain lines are for pipes


def test_test_on_a_terminal_draws_a_bar_over_batches(tty) -> None:
    _, tested = tty
    assert re.search(r"\rtest: 100%\|[^\r]*\| (\d+)/\1 \[[^\r]*(batch/s|s/batch)", tested)
    assert "results: " in tested and "top1: " in tested


def test_train_through_a_pipe_prints_plain_lines_every_log_interval_and_per_validation(piped) -> None:
    out = piped.stdout + piped.stderr
    assert "\r" not in out  # no bar redraws in a log
    iters = re.findall(r"^epoch (\d)/2 iter (\d)/3 loss \d\.\d{4} eta \d+:\d\d:\d\d$", piped.stdout, re.M)
    # Every log_interval (2) iterations and at each epoch's last one.
    assert iters == [("1", "2"), ("1", "3"), ("2", "2"), ("2", "3")]
    vals = re.findall(r"^epoch (\d)/2 validation top-1 \d\.\d{4} top-5 \d\.\d{4} \(best \d\.\d{4}, epoch \d\)$",
                      piped.stdout, re.M)  # fmt: skip
    assert vals == ["1", "2"]
    assert not MMENGINE_LINE.search(out)  # mmengine's own lines only with --verbose
    assert "done: 2 epochs" in piped.stdout


def test_verbose_lets_mmengine_lines_through(dataset, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", dataset, tmp_path / "run", epoch=1, log_interval=2)
    res = cli("train", "--config", str(config), "--verbose")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Epoch(train) [1][2/3]" in res.stdout and "Epoch(val) [1][" in res.stdout
    assert re.search(r"^epoch 1/1 validation top-1", res.stdout, re.M)  # ours as well
    # Even verbose, mmengine's FileClient notices and the import warnings stay out.
    for notice in ("FileClient", "HardDiskBackend", "MultiScaleDeformableAttention", "meshgrid", "warn("):
        assert notice not in res.stdout + res.stderr


@pytest.mark.parametrize("mode", ["piped", "tty"])
def test_whole_train_output_has_no_warning_the_user_cannot_act_on(mode: str, request: pytest.FixtureRequest) -> None:
    got = request.getfixturevalue(mode)
    out = got.stdout + got.stderr if mode == "piped" else got[0]
    bad = [line for line in out.splitlines() if UNACTIONABLE.search(line)]
    assert bad == []
    # What the user can act on still shows (tiny config: 32 px pads Swin's windows).
    assert "img_size 28 tiles them exactly" in out


def test_prepare_draws_a_bar_over_files_on_a_terminal_and_none_in_a_pipe(dataset, tmp_path: Path) -> None:
    args = ("prepare", str(dataset.data_root), "--short-side", "32", "--workers", "1")
    code, out = in_pty(*args[:2], str(tmp_path / "tty"), *args[2:], env={"AUTOX_PROGRESS": ""})
    assert code == 0, out[-3000:]
    assert re.search(r"\rprepare: 100%\|[^\r]*\| (\d+)/\1 \[[^\r]*(video/s|s/video)", out)
    piped = cli(*args[:2], str(tmp_path / "piped"), *args[2:], env={"AUTOX_PROGRESS": ""})
    assert piped.returncode == 0 and "\r" not in piped.stdout + piped.stderr
    assert "prepared " in piped.stdout


def test_bars_only_on_a_terminal_of_rank_0_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    read_end, write_end = os.pipe()
    with os.fdopen(slave, "w") as term, os.fdopen(write_end, "w") as pipe:
        monkeypatch.delenv("RANK", raising=False)
        monkeypatch.delenv(terminal.PROGRESS_ENV, raising=False)
        assert terminal.draw_bars(term) and not terminal.draw_bars(pipe)
        for off in ("0", "plain", "off"):
            monkeypatch.setenv(terminal.PROGRESS_ENV, off)
            assert not terminal.draw_bars(term)
        monkeypatch.setenv(terminal.PROGRESS_ENV, "1")
        assert terminal.draw_bars(term)
        monkeypatch.setenv("RANK", "1")
        assert not terminal.draw_bars(term)
        # Off a terminal, a bar is an object whose calls do nothing.
        monkeypatch.setattr(sys, "stderr", pipe)
        monkeypatch.setenv("RANK", "0")
        quiet = terminal.bar(3, "x")
        quiet.update(2)
        quiet.set_postfix(loss="1.0")
        quiet.close()
        assert quiet.n == 2 and type(quiet).__name__ == "_NoBar"
    os.close(master)
    os.close(read_end)


def test_warning_filters_silence_only_the_listed_warnings_of_their_module() -> None:
    mmcv_msg = "Fail to import ``MultiScaleDeformableAttention`` from ``mmcv.ops.multi_scale_deform_attn``"
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        warning_filters.install()
        warnings.warn_explicit(mmcv_msg, UserWarning, "transformer.py", 33, module="mmcv.cnn.bricks.transformer")
        warnings.warn_explicit("torch.meshgrid: in an upcoming release, it will", UserWarning, "f.py", 1,
                               module="torch.functional")  # fmt: skip
        assert seen == []
        # The same text from another module, another warning of mmcv, another category: all still shown.
        warnings.warn_explicit(mmcv_msg, UserWarning, "mine.py", 1, module="my_project")
        warnings.warn_explicit(
            "something else", UserWarning, "transformer.py", 40, module="mmcv.cnn.bricks.transformer"
        )
        warnings.warn_explicit(mmcv_msg, DeprecationWarning, "transformer.py", 33, module="mmcv.cnn.bricks.transformer")
        assert len(seen) == 3


def test_run_bar_follows_progress_json_and_a_search_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    from autox_video.runlocal.run_bar import RunBar

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    monkeypatch.delenv(terminal.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with os.fdopen(slave, "w") as term:
        monkeypatch.setattr(sys, "stderr", term)
        job = RunBar("tinyjob", searching=False)
        assert job.drawn
        job.training(None)  # no progress.json yet
        job.training({"epoch": 1, "total_epochs": 3, "best_top1": 0.5})
        job.close()
        search = RunBar("tinysearch", searching=True)
        search.search([{"state": "succeeded", "best_top1": 0.75}, {"state": "running"}], trials=4)
        search.close()
        assert not RunBar("predict", searching=False, enabled=False).drawn
    shown = read_all(master)
    assert re.search(r"tinyjob:  33%\|[^\r]*\| 1/3 [^\r]*best_top1=0\.5000\]", shown)
    assert re.search(r"tinysearch:  25%\|[^\r]*\| 1/4 [^\r]*best_top1=0\.7500\]", shown)


@pytest.mark.slow
def test_tune_on_a_terminal_draws_a_bar_over_trials_with_the_best_so_far(dataset, tmp_path: Path) -> None:
    search = dict(sampler="grid", space={"lr": [2e-3]})  # one grid point: the bar's total is 1, not 20
    config = write_config(tmp_path / "config.yaml", dataset, tmp_path / "search", epoch=1, search=search)
    code, out = in_pty("tune", "--config", str(config), env={"AUTOX_PROGRESS": ""})
    assert code == 0, out[-3000:]
    assert re.search(r"\rtrials: 100%\|[^\r]*\| 1/1 [^\r]*best=\d\.\d{4} \(trial 0\)\]", out)
    # The trial lines are written where the bar was cleared ("\r   \r"), each on its own line.
    assert re.search(r" \rtrial 0 succeeded: best top-1 \d\.\d{4}\r\n", out)
    assert not MMENGINE_LINE.search(out) and not UNACTIONABLE.search(out)


@pytest.mark.slow
def test_run_on_a_terminal_draws_the_jobs_epochs_and_a_row_per_phase(
    dataset, s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    import yaml
    from test_run_manifest import TINY_SETS, training_manifest
    from tinyrun import upload_tree

    upload_tree(s3_server.client(), bucket, dataset.root, "data")
    manifest = tmp_path / "vtj.yaml"
    manifest.write_text(yaml.safe_dump(training_manifest(bucket, s3_server.endpoint_url, epochs=2)))
    env = {"AUTOX_CACHE_DIR": str(tmp_path / "cache"), "AUTOX_RUN_POLL_SECONDS": "0.5", "AUTOX_PROGRESS": ""}
    code, out = in_pty("run", str(manifest), *TINY_SETS, env=env)
    assert code == 0, out[-3000:]
    assert re.search(r"\rtiny: 100%\|[^\r]*\| 2/2 [^\r]*best_top1=\d\.\d{4}\]", out)
    rows = [line.split()[:2] for line in out.replace("\r", "\n").splitlines() if line.startswith("tiny ")]
    assert rows == [["tiny", "Pending"], ["tiny", "Running"], ["tiny", "Succeeded"]]  # the bar shows the rest
    assert not UNACTIONABLE.search(out)
