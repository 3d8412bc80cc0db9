"""`autox-video tune`: the search space, budget and ledger (fast), then real searches on real videos (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from tinyrun import TINY, cli, make_tiny_dataset, write_config

from autox_video import cli as cli_module
from autox_video.config import build_config
from autox_video.search import ledger
from autox_video.search import space as sp
from autox_video.search.tune import make_slots, ranked_table, why_not_start
from autox_video.spec.search import SearchConfig

# --- the search: section -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"space": {"lrr": [0.1, 0.2]}}, "search.space.lrr: unknown config key 'lrr'; did you mean 'lr'?"),
        ({"space": {"lr": {"low": 0.01, "high": 0.0001}}}, "search.space.lr: inverted range: low 0.01 > high 0.0001"),
        ({"space": {"weight_decay": {"low": 0.1, "high": 0.1}}}, "search.space.weight_decay: empty range"),
        ({"space": {"img_size": [224, "big"]}}, "search.space.img_size: 'big' is not a valid img_size"),
        ({"space": {"backbone": ["swin_t", "swin_xl"]}}, "search.space.backbone: 'swin_xl' is not a valid backbone"),
        ({"space": {"clip": [{"clip_len": 16, "frame_interval": 4}, {"clip_len": 8}]}}, "search.space.clip: every"),
        ({"space": {"lr": {"low": 0, "high": 0.1, "log": True}}}, "search.space.lr: log scale needs low > 0"),
        ({"space": {"epoch": [2, 4]}}, "search.space.epoch: epoch cannot be searched"),
        ({"sampler": "grid", "space": {"lr": {"low": 1e-4, "high": 1e-2}}}, "sampler grid needs choices or a step"),
        ({"sampler": "bayes"}, "search.sampler='bayes': Input should be 'tpe', 'random', 'grid' or 'nsga2'"),
        ({"trials": 0}, "search.trials=0: Input should be greater than or equal to 1"),
    ],
)
def test_space_errors_are_one_line_naming_the_key_exit_2(tmp_path: Path, capsys, search: dict, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"ann_file_train": "train.txt", "search": search}))
    code = cli_module.main(["tune", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"autox-video: error: {config}: "), err
    assert message in err


def test_space_becomes_optuna_distributions_and_trial_overrides() -> None:
    cfg = build_config(
        dict(
            TINY,
            search=dict(
                space=dict(
                    lr={"low": "1e-4", "high": 1e-2, "log": True},  # YAML reads 1e-4 as text: still a float
                    clip=[{"clip_len": 8, "frame_interval": 2}, {"clip_len": 16, "frame_interval": 4}],
                    img_size=[32, 64],
                    warmup_epochs={"low": 0, "high": 3, "type": "int"},
                    drop_path_rate={"low": 0.0, "high": 0.3},
                )
            ),
        )
    )
    assert isinstance(cfg.search, SearchConfig) and cfg.search.space is not None
    dists = sp.distributions(cfg.search.space)
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["clip"].choices == ("clip_len=8,frame_interval=2", "clip_len=16,frame_interval=4")
    assert dists["img_size"].choices == (32, 64)
    assert dists["warmup_epochs"] == optuna.distributions.IntDistribution(0, 3)
    over = sp.overrides(cfg.search.space, {"clip": "clip_len=16,frame_interval=4", "lr": 0.003, "img_size": 64})
    assert over == {"clip_len": 16, "frame_interval": 4, "lr": 0.003, "img_size": 64}
    # The config itself lies in the space (trial 0) ...
    params = sp.params_of(cfg.search.space, cfg)
    assert params == {
        "lr": TINY["lr"],
        "clip": "clip_len=8,frame_interval=2",
        "img_size": 32,
        "warmup_epochs": 0,
        "drop_path_rate": 0.0,
    }
    # ... unless one of its values does not.
    assert sp.params_of(cfg.search.space, cfg.model_copy(update={"img_size": 48})) is None


def test_auto_space_per_device_is_printed_and_holds_the_defaults() -> None:
    cfg = build_config({"search": "auto"})
    assert cfg.search == "auto"
    gpu, notes = sp.auto_space(cfg.model_copy(update={"pretrained": "none"}), cuda=True)
    assert set(gpu) == {"backbone", "lr", "backbone_lr_mult", "weight_decay", "drop_path_rate", "warmup_epochs"}
    assert gpu["backbone"].choices == ["swin_t", "swin_s", "swin_b"] and not notes
    assert sp.params_of(gpu, cfg) is not None  # every default of Config is inside: trial 0 is the default recipe
    cpu, _ = sp.auto_space(cfg, cuda=False)
    assert cpu["backbone"].choices == [
        "swin_micro",
        "swin_mini",
        "tsm_tiny",
        "x3d_tiny",
        "uniformerv2_tiny",
        "videomae_tiny",
    ]
    lines = sp.describe(cpu)
    assert "  backbone: one of swin_micro, swin_mini, tsm_tiny, x3d_tiny, uniformerv2_tiny, videomae_tiny" in lines
    assert any(line.startswith("  lr: float 0.0003 .. 0.01 (log)") for line in lines)
    # One pretrained file fits one size: the backbone is then kept, and the note says why.
    fixed, notes = sp.auto_space(cfg.model_copy(update={"pretrained": "swin_b.pth"}), cuda=True)
    assert "backbone" not in fixed and "swin_b" in notes[0]


def test_a_trial_on_another_family_takes_its_defaults_but_keeps_what_the_user_set(tmp_path: Path) -> None:
    from autox_video import families
    from autox_video.search.tune import Search

    space = {"backbone": ["swin_micro", "tsm_r50", "tsm_tiny"]}
    base = {k: v for k, v in TINY.items() if k in ("backbone", "pretrained", "img_size", "evaluation")}
    left = Search(build_config(dict(base, work_dir=str(tmp_path / "a"), search={"space": space})), SearchConfig())
    tsm = left.trial_config(1, {"backbone": "tsm_tiny"})
    want = families.family_defaults("tsm_tiny")
    assert (tsm.clip_len, tsm.frame_interval, tsm.lr) == (want["clip_len"], want["frame_interval"], want["lr"])
    assert tsm.drop_path_rate == want["drop_path_rate"] and tsm.img_size == 32  # the user's img_size stays
    r50 = left.trial_config(2, {"backbone": "tsm_r50", "lr": 0.3})  # the space's value wins
    assert (r50.lr, r50.clip_len, r50.weight_decay) == (0.3, 8, families.family_defaults("tsm_r50")["weight_decay"])
    # Back on Swin: Config's own (Swin's) defaults, not tsm's.
    swin = Search(
        build_config(dict(base, backbone="tsm_tiny", work_dir=str(tmp_path / "b"), search={"space": space})),
        SearchConfig(),
    ).trial_config(1, {"backbone": "swin_micro"})
    assert (swin.lr, swin.clip_len, swin.drop_path_rate) == (1e-3, None, 0.2)
    user = dict(base, lr=2e-3, clip_len=6, work_dir=str(tmp_path / "c"), search={"space": space})
    kept = Search(build_config(user), SearchConfig()).trial_config(1, {"backbone": "tsm_r50"})
    assert (kept.lr, kept.clip_len, kept.frame_interval) == (2e-3, 6, 1)  # the user's lr and clip_len win


def test_asha_rungs_scale_with_epoch() -> None:
    assert sp.rungs(SearchConfig(), build_config({"epoch": 30})).epochs(30) == [4, 12]
    assert sp.rungs(SearchConfig(), build_config({"epoch": 3, "evaluation": 1})).epochs(3) == [1]
    assert sp.rungs(SearchConfig(), build_config({"epoch": 8, "evaluation": 2})).epochs(8) == [2, 6]
    assert sp.rungs(SearchConfig(min_epochs=2), build_config({"epoch": 3})).epochs(3) == [2]


def test_no_trial_starts_that_the_budget_cannot_hold() -> None:
    search = SearchConfig(trials=10, budget={"trial_epochs": 10, "hours": 1})
    common = dict(epoch=3, grid_size=None, elapsed_s=0.0, est_trial_s=None)
    assert why_not_start(search, started=2, used_epochs=4, reserved_epochs=3, **common) is None  # 4 + 3 + 3 = 10
    assert "trial-epochs" in why_not_start(search, started=3, used_epochs=5, reserved_epochs=3, **common)
    assert "trials started" in why_not_start(search, started=10, used_epochs=0, reserved_epochs=0, **common)
    hours = dict(epoch=3, grid_size=None, started=1, used_epochs=0, reserved_epochs=0)
    assert why_not_start(search, elapsed_s=3000, est_trial_s=500, **hours) is None
    assert "hours" in why_not_start(search, elapsed_s=3200, est_trial_s=500, **hours)
    assert "grid" in why_not_start(SearchConfig(), epoch=3, grid_size=4, started=4, used_epochs=0,
                                   reserved_epochs=0, elapsed_s=0, est_trial_s=None)  # fmt: skip


def test_parallel_slots_divide_cpus_or_take_a_gpu_each() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    slots = make_slots(2, 1, [])
    assert all(s.gpus is None for s in slots) and len(slots) == 2
    if len(cpus) >= 2:
        assert not set(slots[0].cpus) & set(slots[1].cpus)
    gpus = make_slots(4, 2, ["0", "1", "2", "3", "4"])
    assert [s.gpus for s in gpus] == [["0", "1"], ["2", "3"]]  # 5 GPUs hold two 2-GPU trials


def test_ledger_rebuilds_the_study_for_a_stateless_driver() -> None:
    """What the operator does each reconcile: rows -> in-memory study -> next params / prune a running trial."""
    space = {"lr": sp.Domain.model_validate({"low": 1e-4, "high": 1e-1, "log": True})}
    dists = sp.distributions(space)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    for value in (0.9, 0.8, 0.7):
        trial = study.ask(dists)
        for epoch in (1, 2, 3):
            trial.report(value, epoch)
            trial.should_prune()
        study.tell(trial, value)
    trial = study.ask(dists)
    trial.report(0.2, 1)  # running, far below the others at the first rung
    rows = ledger.rows_of(study)
    assert [r["state"] for r in rows] == ["succeeded"] * 3 + ["running"]

    rebuilt = ledger.study_from_ledger(
        json.loads(json.dumps(rows)), dists, pruner=pruner, sampler=optuna.samplers.RandomSampler(1), rung_epochs=[1, 3]
    )
    assert [t.number for t in rebuilt.trials] == [0, 1, 2, 3]
    assert rebuilt.best_trial.number == 0 and rebuilt.best_value == 0.9
    assert ledger.should_prune(rebuilt, 3)
    assert rebuilt.ask(dists).number == 4
    assert ledger.rows_of(rebuilt)[:3] == [{**r, "seconds": None} for r in rows[:3]]
    assert "succeeded  0.9000" in ranked_table(rows)


# --- real searches ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _rows(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "trials.jsonl").read_text().splitlines()]


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# The config's own lr (TINY: 2e-3) learns; 10 stays at chance; 1e4 makes the loss NaN in epoch 1.
GOOD, CHANCE, NAN = TINY["lr"], 10.0, 1e4


@pytest.mark.slow
def test_search_prunes_the_hopeless_fails_the_nan_and_promotes_the_best(dataset, tmp_path: Path) -> None:
    work = tmp_path / "search"
    search = dict(sampler="grid", min_epochs=2, space={"lr": [GOOD, CHANCE, NAN]})
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3, search=search)
    run = cli("tune", "--config", str(config))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "trial 0 is the config itself: lr=0.002" in run.stdout

    rows = {r["params"]["lr"]: r for r in _rows(work)}
    assert sorted(r["number"] for r in rows.values()) == [0, 1, 2]
    good, chance, nan = rows[GOOD], rows[CHANCE], rows[NAN]
    assert good["number"] == 0 and good["state"] == "succeeded" and good["epochs"] == 3
    assert nan["state"] == "failed" and "training loss is nan at epoch 1" in nan["reason"]
    # ASHA stopped the chance-level trial at its rung (epoch 2), before its last epoch.
    assert chance["state"] == "pruned" and chance["epochs"] == 2 < 3
    assert json.loads((work / chance["dir"] / "progress.json").read_text())["phase"] == "pruned"
    assert good["best_top1"] > chance["best_top1"]
    assert all(r["seconds"] > 0 for r in rows.values())

    # Ranked table: best first; promoted weights and config.
    table = run.stdout[run.stdout.index("rank  trial") :].splitlines()
    assert table[1].split()[:3] == ["1", "0", "succeeded"] and "failed" in table[3]
    assert _same_weights(work / "best.pth", work / "trials/0000/best.pth")
    assert yaml.safe_load((work / "best_config.yaml").read_text())["lr"] == GOOD
    assert json.loads((work / "search.json").read_text())["best_trial"] == 0

    # `test` with the same config predicts with the promoted best.pth.
    test = cli("test", "--config", str(config))
    assert test.returncode == 0, test.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert Path(results["checkpoint"]) == work / "best.pth"

    # The same command again: nothing is rerun.
    again = cli("tune", "--config", str(config))
    assert again.returncode == 0 and "started" not in again.stdout
    assert [r["number"] for r in _rows(work)] == [0, 1, 2]


@pytest.mark.slow
def test_sigkill_during_a_trial_then_the_same_command_resumes_it(dataset, tmp_path: Path) -> None:
    work = tmp_path / "search"
    search = dict(sampler="grid", pruner="none", space={"lr": [GOOD, 0.004]})
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3, search=search)
    cmd = [sys.executable, "-m", "autox_video", "tune", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = work / "trials/0000/epoch_1.pth"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [r["state"] for r in _rows(work)] == ["running"]

    run = cli("tune", "--config", str(config))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "trial 0 started (resuming)" in run.stdout
    rows = _rows(work)
    assert [r["number"] for r in rows] == [0, 1] and [r["state"] for r in rows] == ["succeeded", "succeeded"]
    # Trial 0 went on from its own checkpoint: every epoch validated once.
    epochs = [json.loads(line)["epoch"] for line in (work / "trials/0000/metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert "resuming from" in (work / "trials/0000/train.log").read_text()
    assert json.loads((work / "trials/0000/trial.json").read_text())["attempt"] == 2

    best = max(rows, key=lambda r: (r["best_top1"], -r["number"]))
    assert _same_weights(work / "best.pth", work / best["dir"] / "best.pth")
    test = cli("test", "--config", str(config))
    assert test.returncode == 0, test.stderr[-3000:]
    assert Path(json.loads((tmp_path / "results.json").read_text())["checkpoint"]) == work / "best.pth"


@pytest.mark.slow
def test_api_tune_runs_trials_in_parallel_on_divided_cpus(dataset, tmp_path: Path, capsys) -> None:
    from autox_video import AutoXVideo

    work = tmp_path / "search"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=1)
    search = dict(sampler="random", pruner="none", space={"lr": {"low": 1e-3, "high": 5e-3, "log": True}})
    result = AutoXVideo().read_cfg(config).tune(trials=2, parallel=2, search=search)
    out = capsys.readouterr().out
    assert result.best_trial is not None and result.best_checkpoint == work / "best.pth"
    assert [r["state"] for r in result.rows] == ["succeeded", "succeeded"]
    # Both started before either ended.
    assert out.index("trial 1 started") < min(out.index("trial 0 succeeded"), out.index("trial 1 succeeded"))
    if len(os.sched_getaffinity(0)) >= 2:
        share = f"{len(os.sched_getaffinity(0)) // 2} CPUs"
        assert f"trial 0 started on {share}" in out and f"trial 1 started on {share}" in out


def test_the_guide_search_example_is_a_valid_config() -> None:
    section = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "search.md").read_text()
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", section.index("```yaml") + 7)]
    cfg = build_config(yaml.safe_load(block))
    assert isinstance(cfg.search, SearchConfig) and cfg.search.space is not None
    assert sp.distributions(cfg.search.space)["clip"].choices[1] == "clip_len=32,frame_interval=2"
