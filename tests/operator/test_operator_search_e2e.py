"""End to end, spec.search: the real operator in-process against kmock (or AUTOX_E2E_KUBECONFIG) and moto.

The test plays the training operator (trial PyTorchJob conditions) and the trainer (each trial's
metrics.jsonl, progress.json, best.pth under output/trials/NNNN/)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from autox_operator.constants import TRIAL_RESULT_FILE
from k8s_cluster import Cluster, wait_for
from k8s_schemas import SchemaSet
from ops3 import S3
from prom import free_port, scrape, value
from test_operator_e2e import inference_job, owned_pytorchjobs, setup_storage, training_job

from autox_video.config import Config

VTJ, PJ = "videotrainingjobs", "pytorchjobs"
EPOCHS = 9
SEARCH = {
    "trials": 4,
    "parallel": 2,
    "pruner": "asha",
    "minEpochs": 1,  # rungs at epochs 1 and 3
    "seed": 7,
    "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "backbone": {"choices": ["swin_t", "swin_s"]}},
}


def _running_trials(cluster: Cluster, namespace: str, parallel: int = SEARCH["parallel"]) -> list[str]:
    """Names of the job's trial PyTorchJobs that have not ended; never more than `parallel`."""
    names = []
    for pj in owned_pytorchjobs(cluster, namespace, "hpo"):
        ended = {c["type"] for c in (pj.get("status") or {}).get("conditions", []) if c["status"] == "True"}
        if not ended & {"Succeeded", "Failed"}:
            names.append(pj["metadata"]["name"])
    assert len(names) <= parallel, names
    return sorted(names)


def _trial(cluster: Cluster, namespace: str, number: int) -> dict[str, Any]:
    trials = cluster.status(VTJ, namespace, "hpo").get("trials") or []
    return next((t for t in trials if t["number"] == number), {})


def _play(s3: S3, out: str, number: int, top1: list[float], *, done: bool = False) -> None:
    """The trainer of trial `number`: one validation per epoch so far, progress.json, best.pth at the end."""
    prefix = f"{out}trials/{number:04d}/"
    lines = "".join(json.dumps({"epoch": e + 1, "top1": v, "top5": 1.0}) + "\n" for e, v in enumerate(top1))
    s3.put_text(f"{prefix}metrics.jsonl", lines)
    if done:
        s3.put_text(f"{prefix}best.pth", f"weights of trial {number}")
    s3.put_json(
        f"{prefix}progress.json",
        {
            "phase": "succeeded" if done else "running",
            "epoch": len(top1),
            "total_epochs": EPOCHS,
            "best_top1": max(top1),
            "best_epoch": top1.index(max(top1)) + 1,
        },
    )


def test_a_search_runs_prunes_survives_a_restart_and_promotes_the_best(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    crd_schemas: SchemaSet,
    pytorchjob_schema: SchemaSet,
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    out = f"s3://{bucket}/runs/hpo/"
    vtj = training_job(
        namespace,
        "hpo",
        bucket,
        operator_s3.endpoint_url,
        training={"epochs": EPOCHS, "evalInterval": 1, "lr": 0.001},
        resources={"replicas": 1, "gpusPerReplica": 1},
        search=SEARCH,
    )
    crd_schemas.validate(vtj)

    with run_operator():
        cluster.create(vtj)
        # Two trials at once: t0000 (the spec's own config, inside the space) and t0001.
        wait_for(lambda: _running_trials(cluster, namespace) == ["hpo-t0000", "hpo-t0001"], what="two trials")
        for number in (0, 1):
            pj = cluster.get(PJ, namespace, f"hpo-t{number:04d}")
            pytorchjob_schema.validate(pj)
            assert pj["metadata"]["labels"]["autox.io/trial"] == f"{number:04d}"
            volume = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"][0]
            assert volume["configMap"]["name"] == f"hpo-t{number:04d}-config"
            config = Config(**yaml.safe_load(cluster.configmap(namespace, f"hpo-t{number:04d}-config")["config.yaml"]))
            assert config.work_dir == f"{out}trials/{number:04d}/" and config.search is None
            params = _trial(cluster, namespace, number)["params"]
            assert config.lr == params["lr"] and config.backbone == params["backbone"]
        assert _trial(cluster, namespace, 0)["params"] == {"lr": 0.001, "backbone": "swin_t"}
        for number in (0, 1):
            cluster.set_pytorchjob_status(namespace, f"hpo-t{number:04d}", "Created", "Running")
        cluster.wait_status(VTJ, namespace, "hpo", phase="Running", trialsSummary="2/4")

        # Trial 0 validates first; then trial 1, far below it at the first rung: the pruner stops it.
        _play(operator_s3, out, 0, [0.6])
        wait_for(lambda: _trial(cluster, namespace, 0).get("epochs") == 1, what="trial 0 at epoch 1")
        _play(operator_s3, out, 1, [0.1])
        wait_for(lambda: _trial(cluster, namespace, 1).get("state") == "pruned", what="trial 1 pruned")
        assert _trial(cluster, namespace, 1)["epochs"] == 1
        wait_for(lambda: cluster.get(PJ, namespace, "hpo-t0001") is None, what="the pruned trial's PyTorchJob deleted")
        wait_for(lambda: _running_trials(cluster, namespace) == ["hpo-t0000", "hpo-t0002"], what="trial 2 started")
        cluster.set_pytorchjob_status(namespace, "hpo-t0002", "Created", "Running")
        crd_schemas.validate(cluster.get(VTJ, namespace, "hpo"))
        before = cluster.status(VTJ, namespace, "hpo")["trials"]

    # The operator is down while trial 0 trains on; a fresh operator finds exactly the same trials.
    _play(operator_s3, out, 0, [0.6, 0.7])
    port = free_port()
    with run_operator(metrics_port=port):
        searched = value(scrape(port), "autox_reconcile_duration_seconds_count", kind="VideoTrainingJob", step="search")
        wait_for(lambda: _trial(cluster, namespace, 0).get("epochs") == 2, what="trial 0 at epoch 2")
        after = cluster.status(VTJ, namespace, "hpo")["trials"]
        assert [(t["number"], t["params"]) for t in after] == [(t["number"], t["params"]) for t in before]
        assert _running_trials(cluster, namespace) == ["hpo-t0000", "hpo-t0002"]
        assert sorted(pj["metadata"]["name"] for pj in owned_pytorchjobs(cluster, namespace, "hpo")) == [
            "hpo-t0000",
            "hpo-t0002",
        ]

        # Trial 0 succeeds: it is promoted to output/best.pth; trial 3 (the last one) starts.
        _play(operator_s3, out, 0, [0.6, 0.7, 0.8, 0.8, 0.85, 0.85, 0.9, 0.9, 0.9], done=True)
        cluster.set_pytorchjob_status(namespace, "hpo-t0000", "Created", "Succeeded")
        status = cluster.wait_status(VTJ, namespace, "hpo", bestTrial=0, bestCheckpoint=f"{out}best.pth")
        assert status["bestTop1"] == 0.9
        assert operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/best.pth")["Body"].read() == (
            b"weights of trial 0"
        )
        best_config = operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/best_config.yaml")["Body"].read()
        assert Config(**yaml.safe_load(best_config)).work_dir == f"{out}trials/0000/"
        wait_for(lambda: _running_trials(cluster, namespace) == ["hpo-t0002", "hpo-t0003"], what="trial 3 started")

        # Trial 2 fails; trial 3 beats trial 0 and becomes the best; then nothing is left to run.
        cluster.set_pytorchjob_status(namespace, "hpo-t0002", "Created", "Failed")
        cluster.set_pytorchjob_status(namespace, "hpo-t0003", "Created", "Running")
        _play(operator_s3, out, 3, [0.95] * EPOCHS, done=True)
        cluster.set_pytorchjob_status(namespace, "hpo-t0003", "Created", "Succeeded")
        status = cluster.wait_status(VTJ, namespace, "hpo", phase="Succeeded")
        assert status["trialCounts"] == {"total": 4, "running": 0, "succeeded": 2, "pruned": 1, "failed": 1}
        # /metrics: the trials by state (from the job's status, as watched) and the search passes, timed.
        wanted_trials = {"running": 0, "succeeded": 2, "pruned": 1, "failed": 1}
        now = wait_for(
            lambda: (
                (m := scrape(port))
                and {s: value(m, "autox_search_trials", state=s) for s in wanted_trials} == wanted_trials
                and m
            ),
            what="/metrics: trials by state",
        )
        assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Succeeded") == 1
        assert value(now, "autox_reconcile_duration_seconds_count", kind="VideoTrainingJob", step="search") > searched
        assert status["bestTrial"] == 3 and status["bestTop1"] == 0.95 and status["trialsSummary"] == "4/4"
        assert status["bestCheckpoint"] == f"{out}best.pth"
        assert [t["state"] for t in status["trials"]] == ["succeeded", "pruned", "failed", "succeeded"]
        assert operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/best.pth")["Body"].read() == (
            b"weights of trial 3"
        )
        crd_schemas.validate(cluster.get(VTJ, namespace, "hpo"))
        wanted = {"TrialPruned", "TrialFailed", "TrialSucceeded", "NewBest", "Succeeded"}
        wait_for(lambda: wanted <= set(cluster.event_reasons(namespace, "hpo")), what=f"Events {wanted}")

        # trials.jsonl: the local ledger's rows, one per trial.
        rows = [
            json.loads(line)
            for line in operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/trials.jsonl")["Body"]
            .read()
            .decode()
            .splitlines()
        ]
        assert [(r["number"], r["state"], r["dir"]) for r in rows] == [
            (0, "succeeded", "trials/0000"),
            (1, "pruned", "trials/0001"),
            (2, "failed", "trials/0002"),
            (3, "succeeded", "trials/0003"),
        ]
        assert rows[0]["default"] is True and rows[1]["top1_by_epoch"] == {"1": 0.1}

        # An inference job on the searched job predicts with the promoted best and the best trial's backbone.
        vij = inference_job(namespace, "hpo-test", bucket, operator_s3.endpoint_url, {"trainingJobRef": "hpo"})
        crd_schemas.validate(vij)
        cluster.create(vij)
        wait_for(lambda: cluster.configmap(namespace, "hpo-test-config"), what="the inference ConfigMap")
        iconfig = Config(**yaml.safe_load(cluster.configmap(namespace, "hpo-test-config")["config.yaml"]))
        assert iconfig.checkpoint == f"{out}best.pth"
        assert iconfig.backbone == status["trials"][3]["params"]["backbone"]

    assert sorted(pj["metadata"]["name"] for pj in owned_pytorchjobs(cluster, namespace, "hpo")) == [
        "hpo-t0000",
        "hpo-t0002",
        "hpo-t0003",
    ]


def test_suspend_stops_starting_trials_and_suspends_the_running_ones(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(
        namespace,
        "hpo",
        bucket,
        operator_s3.endpoint_url,
        training={"epochs": 3, "evalInterval": 1},
        search={**SEARCH, "trials": 3},
    )
    with run_operator():
        cluster.create(vtj)
        wait_for(lambda: len(_running_trials(cluster, namespace)) == 2, what="two trials")
        cluster.patch_spec(VTJ, namespace, "hpo", {"runPolicy": {"suspend": True}})
        for name in ("hpo-t0000", "hpo-t0001"):
            wait_for(
                lambda name=name: cluster.get(PJ, namespace, name)["spec"]["runPolicy"]["suspend"] is True,
                what=f"{name} suspended",
            )
        cluster.wait_status(VTJ, namespace, "hpo", phase="Suspended")
        # A trial that ends while suspended frees its slot, but no trial starts.
        cluster.set_pytorchjob_status(namespace, "hpo-t0001", "Created", "Failed")
        wait_for(lambda: _trial(cluster, namespace, 1).get("state") == "failed", what="trial 1 failed")
        assert cluster.get(PJ, namespace, "hpo-t0002") is None

        cluster.patch_spec(VTJ, namespace, "hpo", {"runPolicy": {"suspend": False}})
        wait_for(
            lambda: cluster.get(PJ, namespace, "hpo-t0000")["spec"]["runPolicy"]["suspend"] is False,
            what="trial 0 resumed",
        )
        pj = wait_for(lambda: cluster.get(PJ, namespace, "hpo-t0002"), what="trial 2 after resume")
        assert pj["spec"]["runPolicy"]["suspend"] is False
        wait_for(lambda: {"Suspending", "Resuming"} <= set(cluster.event_reasons(namespace, "hpo")), what="Events")


PARETO_SEARCH = {
    "trials": 3,
    "parallel": 3,
    "pruner": "none",
    "seed": 5,
    "objectives": ["top1", "latency"],
    "latency": {"batchSize": 1, "runtime": "onnx", "maxMs": 20},
    "space": {"backbone": {"choices": ["swin_t", "swin_s"]}, "lr": {"low": 1e-4, "high": 1e-2, "log": True}},
}
# What each trial's trainer measures (ms per batch, videos/s, GFLOPs, parameters) and its top-1: trial 0 (the
# spec's own config) is the most accurate and too slow for maxMs 20; trial 1 is dominated by trial 2.
FIGURES = {
    0: (0.9, 45.0, 22.2, 282.0, 28_000_000),
    1: (0.6, 30.0, 33.3, 140.0, 14_000_000),
    2: (0.8, 12.0, 83.3, 70.0, 7_000_000),
}


def _text(s3: S3, bucket: str, key: str) -> str | None:
    """The object runs/hpo/<key> as text; None when there is none."""
    try:
        return s3.client.get_object(Bucket=bucket, Key=f"runs/hpo/{key}")["Body"].read().decode()
    except s3.client.exceptions.NoSuchKey:
        return None


def _measured(s3: S3, out: str, number: int) -> None:
    """The trial's trainer after its last epoch: it timed its best weights and wrote the figures."""
    top1, ms, vps, gflops, params = FIGURES[number]
    _play(s3, out, number, [top1 - 0.1, top1, top1], done=True)
    figures = {"latency_ms": ms, "videos_per_s": vps, "gflops": gflops, "model_params": params}
    prefix = f"{out}trials/{number:04d}/"
    s3.put_json(f"{prefix}{TRIAL_RESULT_FILE}", {"state": "succeeded", "best_top1": top1, **figures})
    s3.put_text(f"{prefix}export/model.json", f"model of trial {number}")  # what it timed: the exported model
    if number == 0:
        s3.put_text(f"{prefix}export/model.onnx.data", "external weights of trial 0")


def test_a_two_objective_search_reports_the_front_and_promotes_the_trial_within_the_latency_limit(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, crd_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    out = f"s3://{bucket}/runs/hpo/"
    vtj = training_job(
        namespace,
        "hpo",
        bucket,
        operator_s3.endpoint_url,
        training={"epochs": 3, "evalInterval": 1, "lr": 0.001},
        resources={"replicas": 1, "gpusPerReplica": 1},
        search=PARETO_SEARCH,
    )
    crd_schemas.validate(vtj)
    with run_operator():
        cluster.create(vtj)
        wait_for(lambda: len(_running_trials(cluster, namespace, 3)) == 3, what="three trials")
        # Trial 0 (the most accurate, too slow) ends first: promoted for now, no trial meets the limit yet.
        _measured(operator_s3, out, 0)
        cluster.set_pytorchjob_status(namespace, "hpo-t0000", "Created", "Succeeded")
        status = cluster.wait_status(VTJ, namespace, "hpo", bestTrial=0, bestCheckpoint=f"{out}best.pth")
        assert (status["bestTop1"], status["bestLatencyMs"]) == (0.9, 45.0)
        assert status["pareto"] == [{"trial": 0, "top1": 0.9, "latencyMs": 45.0, "videosPerS": 22.2}]
        assert _trial(cluster, namespace, 0)["latencyMs"] == 45.0
        assert _text(operator_s3, bucket, "export/model.onnx.data") == "external weights of trial 0"
        _measured(operator_s3, out, 1)
        cluster.set_pytorchjob_status(namespace, "hpo-t0001", "Created", "Succeeded")
        wait_for(lambda: _trial(cluster, namespace, 1).get("state") == "succeeded", what="trial 1 succeeded")

    # The operator is down while trial 2 ends; a fresh one keeps the figures it recorded and reads the new ones.
    _measured(operator_s3, out, 2)
    cluster.set_pytorchjob_status(namespace, "hpo-t0002", "Created", "Succeeded")
    with run_operator():
        status = cluster.wait_status(VTJ, namespace, "hpo", phase="Succeeded", bestTrial=2)
        assert "(the most accurate with latency <= 20 ms)" in status["message"]
        assert (status["bestTop1"], status["bestLatencyMs"], status["bestVideosPerS"]) == (0.8, 12.0, 83.3)
        assert status["pareto"] == [
            {"trial": 0, "top1": 0.9, "latencyMs": 45.0, "videosPerS": 22.2},
            {"trial": 2, "top1": 0.8, "latencyMs": 12.0, "videosPerS": 83.3},
        ]
        assert [
            (t["number"], t["latencyMs"], t["videosPerS"], t["gflops"], t["modelParams"]) for t in status["trials"]
        ] == [(n, f[1], f[2], f[3], f[4]) for n, f in FIGURES.items()]
        crd_schemas.validate(cluster.get(VTJ, namespace, "hpo"))
        # The promoted weights are trial 2's; trials.jsonl carries each trial's figures beside its params.
        wait_for(lambda: _text(operator_s3, bucket, "best.pth") == "weights of trial 2", what="trial 2 promoted")
        # Its export too (serving's runtime triton serves output/export/): none of trial 0's files are left.
        assert _text(operator_s3, bucket, "export/model.json") == "model of trial 2"
        assert _text(operator_s3, bucket, "export/model.onnx.data") is None
        ledger = operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/trials.jsonl")["Body"].read().decode()
        rows = [json.loads(line) for line in ledger.splitlines()]
        assert [(r["number"], r["latency_ms"], r["model_params"]) for r in rows] == [
            (n, f[1], f[4]) for n, f in FIGURES.items()
        ]
        assert all(set(r["params"]) == {"backbone", "lr"} for r in rows)
        wait_for(lambda: "NewBest" in cluster.event_reasons(namespace, "hpo"), what="NewBest Event")
