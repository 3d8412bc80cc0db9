"""Kubernetes Pod Security Standards, "restricted" profile (which includes "baseline"), as checks on a pod spec.

The rules and their allowed values follow https://kubernetes.io/docs/concepts/security/pod-security-standards/
(policy version latest). Each rule is a function (pod spec, pod metadata) -> one message per violation, so a
test can assert each rule on its own. `restricted_violations` / `assert_restricted` run them all: reuse them
for any pod the operator builds (PyTorchJob replicas, TrainJob runtimes and patches, InferenceService predictors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Pod = Mapping[str, Any]
Rule = Callable[[Pod, Mapping[str, Any]], list[str]]

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def containers(pod: Pod) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container of the pod (init and ephemeral ones too), with a name for messages."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(field) or []:
            yield f"{field}[{c.get('name', '?')}]", c


def _sc(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


def host_process(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: no Windows HostProcess pods."""
    out = ["pod: windowsOptions.hostProcess"] if (_sc(pod).get("windowsOptions") or {}).get("hostProcess") else []
    return out + [
        f"{n}: windowsOptions.hostProcess"
        for n, c in containers(pod)
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess")
    ]


def host_namespaces(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: hostNetwork, hostPID, hostIPC unset or false."""
    return [f"pod: {f}" for f in ("hostNetwork", "hostPID", "hostIPC") if pod.get(f)]


def privileged(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: no privileged container."""
    return [f"{n}: privileged" for n, c in containers(pod) if _sc(c).get("privileged")]


def capabilities(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: every container drops ALL and adds nothing but NET_BIND_SERVICE (within baseline's list)."""
    out = []
    for n, c in containers(pod):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{n}: capabilities.drop lacks ALL")
        out += [f"{n}: capabilities.add {a}" for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
    return out


def host_path(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: no hostPath volume."""
    return [f"volume {v.get('name')}: hostPath" for v in pod.get("volumes") or [] if "hostPath" in v]


def host_ports(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: no hostPort (0 means none)."""
    return [
        f"{n}: hostPort {p['hostPort']}" for n, c in containers(pod) for p in c.get("ports") or [] if p.get("hostPort")
    ]


def apparmor(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: AppArmor unset, RuntimeDefault or Localhost (field and legacy annotation)."""
    out = []
    for where, sc in [("pod", _sc(pod)), *((n, _sc(c)) for n, c in containers(pod))]:
        kind = (sc.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in APPARMOR_TYPES:
            out.append(f"{where}: appArmorProfile {kind}")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(APPARMOR_PREFIX) and value != "runtime/default" and not value.startswith("localhost/"):
            out.append(f"annotation {key}: {value}")
    return out


def selinux(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: seLinuxOptions.type only a container type; user and role unset."""
    out = []
    for where, sc in [("pod", _sc(pod)), *((n, _sc(c)) for n, c in containers(pod))]:
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in SELINUX_TYPES:
            out.append(f"{where}: seLinuxOptions.type {opts['type']}")
        out += [f"{where}: seLinuxOptions.{k}" for k in ("user", "role") if opts.get(k)]
    return out


def proc_mount(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: procMount unset or Default."""
    return [
        f"{n}: procMount {_sc(c)['procMount']}"
        for n, c in containers(pod)
        if _sc(c).get("procMount", "Default") != "Default"
    ]


def seccomp(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: RuntimeDefault or Localhost on the pod, or on every container; never Unconfined."""
    pod_type = (_sc(pod).get("seccompProfile") or {}).get("type")
    out = [f"pod: seccompProfile {pod_type}"] if pod_type is not None and pod_type not in SECCOMP_TYPES else []
    for n, c in containers(pod):
        kind = (_sc(c).get("seccompProfile") or {}).get("type", pod_type)
        if kind not in SECCOMP_TYPES:
            out.append(f"{n}: seccompProfile {kind}")
    return out


def sysctls(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Baseline: only the safe sysctls."""
    return [f"pod: sysctl {s.get('name')}" for s in _sc(pod).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]


def volume_types(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: each volume's source is one of the allowed types."""
    out = []
    for v in pod.get("volumes") or []:
        sources = set(v) - {"name"}
        if not sources or not sources <= ALLOWED_VOLUME_TYPES:
            out.append(f"volume {v.get('name')}: {sorted(sources)}")
    return out


def privilege_escalation(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: every container sets allowPrivilegeEscalation: false."""
    return [
        f"{n}: allowPrivilegeEscalation not false"
        for n, c in containers(pod)
        if _sc(c).get("allowPrivilegeEscalation") is not False
    ]


def run_as_non_root(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: runAsNonRoot true on the pod (no container setting false) or on every container."""
    pod_value = _sc(pod).get("runAsNonRoot")
    return [
        f"{n}: runAsNonRoot not true" for n, c in containers(pod) if _sc(c).get("runAsNonRoot", pod_value) is not True
    ]


def run_as_user(pod: Pod, meta: Mapping[str, Any]) -> list[str]:
    """Restricted: runAsUser is never 0 (pod or container)."""
    out = ["pod: runAsUser 0"] if _sc(pod).get("runAsUser") == 0 else []
    return out + [f"{n}: runAsUser 0" for n, c in containers(pod) if _sc(c).get("runAsUser") == 0]


# name -> check; baseline's first, then restricted's own.
RULES: dict[str, Rule] = {
    "host_process": host_process,
    "host_namespaces": host_namespaces,
    "privileged": privileged,
    "capabilities": capabilities,
    "host_path": host_path,
    "host_ports": host_ports,
    "apparmor": apparmor,
    "selinux": selinux,
    "proc_mount": proc_mount,
    "seccomp": seccomp,
    "sysctls": sysctls,
    "volume_types": volume_types,
    "privilege_escalation": privilege_escalation,
    "run_as_non_root": run_as_non_root,
    "run_as_user": run_as_user,
}


def restricted_violations(pod: Pod, meta: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Each broken rule's messages ({} when the pod spec satisfies the restricted profile)."""
    found = {name: rule(pod, meta or {}) for name, rule in RULES.items()}
    return {name: msgs for name, msgs in found.items() if msgs}


def assert_restricted(pod: Pod, meta: Mapping[str, Any] | None = None) -> None:
    """Fail with every violation when `pod` (a pod spec) breaks the restricted profile."""
    bad = restricted_violations(pod, meta)
    assert not bad, f"Pod Security 'restricted' violated: {bad}"


def pod_templates(obj: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, pod template) of a PyTorchJob, a ClusterTrainingRuntime, a JobSet-like or a Deployment-like object."""
    spec = obj.get("spec") or {}
    if "pytorchReplicaSpecs" in spec:
        return [(f"{k}", r["template"]) for k, r in spec["pytorchReplicaSpecs"].items()]
    if "template" in spec and "replicatedJobs" in (spec["template"].get("spec") or {}):
        return [(j["name"], j["template"]["spec"]["template"]) for j in spec["template"]["spec"]["replicatedJobs"]]
    if "template" in spec:
        return [("template", spec["template"])]
    raise ValueError(f"no pod template in a {obj.get('kind')}")
