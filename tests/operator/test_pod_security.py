"""Every pod the operator creates satisfies Pod Security "restricted": one assertion per rule and pod."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from autox_operator.builders import TEST_ARGS, Owner, build_pytorchjob, build_trainjob, build_trial_children
from autox_operator.children import get_engine
from autox_operator.settings import OperatorSettings
from helm_engine import render
from pod_security import RULES, assert_restricted, pod_templates

from autox_video.config import Config
from autox_video.spec.inference import VideoInferenceJobSpec
from autox_video.spec.training import VideoTrainingJobSpec

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1")
OWNER = Owner(kind="VideoTrainingJob", name="ucf", namespace="team-a", uid="uid-1")


def _spec(**overrides: Any) -> VideoTrainingJobSpec:
    raw = {"dataset": {"videos": "s3://data/videos/", "train": "s3://data/train.txt"}, "output": "s3://runs/ucf"}
    raw.update(overrides)
    return VideoTrainingJobSpec.model_validate(raw)


GPU = {"replicas": 2, "gpusPerReplica": 8, "shmSize": "32Gi", "memory": "64Gi"}


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge as Trainer applies runtimePatches: maps merged, lists of named items merged by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        names = [x["name"] for x in base] + [x["name"] for x in patch if x["name"] not in {b["name"] for b in base}]
        by_base, by_patch = {x["name"]: x for x in base}, {x["name"]: x for x in patch}
        return [
            merge(by_base[n], by_patch[n])
            if n in by_base and n in by_patch
            else copy.deepcopy(by_base.get(n) or by_patch[n])
            for n in names
        ]
    return copy.deepcopy(patch)


def _trainjob_pods(runtime: dict[str, Any], trainjob: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates Trainer makes: the runtime's, with the TrainJob's runtime patch merged over it."""
    (patch,) = trainjob["spec"]["runtimePatches"]
    merged = merge(runtime["spec"], patch["trainingRuntimeSpec"])
    return pod_templates({"spec": merged})


@functools.cache
def chart_runtime() -> dict[str, Any]:
    return render({"trainer": {"runtime": {"install": True}}}).one("ClusterTrainingRuntime")


def upstream_runtime() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "third_party" / "k8s" / "torch_distributed_runtime.yaml").read_text())


def _pytorchjob(spec: VideoTrainingJobSpec) -> list[tuple[str, dict[str, Any]]]:
    return pod_templates(build_pytorchjob(OWNER, spec, args=["train"], settings=SETTINGS))


def _trainjob(runtime: Callable[[], dict[str, Any]], spec: VideoTrainingJobSpec) -> list[tuple[str, dict[str, Any]]]:
    return _trainjob_pods(runtime(), build_trainjob(OWNER, spec, args=["train"], settings=SETTINGS))


def _inference() -> list[tuple[str, dict[str, Any]]]:
    spec = VideoInferenceJobSpec.model_validate(
        {"model": {"trainingJobRef": "ucf"}, "dataset": {"videos": "s3://data/test/"}, "output": "s3://runs/t/"}
    )
    owner = Owner(kind="VideoInferenceJob", name="ucf-test", namespace="team-a", uid="uid-2")
    return pod_templates(build_pytorchjob(owner, spec, args=TEST_ARGS, settings=SETTINGS))


def _trial(engine: str) -> list[tuple[str, dict[str, Any]]]:
    _, child = build_trial_children(OWNER, _spec(), Config(), 3, SETTINGS, get_engine(engine))
    if engine == "trainjob":
        return _trainjob_pods(chart_runtime(), child)
    return pod_templates(child)


# Every kind of pod the operator (or its chart) makes, as (where, pod template) lists.
PODS: dict[str, Callable[[], list[tuple[str, dict[str, Any]]]]] = {
    "pytorchjob-cpu": lambda: _pytorchjob(_spec()),
    "pytorchjob-gpu-2-nodes": lambda: _pytorchjob(_spec(resources=GPU, storage={"secretRef": "s3"})),
    "pytorchjob-inference": _inference,
    "pytorchjob-trial": lambda: _trial("pytorchjob"),
    "trainjob-on-chart-runtime": lambda: _trainjob(chart_runtime, _spec(resources=GPU)),
    "trainjob-on-torch-distributed": lambda: _trainjob(upstream_runtime, _spec(resources=GPU)),
    "trainjob-trial": lambda: _trial("trainjob"),
    "chart-runtime-itself": lambda: pod_templates(chart_runtime()),
}


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("pods", list(PODS))
def test_every_pod_satisfies_each_restricted_rule(pods: str, rule: str) -> None:
    templates = PODS[pods]()
    assert templates
    for where, template in templates:
        assert RULES[rule](template["spec"], template.get("metadata") or {}) == [], (pods, where)


def _trainer_uid() -> int:
    (uid,) = re.findall(r"^USER (\d+)(?::\d+)?$", (ROOT / "trainer_image" / "Dockerfile").read_text(), re.M)
    return int(uid)


@pytest.mark.parametrize("pods", list(PODS))
def test_pods_run_as_the_trainer_images_user_with_scratch_and_shm_in_memory(pods: str) -> None:
    for _, template in PODS[pods]():
        pod = template["spec"]
        assert pod["securityContext"]["runAsUser"] == _trainer_uid()
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["data"] == {"name": "data", "emptyDir": {}}  # scratch and AUTOX_CACHE_DIR: no hostPath
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        (node,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
        assert mounts["/dev/shm"] == "dshm" and mounts["/data"] == "data"


def test_shm_is_sized_from_the_spec() -> None:
    for _, template in [*_pytorchjob(_spec(resources=GPU)), *_trainjob(upstream_runtime, _spec(resources=GPU))]:
        (dshm,) = [v for v in template["spec"]["volumes"] if v["name"] == "dshm"]
        assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}


# The checker itself: each rule catches the pod that breaks it (a mutation of a compliant pod).
BREAKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "host_process": lambda p, m: p["securityContext"].update(windowsOptions={"hostProcess": True}),
    "host_namespaces": lambda p, m: p.update(hostNetwork=True),
    "privileged": lambda p, m: p["containers"][0]["securityContext"].update(privileged=True),
    "capabilities": lambda p, m: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "host_path": lambda p, m: p["volumes"].append({"name": "cache", "hostPath": {"path": "/var/cache"}}),
    "host_ports": lambda p, m: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "apparmor": lambda p, m: m.setdefault("annotations", {}).update(
        {"container.apparmor.security.beta.kubernetes.io/pytorch": "unconfined"}
    ),
    "selinux": lambda p, m: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
    "proc_mount": lambda p, m: p["containers"][0]["securityContext"].update(procMount="Unmasked"),
    "seccomp": lambda p, m: p["securityContext"].pop("seccompProfile"),
    "sysctls": lambda p, m: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "volume_types": lambda p, m: p["volumes"].append({"name": "nfs", "nfs": {"server": "x", "path": "/"}}),
    "privilege_escalation": lambda p, m: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
    "run_as_non_root": lambda p, m: p["containers"][0]["securityContext"].update(runAsNonRoot=False),
    "run_as_user": lambda p, m: p["securityContext"].update(runAsUser=0),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_catches_the_pod_that_breaks_it(rule: str) -> None:
    ((_, template),) = _pytorchjob(_spec())
    pod, meta = copy.deepcopy(template["spec"]), copy.deepcopy(template["metadata"])
    assert_restricted(pod, meta)
    BREAKS[rule](pod, meta)
    assert RULES[rule](pod, meta) != []
    with pytest.raises(AssertionError, match=rule):
        assert_restricted(pod, meta)


def test_the_upstream_runtime_alone_is_not_restricted_so_the_patch_must_be() -> None:
    """Why the TrainJob patch carries the securityContexts: torch-distributed sets none itself."""
    ((_, template),) = pod_templates(upstream_runtime())
    assert RULES["run_as_non_root"](template["spec"], {}) != []
    assert RULES["capabilities"](template["spec"], {}) != []
