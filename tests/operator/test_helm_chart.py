"""The Helm chart, checked without helm: CRDs identical to crds/, values, and the templates' skeletons
(template actions stripped, the YAML left) for RBAC, security context and the liveness probe."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schemas import CRD_DIR, ROOT

CHART = ROOT / "charts" / "autox-video"
TEMPLATES = CHART / "templates"
ACTION_LINE = re.compile(r"^\s*\{\{-?.*?-?\}\}\s*$")
ACTION = re.compile(r"\{\{-?.*?-?\}\}")


def skeleton(path: Path) -> list[dict[str, Any]]:
    """The documents of a template with every action removed (lines that are only an action) or
    replaced by a placeholder; both branches of a conditional stay, so both can be checked."""
    lines = [ACTION.sub("TEMPLATED", line) for line in path.read_text().splitlines() if not ACTION_LINE.match(line)]
    return [doc for doc in yaml.safe_load_all("\n".join(lines)) if doc]


def docs_of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for path in sorted(TEMPLATES.glob("*.yaml")) for doc in skeleton(path) if doc.get("kind") == kind]


def test_chart_metadata_and_values() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "autox-video" and chart["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["image"]["repository"] and values["trainer"]["image"]["repository"]
    assert values["watchNamespaces"] == [] and "endpoint" in values["s3"]


def test_chart_crds_are_the_generated_ones() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    for path in CRD_DIR.glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_bytes() == path.read_bytes()


def test_templates_have_balanced_actions_and_yaml_skeletons() -> None:
    for path in TEMPLATES.iterdir():
        text = path.read_text()
        assert text.count("{{") == text.count("}}"), path.name
        if path.suffix == ".yaml":
            assert skeleton(path), path.name


def test_operator_deployment_is_locked_down_and_probed() -> None:
    (deployment,) = docs_of_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] == "health"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AUTOX_LIVENESS"] == f"http://0.0.0.0:{ports['health']}/healthz"
    assert {"AUTOX_NAMESPACES", "AUTOX_TRAINER_IMAGE", "AUTOX_S3_ENDPOINT"} <= set(env)
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


EXPECTED_RULES = [
    {
        "apiGroups": ["autox.io"],
        "resources": ["videotrainingjobs", "videoinferencejobs"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["autox.io"],
        "resources": ["videotrainingjobs/status", "videoinferencejobs/status"],
        "verbs": ["get", "patch"],
    },
    {
        "apiGroups": ["autox.io"],
        "resources": ["videotrainingjobs/finalizers", "videoinferencejobs/finalizers"],
        "verbs": ["update"],
    },
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]


def test_rbac_is_least_privilege() -> None:
    (role,) = docs_of_kind("ClusterRole")
    assert role["rules"] == EXPECTED_RULES
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    # Bound cluster-wide, or per watched namespace (RoleBindings to the same ClusterRole).
    assert docs_of_kind("ClusterRoleBinding")[0]["roleRef"]["kind"] == "ClusterRole"
    assert docs_of_kind("RoleBinding")[0]["roleRef"]["kind"] == "ClusterRole"
    assert docs_of_kind("ServiceAccount")


def test_the_operator_only_calls_what_rbac_allows() -> None:
    """Every API call in autox_operator.kube maps to a verb the ClusterRole grants."""
    source = (ROOT / "operator" / "autox_operator" / "kube.py").read_text()
    calls = set(re.findall(r"\.(create|get|patch|read|list|delete|replace)_namespaced_(\w+?)(?:_status)?\(", source))
    granted = {(verb, res) for rule in EXPECTED_RULES for res in rule["resources"] for verb in rule["verbs"]}
    to_rbac = {"custom_object": None, "config_map": "configmaps", "secret": "secrets"}
    verb_of = {
        "create": "create",
        "get": "get",
        "read": "get",
        "patch": "patch",
        "list": "list",
        "delete": "delete",
        "replace": "update",
    }
    for verb, kind in calls:
        resource = to_rbac[kind]
        if resource is None:  # our CRs or PyTorchJobs: both granted get/patch, PyTorchJobs also create
            assert (verb_of[verb], "pytorchjobs") in granted or (verb_of[verb], "videotrainingjobs") in granted
        else:
            assert (verb_of[verb], resource) in granted, (verb, kind)


def test_notes_tell_the_next_command() -> None:
    notes = (TEMPLATES / "NOTES.txt").read_text()
    assert "kubectl apply -f" in notes and "kubectl get vtj" in notes and "kubectl create secret" in notes


def test_operator_dockerfile_has_no_torch_and_runs_as_non_root() -> None:
    text = (ROOT / "operator" / "Dockerfile").read_text()
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "torch" not in instructions.replace("'torch' not in sys.modules", "")
    assert "[operator]" in instructions and "[train" not in instructions
    assert re.search(r"^USER 65532", instructions, re.M)
    assert 'ENTRYPOINT ["autox-operator"]' in instructions


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_helm_lint_and_template() -> None:  # pragma: no cover - only where helm exists
    subprocess.run(["helm", "lint", str(CHART)], check=True)
    for args in ([], ["--set", "watchNamespaces={team-a,team-b}"]):
        out = subprocess.run(["helm", "template", "t", str(CHART), *args], check=True, capture_output=True, text=True)
        kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout) if d]
        assert "Deployment" in kinds and "ClusterRole" in kinds
