"""The Helm chart, through Helm's own engine (helm-python-sdk, see helm_engine): `helm lint --strict` passes
(and fails on a broken chart), and the objects `helm template` renders under several value sets are valid
Kubernetes objects with least-privilege RBAC, a locked-down and probed operator, and the values wired to the
environment the operator reads. The chart's crds/ are the generated ones."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from autox_operator.main import kopf_args
from autox_operator.settings import OperatorSettings
from helm_engine import (
    CHART,
    NAMESPACE,
    RELEASE,
    Rendered,
    api_type_errors,
    chart_crds,
    install_dry_run,
    lint,
    merged_values,
    parse_manifests,
    render,
)
from k8s_schemas import CRD_DIR, ROOT, TRAINER_CRDS, SchemaSet

FULLNAME = f"{RELEASE}-autox-video"
APP_VERSION = "0.1.0"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "custom-images": {
        "operator": {"image": {"repository": "registry.example.com/ops/autox-operator", "tag": "v9.9.9"}},
        "trainer": {
            "image": {"repository": "registry.example.com/ml/trainer", "tag": "2024.1", "pullPolicy": "Always"}
        },
    },
    "s3-endpoint": {"s3": {"endpoint": "http://minio.minio:9000"}},
    "weights-mirror": {"weights": {"mirror": "s3://models/weights"}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "autox-ops"}},
    "no-rbac": {"rbac": {"create": False}},
    "no-secrets": {"operator": {"readSecrets": False}},
    "backend-trainjob-other-runtime": {
        "trainer": {"backend": "trainjob", "runtime": {"install": False, "name": "torch-distributed"}}
    },
    "backend-pytorchjob": {"trainer": {"backend": "pytorchjob", "runtime": {"install": False}}},
    "runtime-custom": {"trainer": {"runtime": {"install": True, "name": "autox-gpu", "shmSize": "32Gi"}}},
    "metrics-service-monitor": {
        "metrics": {
            "port": 9100,
            "service": {"annotations": {"prometheus.io/scrape": "true"}},
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "scrapeTimeout": "10s",
                "labels": {"release": "kube-prometheus-stack"},
            },
        }
    },
    "metrics-off": {"metrics": {"enabled": False}},
    "extras": {
        "operator": {
            "extraArgs": ["--verbose"],
            "syncInterval": 5,
            "retryDelay": 2.5,
            "resources": {"requests": {"cpu": 1, "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "podAnnotations": {"prometheus.io/scrape": "false"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                        ]
                    }
                }
            },
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"name": "autox", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    },
}


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Rendered]:
    values = VALUE_SETS[request.param]
    return values, render(values)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


@pytest.fixture(scope="module")
def trainer_schemas() -> SchemaSet:
    """The real Kubeflow Trainer v2 CRD schemas (vendored in third_party/k8s), strict."""
    return SchemaSet(TRAINER_CRDS)


def operator_role(out: Rendered) -> dict[str, Any]:
    (role,) = [r for r in out.of_kind("ClusterRole") if r["metadata"]["name"] == FULLNAME]
    return role


def runtimes_role(out: Rendered) -> dict[str, Any]:
    (role,) = [r for r in out.of_kind("ClusterRole") if r["metadata"]["name"] == f"{FULLNAME}-runtimes"]
    return role


def container(out: Rendered) -> dict[str, Any]:
    (c,) = out.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def c_env(out: Rendered) -> list[dict[str, Any]]:
    return container(out)["env"]


def env_of(out: Rendered) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(out)["env"] if "value" in e}


# --- chart files ------------------------------------------------------------------------------------------


def test_chart_metadata_and_values() -> None:
    with helm.Chart.load(CHART) as chart:
        meta, values = chart.metadata, chart.values
    assert meta["apiVersion"] == "v2" and meta["name"] == "autox-video" and meta["version"]
    assert meta["appVersion"] == APP_VERSION
    assert values["operator"]["image"]["repository"] and values["trainer"]["image"]["repository"]
    assert values["watchNamespaces"] == [] and "endpoint" in values["s3"]


def test_chart_crds_are_the_generated_ones() -> None:
    """The CRDs Helm installs (its loader's view of crds/) are crds/, and valid CustomResourceDefinitions."""
    crds = chart_crds()
    assert crds == {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    for name, text in crds.items():
        (crd,) = parse_manifests(text)
        assert api_type_errors(crd) == [], name
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "autox.io"


# --- lint -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_helm_lint_strict_passes(values: dict[str, Any]) -> None:
    report = lint(values=values)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report["messages"]
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]  # infos only (no icon)


BROKEN = {
    # (template file, text appended, whether only --strict fails it, what the finding says)
    "template-syntax-error": ("serviceaccount.yaml", "{{ if }}\n", False, "serviceaccount.yaml:15"),
    "renders-invalid-yaml": (
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\n data: [\n",
        False,
        "unable to parse YAML",
    ),
    "deprecated-api": (
        "ingress.yaml",
        "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: {{ .Release.Name }}\nspec: {}\n",
        True,
        "extensions/v1beta1 Ingress is deprecated",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_helm_lint_strict_fails_on_a_broken_chart(case: str, tmp_path: Path) -> None:
    template, text, strict_only, finding = BROKEN[case]
    broken = shutil.copytree(CHART, tmp_path / CHART.name)
    with (broken / "templates" / template).open("a") as f:
        f.write(text)
    errors = lint(broken)["errors"]
    assert len(errors) == 1 and finding in errors[0], errors
    assert (lint(broken, strict=False)["errors"] == []) is strict_only  # a warning: only --strict fails it
    if case == "template-syntax-error":
        with helm.Chart.load(broken) as chart, pytest.raises(helm.HelmRenderError, match="missing value for if"):
            chart.render(name=RELEASE)


# --- rendered objects, every value set --------------------------------------------------------------------


def test_rendered_objects_are_valid_kubernetes_objects(
    rendered: tuple[dict[str, Any], Rendered], trainer_schemas: SchemaSet
) -> None:
    values, out = rendered
    assert set(out.files) == {
        "templates/NOTES.txt",
        "templates/deployment.yaml",
        "templates/metrics.yaml",
        "templates/pdb.yaml",
        "templates/rbac.yaml",
        "templates/serviceaccount.yaml",
        "templates/trainingruntime.yaml",
    }
    for obj in out.objects:
        if obj["kind"] == "ClusterTrainingRuntime":  # no client model: the real CRD's schema instead
            trainer_schemas.validate(obj)
        elif obj["kind"] == "ServiceMonitor":  # no client model, no CRD here: test_metrics_* checks its fields
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        else:
            assert api_type_errors(obj) == [], (obj["kind"], obj["metadata"].get("name"))
    kinds = sorted(obj["kind"] for obj in out.objects)
    rbac = values.get("rbac", {}).get("create", True)
    binding = ["RoleBinding"] * len(values.get("watchNamespaces", [])) or ["ClusterRoleBinding"]
    sa = values.get("serviceAccount", {}).get("create", True)
    # auto (the default) asks the API server, which an offline render does not have: not installed.
    runtime = values.get("trainer", {}).get("runtime", {}).get("install", "auto") is True
    metrics = values.get("metrics", {})
    monitor = metrics.get("serviceMonitor", {}).get("enabled", False)
    rbac_kinds = ["ClusterRole", "ClusterRole", "ClusterRoleBinding", *binding]  # + the runtimes' role
    rbac_kinds += ["Role", "RoleBinding"]  # the leader election's Lease
    assert kinds == sorted(
        [
            "Deployment",
            "PodDisruptionBudget",
            *(rbac_kinds if rbac else []),
            *(["ServiceAccount"] if sa else []),
            *(["ClusterTrainingRuntime"] if runtime else []),
            *(["Service"] if metrics.get("enabled", True) else []),
            *(["ServiceMonitor"] if monitor else []),
        ]
    )
    for obj in out.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == APP_VERSION and labels["helm.sh/chart"] == "autox-video-0.1.0"
        if obj["kind"] in ("Deployment", "ServiceAccount", "Service", "ServiceMonitor"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_the_api_type_check_rejects_what_the_api_server_would(default: Rendered) -> None:
    deployment = copy.deepcopy(default.one("Deployment"))
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["env"][0]["value"] = 15  # an unquoted number
    c["imagepullpolicy"] = c.pop("imagePullPolicy")  # a typo
    del c["name"]
    c["resources"]["requests"]["cpu"] = 1  # a quantity may be a number
    assert api_type_errors(deployment) == [
        "Deployment.spec.template.spec.containers[0].imagepullpolicy: unknown field of V1Container",
        "Deployment.spec.template.spec.containers[0].name: required by V1Container",
        "Deployment.spec.template.spec.containers[0].env[0].value: expected str, got 15",
    ]
    assert api_type_errors({"apiVersion": "v1", "kind": "Pod"}) == ["no API type known for v1/Pod: add it to MODELS"]


def test_operator_deployment_is_locked_down_and_probed(rendered: tuple[dict[str, Any], Rendered]) -> None:
    _, out = rendered
    deployment = out.one("Deployment")
    assert deployment["metadata"]["name"] == FULLNAME
    spec = deployment["spec"]
    # Two replicas, one active (the Lease): a rolling update starts a standby before an old pod goes.
    assert spec["replicas"] == 2 and spec["strategy"] == {"type": "RollingUpdate"}
    env_from = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c_env(out) if "valueFrom" in e}
    assert env_from == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert env_of(out)["AUTOX_LEADER_ELECTION"] == FULLNAME
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["runAsNonRoot"] is True
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] == "health"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = env_of(out)
    assert env["AUTOX_LIVENESS"] == f"http://0.0.0.0:{ports['health']}/healthz"
    assert {"AUTOX_NAMESPACES", "AUTOX_TRAINER_IMAGE", "AUTOX_S3_ENDPOINT"} <= set(env)
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    # kopf serves the probe where the chart points it: the env reaches `kopf run --liveness`.
    assert f"--liveness={env['AUTOX_LIVENESS']}" in kopf_args(c["args"], env)


def test_values_reach_the_operator(rendered: tuple[dict[str, Any], Rendered], monkeypatch: pytest.MonkeyPatch) -> None:
    """Images, pull policy, namespaces, S3 endpoint and intervals: rendered from the values, read back by the
    operator's own settings and command line."""
    values, out = rendered
    merged = merged_values(values)
    operator, trainer = merged["operator"], merged["trainer"]
    op_image = operator["image"]
    c = container(out)
    assert c["image"] == f"{op_image['repository']}:{op_image['tag'] or APP_VERSION}"
    assert c["imagePullPolicy"] == op_image["pullPolicy"]
    env = env_of(out)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings.from_env()
    assert settings.backend == trainer["backend"] and settings.runtime_name == trainer["runtime"]["name"]
    image = trainer["image"]
    assert settings.trainer_image == f"{image['repository']}:{image['tag'] or APP_VERSION}"
    assert settings.image_pull_policy == image["pullPolicy"]
    assert settings.default_s3_endpoint == (merged["s3"]["endpoint"] or None)
    assert settings.weights_mirror == (merged["weights"]["mirror"] or None)
    assert settings.retry_delay == float(operator["retryDelay"])
    assert float(env["AUTOX_SYNC_INTERVAL"]) == float(operator["syncInterval"])
    assert settings.namespaces == tuple(merged["watchNamespaces"])
    assert settings.metrics_port == (merged["metrics"]["port"] if merged["metrics"]["enabled"] else 0)
    assert settings.read_secrets is operator["readSecrets"]
    args = kopf_args(c["args"], env)
    assert c["args"] == operator["extraArgs"] and args[len(args) - len(c["args"]) :] == c["args"]
    watched = [a.removeprefix("--namespace=") for a in args if a.startswith("--namespace=")]
    assert watched == merged["watchNamespaces"] and ("--all-namespaces" in args) is not merged["watchNamespaces"]
    assert c["resources"] == operator["resources"]


@pytest.mark.parametrize(
    ("values", "operator_image", "trainer_image", "trainer_pull_policy"),
    [
        ({}, "ghcr.io/autox/autox-operator:0.1.0", "ghcr.io/autox/autox-video-trainer:0.1.0", "IfNotPresent"),
        (
            VALUE_SETS["custom-images"],
            "registry.example.com/ops/autox-operator:v9.9.9",
            "registry.example.com/ml/trainer:2024.1",
            "Always",
        ),
    ],
    ids=["defaults", "custom-images"],
)
def test_image_references(
    values: dict[str, Any], operator_image: str, trainer_image: str, trainer_pull_policy: str
) -> None:
    out = render(values)
    assert container(out)["image"] == operator_image and container(out)["imagePullPolicy"] == "IfNotPresent"
    env = env_of(out)
    assert env["AUTOX_TRAINER_IMAGE"] == trainer_image and env["AUTOX_IMAGE_PULL_POLICY"] == trainer_pull_policy


def test_s3_endpoint_reaches_the_operator(default: Rendered) -> None:
    assert env_of(default)["AUTOX_S3_ENDPOINT"] == ""  # empty: AWS
    assert env_of(render(VALUE_SETS["s3-endpoint"]))["AUTOX_S3_ENDPOINT"] == "http://minio.minio:9000"


def test_weights_mirror_reaches_the_operator(default: Rendered) -> None:
    assert env_of(default)["AUTOX_WEIGHTS_MIRROR"] == ""  # empty: the internet
    assert env_of(render(VALUE_SETS["weights-mirror"]))["AUTOX_WEIGHTS_MIRROR"] == "s3://models/weights"


def test_pod_placement_and_extras_render_where_kubernetes_reads_them() -> None:
    extras = VALUE_SETS["extras"]
    out = render(extras)
    pod_template = out.one("Deployment")["spec"]["template"]
    pod = pod_template["spec"]
    assert pod_template["metadata"]["annotations"] == extras["operator"]["podAnnotations"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod[key] == extras["operator"][key]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "autox" and out.one("ServiceAccount")["metadata"]["name"] == "autox"
    assert out.one("ServiceAccount")["metadata"]["annotations"] == extras["serviceAccount"]["annotations"]
    for b in out.of_kind("ClusterRoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "autox", "namespace": NAMESPACE}]
    # Unset, they are absent (not empty keys).
    default = render().one("Deployment")["spec"]["template"]
    assert "annotations" not in default["metadata"]
    assert not {"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(default["spec"])
    assert "annotations" not in render().one("ServiceAccount")["metadata"]


# --- RBAC -------------------------------------------------------------------------------------------------

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
    {
        "apiGroups": ["kubeflow.org"],
        "resources": ["pytorchjobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["trainer.kubeflow.org"],
        "resources": ["trainjobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs/status"], "verbs": ["patch"]},
    {
        "apiGroups": ["serving.kserve.io"],
        "resources": ["inferenceservices"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, res, verb)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }


RUNTIME_RULES = [
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["clustertrainingruntimes"], "verbs": ["get", "list"]}
]


def test_rbac_is_least_privilege(default: Rendered) -> None:
    role = operator_role(default)
    assert role["metadata"]["name"] == FULLNAME
    assert role["rules"] == EXPECTED_RULES
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    # kopf watches our resources and the PyTorchJobs it labels, patches its annotations/finalizers, posts Events.
    kopf_needs = {
        ("autox.io", r, v) for r in ("videotrainingjobs", "videoinferencejobs") for v in ("list", "watch", "patch")
    }
    kopf_needs |= {("kubeflow.org", "pytorchjobs", v) for v in ("list", "watch")} | {("", "events", "create")}
    kopf_needs |= {("trainer.kubeflow.org", "trainjobs", v) for v in ("list", "watch")}
    assert kopf_needs <= granted(role)
    # The one cluster-scoped read (a TrainJob's runtimeRef), alone in its own role, bound cluster-wide.
    assert runtimes_role(default)["rules"] == RUNTIME_RULES
    # All namespaces: one ClusterRoleBinding of that ClusterRole to the operator's ServiceAccount.
    (binding,) = [b for b in default.of_kind("ClusterRoleBinding") if b["metadata"]["name"] == FULLNAME]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
    sa = default.one("ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
    assert default.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]
    # Namespaced: only the leader election's Role and its binding (test_leader_election_*).
    assert [r["metadata"]["name"] for r in default.of_kind("Role") + default.of_kind("RoleBinding")] == [
        f"{FULLNAME}-leader"
    ] * 2


def test_watch_namespaces_bind_the_cluster_role_in_each_namespace_only() -> None:
    out = render(VALUE_SETS["watch-namespaces"])
    assert operator_role(out)["rules"] == EXPECTED_RULES
    # Only the runtimes' read is bound cluster-wide (a RoleBinding cannot grant a cluster-scoped resource).
    (crb,) = out.of_kind("ClusterRoleBinding")
    assert crb["metadata"]["name"] == f"{FULLNAME}-runtimes" and crb["roleRef"]["name"] == f"{FULLNAME}-runtimes"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    bindings = [b for b in out.of_kind("RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    for b in bindings:
        assert b["metadata"]["name"] == FULLNAME
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert env_of(out)["AUTOX_NAMESPACES"] == "team-a,team-b"


def _who_may_get_secrets(out: Rendered) -> set[tuple[str, str]]:
    """(binding kind, namespace or '*') of every binding that grants `get` on Secrets."""
    roles = {r["metadata"]["name"]: r for r in out.of_kind("ClusterRole") + out.of_kind("Role")}
    return {
        (b["kind"], b["metadata"].get("namespace", "*"))
        for b in out.of_kind("ClusterRoleBinding") + out.of_kind("RoleBinding")
        if ("", "secrets", "get") in granted(roles[b["roleRef"]["name"]])
    }


def test_secrets_are_readable_per_watched_namespace_or_not_at_all() -> None:
    # Cluster-wide by default: the one cluster-wide grant on Secrets, and only `get`.
    assert _who_may_get_secrets(render()) == {("ClusterRoleBinding", "*")}
    # watchNamespaces: only in those namespaces, through RoleBindings; no cluster-wide grant.
    assert _who_may_get_secrets(render(VALUE_SETS["watch-namespaces"])) == {
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    }
    # readSecrets: false drops the rule (cluster-wide or not); the rest of the role is unchanged.
    for values in (VALUE_SETS["no-secrets"], {**VALUE_SETS["no-secrets"], **VALUE_SETS["watch-namespaces"]}):
        out = render(values)
        assert _who_may_get_secrets(out) == set()
        assert not any("secrets" in r["resources"] for role in out.of_kind("ClusterRole") for r in role["rules"])
        assert operator_role(out)["rules"] == [r for r in EXPECTED_RULES if r["resources"] != ["secrets"]]
        assert env_of(out)["AUTOX_READ_SECRETS"] == "false"
    assert env_of(render())["AUTOX_READ_SECRETS"] == "true"


def test_existing_service_account_and_no_rbac() -> None:
    out = render(VALUE_SETS["existing-service-account"])
    assert out.of_kind("ServiceAccount") == []
    assert out.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "autox-ops"
    assert {b["subjects"][0]["name"] for b in out.of_kind("ClusterRoleBinding")} == {"autox-ops"}
    no_sa_name = render({"serviceAccount": {"create": False}})
    assert no_sa_name.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    out = render(VALUE_SETS["no-rbac"])
    assert sorted(o["kind"] for o in out.objects) == [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def test_the_operator_only_calls_what_rbac_allows(default: Rendered) -> None:
    """Every API call in autox_operator.kube maps to a verb the rendered ClusterRole grants."""
    source = (ROOT / "operator" / "autox_operator" / "kube.py").read_text()
    calls = set(re.findall(r"\.(create|get|patch|read|list|delete|replace)_namespaced_(\w+?)(?:_status)?\(", source))
    assert calls
    rules = granted(operator_role(default))
    to_rbac = {"custom_object": None, "config_map": ("", "configmaps"), "secret": ("", "secrets")}
    verb_of = {
        "create": "create",
        "get": "get",
        "read": "get",
        "patch": "patch",
        "list": "list",
        "delete": "delete",
        "replace": "update",
    }
    # The InferenceService calls (kserve group constants): exactly the verbs the role grants it, no list/watch.
    isvc_calls = set(re.findall(r"def (get|create|patch|delete)_inference_service\(", source))
    isvc_granted = {v for g, r, v in rules if (g, r) == ("serving.kserve.io", "inferenceservices")}
    assert isvc_calls == isvc_granted == {"get", "create", "patch", "delete"}
    for verb, kind in calls:
        resource = to_rbac[kind]
        if resource is None:  # our CRs or the children: our CRs get/patch, children also create/list/delete
            children = {("kubeflow.org", "pytorchjobs"), ("trainer.kubeflow.org", "trainjobs")}
            assert (
                all((*c, verb_of[verb]) in rules for c in children)
                or (
                    "autox.io",
                    "videotrainingjobs",
                    verb_of[verb],
                )
                in rules
            )
        else:
            assert (*resource, verb_of[verb]) in rules, (verb, kind)
    # The cluster-scoped calls: only the ClusterTrainingRuntime read.
    cluster_calls = set(re.findall(r"\.(\w+)_cluster_custom_object\(", source))
    assert cluster_calls == {"get"}
    assert ("trainer.kubeflow.org", "clustertrainingruntimes", "get") in granted(runtimes_role(default))


# --- Kubeflow Trainer v2: the chart's ClusterTrainingRuntime and the engine choice -------------------------


def test_the_chart_runtime_is_a_valid_non_root_torch_runtime_with_the_trainer_image(trainer_schemas: SchemaSet) -> None:
    out = render(VALUE_SETS["runtime-custom"])
    runtime = out.one("ClusterTrainingRuntime")
    trainer_schemas.validate(runtime)
    assert runtime["metadata"]["name"] == "autox-gpu" and "namespace" not in runtime["metadata"]  # cluster-scoped
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"  # what the TrainJob's runtimePatches (and Trainer's torch plugin) address
    assert job["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (c,) = pod["containers"]
    assert c["name"] == "node" and c["image"] == f"ghcr.io/autox/autox-video-trainer:{APP_VERSION}"
    assert c["command"] == ["autox-entrypoint"] and c["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert volumes["config"]["configMap"]["optional"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/autox", "/data", "/dev/shm"}
    assert env_of(out)["AUTOX_TRAINING_RUNTIME"] == "autox-gpu"
    assert render(VALUE_SETS["backend-pytorchjob"]).of_kind("ClusterTrainingRuntime") == []
    assert render().of_kind("ClusterTrainingRuntime") == []  # auto: an offline render has no Trainer API to see


@pytest.mark.parametrize("backend", ["auto", "pytorchjob", "trainjob"])
def test_the_backend_value_reaches_the_operator_and_notes(backend: str) -> None:
    out = render({"trainer": {"backend": backend}})
    assert env_of(out)["AUTOX_TRAINER_BACKEND"] == backend
    assert f"trainer.backend={backend}" in out.notes


# What the ServiceMonitor CRD (prometheus-operator, monitoring.coreos.com_servicemonitors.yaml) accepts as a duration.
PROMETHEUS_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


@pytest.mark.parametrize("case", ["defaults", "metrics-service-monitor"])
def test_metrics_service_reaches_the_port_the_operator_serves(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Service -> the pod's named port -> AUTOX_METRICS_PORT -> the operator's setting: one port, end to end."""
    values = VALUE_SETS[case]
    out = render(values)
    merged = merged_values(values)["metrics"]
    service = out.one("Service")
    assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert service["metadata"].get("annotations") == (merged["service"]["annotations"] or None)
    pod = out.one("Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", merged["port"], "metrics")
    ports = {p["name"]: p["containerPort"] for p in container(out)["ports"]}
    assert ports["metrics"] == merged["port"] and ports["health"] != ports["metrics"]
    monkeypatch.setenv("AUTOX_METRICS_PORT", env_of(out)["AUTOX_METRICS_PORT"])
    assert OperatorSettings.from_env().metrics_port == merged["port"]
    assert len(out.of_kind("ServiceMonitor")) == merged["serviceMonitor"]["enabled"]  # off unless asked for


def test_service_monitor_selects_the_metrics_service() -> None:
    values = VALUE_SETS["metrics-service-monitor"]
    out = render(values)
    monitor, service = out.one("ServiceMonitor"), out.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["name"] == FULLNAME
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # what Prometheus selects by
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert all(PROMETHEUS_DURATION.match(endpoint[k]) for k in ("interval", "scrapeTimeout"))
    # The pod labels the ServiceMonitor's selector would match too are not a Service's: only ours is selected.
    assert [s["metadata"]["name"] for s in out.of_kind("Service")] == [f"{FULLNAME}-metrics"]


def test_metrics_off_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    out = render(VALUE_SETS["metrics-off"])
    assert out.of_kind("Service") == [] and out.of_kind("ServiceMonitor") == []
    assert "metrics" not in {p["name"] for p in container(out)["ports"]}
    monkeypatch.setenv("AUTOX_METRICS_PORT", env_of(out)["AUTOX_METRICS_PORT"])
    assert OperatorSettings.from_env().metrics_port == 0


def test_a_service_monitor_without_metrics_fails_the_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="metrics.serviceMonitor.enabled=true needs metrics.enabled=true"):
        render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})


def test_an_unknown_backend_fails_the_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="trainer.backend=tfjob: expected auto, pytorchjob or trainjob"):
        render({"trainer": {"backend": "tfjob"}})


# --- release name, install, notes -------------------------------------------------------------------------


def test_a_release_named_like_the_chart_is_not_prefixed_twice() -> None:
    out = render(name="autox-video")
    # The chart's runtime is named by trainer.runtime.name (also autox-video by default).
    assert {o["metadata"]["name"] for o in out.objects} == {
        "autox-video",
        "autox-video-runtimes",
        "autox-video-metrics",
        "autox-video-leader",
    }
    assert {b["roleRef"]["name"] for b in out.of_kind("ClusterRoleBinding")} == {"autox-video", "autox-video-runtimes"}


def test_helm_install_dry_run_installs_what_template_renders() -> None:
    """`helm install --dry-run=client`: the release Helm would store holds the rendered objects, in Helm's
    install order (ServiceAccount and RBAC before the Deployment), and the NOTES."""
    values = VALUE_SETS["watch-namespaces"]
    release = install_dry_run(values)
    assert release["name"] == RELEASE and release["namespace"] == NAMESPACE and release["revision"] == 1
    assert release["chart_name"] == "autox-video" and release["app_version"] == APP_VERSION
    out = render(values)
    installed = parse_manifests(release["manifest"])
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(installed, key=key) == sorted(out.objects, key=key)
    assert [o["kind"] for o in installed] == [
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "Deployment",
        *(["ClusterTrainingRuntime"] if values.get("trainer", {}).get("runtime", {}).get("install") is True else []),
    ]
    assert release["notes"].strip() == out.notes.strip()
    assert "CustomResourceDefinition" not in release["manifest"]  # crds/ are installed apart, before it


def test_notes_tell_the_next_command(default: Rendered) -> None:
    notes = default.notes
    assert "kubectl apply -f" in notes and "kubectl get vtj" in notes and "kubectl create secret" in notes
    assert f"installed in namespace {NAMESPACE} and runs the jobs of all namespaces." in notes
    assert f"kubectl -n {NAMESPACE} logs deploy/{FULLNAME}" in notes
    watched = render(VALUE_SETS["watch-namespaces"]).notes
    assert "runs the jobs of namespaces team-a, team-b." in watched and "{{" not in watched
    assert f"port-forward svc/{FULLNAME}-metrics 8081" in notes
    assert "port-forward" not in render(VALUE_SETS["metrics-off"]).notes


def test_every_metrics_value_is_documented() -> None:
    """values.yaml's metrics keys each have a row in the chart README's table."""
    readme = (CHART / "README.md").read_text()

    def leaves(tree: dict[str, Any], prefix: str) -> list[str]:
        return [
            leaf
            for key, value in tree.items()
            for leaf in (leaves(value, f"{prefix}.{key}") if isinstance(value, dict) and value else [f"{prefix}.{key}"])
        ]

    with helm.Chart.load(CHART) as chart:
        keys = leaves(chart.values["metrics"], "metrics")
    assert "metrics.serviceMonitor.enabled" in keys
    undocumented = [k for k in keys if f"`{k}`" not in readme and f"`.{k.rsplit('.', 1)[1]}`" not in readme]
    assert undocumented == []


def test_operator_dockerfile_has_no_torch_and_runs_as_non_root() -> None:
    text = (ROOT / "operator" / "Dockerfile").read_text()
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "torch" not in instructions.replace("'torch' not in sys.modules", "")
    assert "[operator]" in instructions and "[train" not in instructions
    assert re.search(r"^USER 65532", instructions, re.M)
    assert 'ENTRYPOINT ["autox-operator"]' in instructions


# --- HA: two replicas, one active through a Lease --------------------------------------------------------


def test_leader_election_needs_only_its_lease_in_the_release_namespace(default: Rendered) -> None:
    role = default.one("Role")
    assert role["metadata"] == {**role["metadata"], "name": f"{FULLNAME}-leader", "namespace": NAMESPACE}
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [FULLNAME],  # the Lease AUTOX_LEADER_ELECTION names
            "verbs": ["get", "patch"],
        },
    ]
    binding = default.one("RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE and binding["roleRef"]["name"] == f"{FULLNAME}-leader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # What autox_operator.leader calls maps to exactly those verbs.
    source = (ROOT / "operator" / "autox_operator" / "leader.py").read_text()
    calls = set(re.findall(r"\.(\w+)_namespaced_lease\(", source))
    assert {"read": "get", "create": "create", "patch": "patch"}.keys() == calls
    assert env_of(default)["AUTOX_LEADER_ELECTION"] == FULLNAME and env_of(default)["AUTOX_LEASE_DURATION"] == "15"


def test_a_disruption_budget_keeps_one_operator_through_a_drain(default: Rendered) -> None:
    pdb = default.one("PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == NAMESPACE and pdb["spec"]["minAvailable"] == 1
    labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"] == default.one("Deployment")["spec"]["selector"]["matchLabels"]


def test_one_replica_without_election_is_the_old_single_operator() -> None:
    out = render({"operator": {"replicas": 1, "leaderElection": {"enabled": False}}})
    spec = out.one("Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert out.of_kind("PodDisruptionBudget") == [] and out.of_kind("Role") == []
    assert "AUTOX_LEADER_ELECTION" not in env_of(out)
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmRenderError, match="needs operator.leaderElection"):
        chart.render({"operator": {"leaderElection": {"enabled": False}}}, name=RELEASE, namespace=NAMESPACE)
