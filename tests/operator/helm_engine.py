"""Helm's own engine for the chart tests, and a strict check of rendered objects against the Kubernetes API types.

Rendering, linting and (client-side dry-run) installing go through `helm-python-sdk`: Helm v4's Go SDK
(`libhelm_c`) through ctypes, so what is checked is what `helm template`, `helm lint --strict` and
`helm install --dry-run=client` produce, with no helm binary.

Built-in kinds (Deployment, RBAC, ServiceAccount, CRDs) have no CRD schema to validate against; the
`kubernetes` client's models are generated from the API server's OpenAPI document, so `api_type_errors`
walks an object against them: unknown fields (a typo, a value at the wrong indentation), JSON types
(`value: 15` where an EnvVar needs a string) and required fields.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from k8s_schemas import ROOT
from kubernetes import client

CHART = ROOT / "charts" / "autox-video"
RELEASE = "t"
NAMESPACE = "autox-system"
KUBE_VERSION = "v1.30.0"  # lint's deprecated-API check is against this version
# A cluster that is never there: a client-side dry run must not need one (and must not touch a real one).
NO_CLUSTER_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def parse_manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Rendered:
    """What `helm template` gives for one set of values: each template's text, and its objects in order."""

    files: dict[str, str]  # template path (chart-relative, e.g. templates/rbac.yaml) -> rendered text

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [
            doc for path, text in sorted(self.files.items()) if path.endswith(".yaml") for doc in parse_manifests(text)
        ]

    @property
    def notes(self) -> str:
        return self.files["templates/NOTES.txt"]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.objects if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (doc,) = self.of_kind(kind)
        return doc


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """`helm template NAME CHART --namespace NAMESPACE` with `values` over the chart's defaults."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=name, namespace=namespace, is_install=True)
    prefix = f"{CHART.name}/"
    return Rendered({path.removeprefix(prefix): text for path, text in files.items()})


def lint(path: Path = CHART, values: dict[str, Any] | None = None, *, strict: bool = True) -> dict[str, Any]:
    """`helm lint --strict`: a report whose `errors` are the findings of severity warning or worse."""
    return helm.lint(path, values, strict=strict, namespace=NAMESPACE, kube_version=KUBE_VERSION)


def install_dry_run(values: dict[str, Any] | None = None, *, name: str = RELEASE) -> dict[str, Any]:
    """`helm install NAME CHART --dry-run=client`: the release Helm would store (manifest in install order)."""
    with helm.Config(kubeconfig_content=NO_CLUSTER_KUBECONFIG, namespace=NAMESPACE, storage_driver="memory") as cfg:
        return cfg.install(str(CHART), name, values, namespace=NAMESPACE, dry_run="client")


def merged_values(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart's defaults coalesced with `values`, as an install would (Helm's own merge)."""
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


def chart_crds() -> dict[str, str]:
    """The CRDs Helm installs from the chart's crds/: file name -> text."""
    with helm.Chart.load(CHART) as chart:
        return {Path(crd["filename"]).name: crd["data"] for crd in chart.crds}


# --- the Kubernetes API types ---------------------------------------------------------------------------

MODELS = {
    ("v1", "ServiceAccount"): client.V1ServiceAccount,
    ("v1", "ConfigMap"): client.V1ConfigMap,
    ("v1", "Service"): client.V1Service,
    ("apps/v1", "Deployment"): client.V1Deployment,
    ("policy/v1", "PodDisruptionBudget"): client.V1PodDisruptionBudget,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): client.V1ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): client.V1ClusterRoleBinding,
    ("rbac.authorization.k8s.io/v1", "Role"): client.V1Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): client.V1RoleBinding,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): client.V1CustomResourceDefinition,
}
# Quantities are strings in the client's models but the API also takes plain numbers (`cpu: 1`).
QUANTITY_MAPS = {(client.V1ResourceRequirements, "limits"), (client.V1ResourceRequirements, "requests")}
PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
GENERIC = re.compile(r"^(list|dict)\[(?:str, )?(.+)\]$")


@functools.cache
def required_fields(model: type) -> frozenset[str]:
    """The model's attributes whose setter rejects None (the OpenAPI document's `required`)."""
    probe = model.__new__(model)
    probe.local_vars_configuration = client.Configuration()
    required = set()
    for attr in model.openapi_types:
        try:
            setattr(probe, attr, None)
        except ValueError:
            required.add(attr)
    return frozenset(required)


def _type_errors(value: Any, type_name: str, path: str, *, quantity: bool = False) -> list[str]:
    if type_name == "object":  # IntOrString, RawExtension, JSON: anything
        return []
    if match := GENERIC.match(type_name):
        container, inner = match.groups()
        if container == "list":
            if not isinstance(value, list):
                return [f"{path}: expected a list, got {value!r}"]
            return [err for i, item in enumerate(value) for err in _type_errors(item, inner, f"{path}[{i}]")]
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {value!r}"]
        return [
            err
            for key, item in value.items()  # a quantity map takes strings or numbers
            for err in _type_errors(item, "float" if quantity and not isinstance(item, str) else inner, f"{path}.{key}")
        ]
    if type_name in PRIMITIVES:
        types = PRIMITIVES[type_name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            return [f"{path}: expected {type_name}, got {value!r}"]
        return []
    if type_name == "datetime":
        return [] if isinstance(value, str) else [f"{path}: expected a timestamp string, got {value!r}"]
    return _model_errors(value, getattr(client, type_name), path)


def _model_errors(obj: Any, model: type, path: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{path}: expected a {model.__name__} object, got {obj!r}"]
    attr_of = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = [f"{path}.{key}: unknown field of {model.__name__}" for key in obj if key not in attr_of]
    errors += [
        f"{path}.{model.attribute_map[attr]}: required by {model.__name__}"
        for attr in sorted(required_fields(model))
        if obj.get(model.attribute_map[attr]) is None
    ]
    for key, value in obj.items():
        if key in attr_of and value is not None:
            attr = attr_of[key]
            quantity = (model, attr) in QUANTITY_MAPS
            errors += _type_errors(value, model.openapi_types[attr], f"{path}.{key}", quantity=quantity)
    return errors


def api_type_errors(obj: dict[str, Any]) -> list[str]:
    """Every way `obj` is not a valid object of its apiVersion/kind (empty when it is)."""
    model = MODELS.get((obj.get("apiVersion"), obj.get("kind")))
    if model is None:
        return [f"no API type known for {obj.get('apiVersion')}/{obj.get('kind')}: add it to MODELS"]
    return _model_errors(obj, model, obj["kind"])
