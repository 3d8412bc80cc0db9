"""The handful of Kubernetes API calls the handlers make (official `kubernetes` client, sync).

Idempotent where it matters: creating an object that exists returns the existing one.
"""

from __future__ import annotations

import base64
import os
from typing import Any, cast

import kubernetes.client
import kubernetes.config
from kubernetes.client.rest import ApiException

from autox_operator import constants as C
from autox_operator import metrics, outages
from autox_operator.children import Engine


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account, else the kubeconfig: $KUBECONFIG (read now, not at import) or ~/.kube/config."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=config
        )
    return config


def connection_info(config: kubernetes.client.Configuration) -> dict[str, Any]:
    """kopf.ConnectionInfo keyword arguments for the same cluster and credentials as `config`."""
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return {
        "server": config.host,
        "ca_path": config.ssl_ca_cert,
        "insecure": not config.verify_ssl,
        "username": config.username or None,
        "password": config.password or None,
        "scheme": scheme,
        "token": token,
        "certificate_path": config.cert_file,
        "private_key_path": config.key_file,
    }


# (connect, read) seconds of a call that names no timeout: a handler never hangs on an API server that
# accepts connections but does not answer (one restarting behind a load balancer, a half-open connection).
REQUEST_TIMEOUT = (10.0, 30.0)


class ApiClient(kubernetes.client.ApiClient):
    """The official client, with a timeout on every call; each call tells the outage log whether the API
    server answered."""

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:  # the generated API methods always pass it, None by default
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        try:
            result = super().call_api(*args, **kwargs)
        except ApiException as err:
            if err.status not in outages.UNAVAILABLE_STATUSES:
                outages.TRACKER.api_up()  # an answer (404, 409, ...) is the API server's own
            else:
                outages.TRACKER.api_down(err)
            raise
        except Exception as err:
            if outages.unreachable(err) == "api":
                outages.TRACKER.api_down(err)
            raise
        outages.TRACKER.api_up()
        return result


class Kube:
    """Typed-enough access to our resources, their children (PyTorchJobs, TrainJobs), ConfigMaps and Secrets."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    @classmethod
    def from_environment(cls) -> Kube:
        return cls(ApiClient(load_configuration()))

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self.api_client.configuration.host)

    def ping(self) -> None:
        """GET /version: raises while the API server cannot be reached or is unavailable (the outage probe)."""
        try:
            kubernetes.client.VersionApi(self.api_client).get_code(_request_timeout=3)
        except ApiException as err:
            if err.status in outages.UNAVAILABLE_STATUSES:
                raise  # a load balancer in front of no API server, or one still starting
            # Any other answer comes from the API server itself: it is reachable.

    # --- our custom resources ---

    def get_job(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            job = self.custom.get_namespaced_custom_object(C.CR_GROUP, C.CR_VERSION, namespace, plural, name)
            return cast(dict[str, Any], job)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch_job_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource (a handler's `patch` only reaches the object it handles)."""
        self.custom.patch_namespaced_custom_object_status(
            C.CR_GROUP, C.CR_VERSION, namespace, plural, name, {"status": status}
        )

    # --- children: PyTorchJobs or TrainJobs (group/version/plural from the engine) ---

    def get_child(self, engine: Engine, namespace: str, name: str) -> dict[str, Any] | None:
        """The child, or None when there is no such object."""
        try:
            job = self.custom.get_namespaced_custom_object(engine.group, engine.version, namespace, engine.plural, name)
            return cast(dict[str, Any], job)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create_child(self, engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
        """Create it, or return the one that already exists under that name."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            created = self.custom.create_namespaced_custom_object(
                engine.group, engine.version, namespace, engine.plural, body
            )
            owner = next(iter(body["metadata"].get("ownerReferences") or []), {})
            metrics.child_created(owner.get("kind") or "", engine.kind)
            return cast(dict[str, Any], created)
        except ApiException as err:
            if err.status != 409:
                raise
        existing = self.get_child(engine, namespace, name)
        if existing is None:  # deleted between the two calls: the next retry creates it
            raise RuntimeError(f"{engine.kind} {namespace}/{name} vanished while being created")
        return existing

    def patch_child(self, engine: Engine, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the child (the operator only ever patches its suspend field)."""
        self.custom.patch_namespaced_custom_object(engine.group, engine.version, namespace, engine.plural, name, patch)

    def patch_child_status(self, engine: Engine, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the child's status subresource (a TrainJob's trainerStatus)."""
        self.custom.patch_namespaced_custom_object_status(
            engine.group, engine.version, namespace, engine.plural, name, patch
        )

    def list_children(self, engine: Engine, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The children in `namespace` that carry all these labels."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        listed = self.custom.list_namespaced_custom_object(
            engine.group, engine.version, namespace, engine.plural, label_selector=selector
        )
        items = cast(list[dict[str, Any]], listed.get("items") or [])
        # Filtered here too: the selector is a server-side convenience, the labels are the contract.
        return [
            i for i in items if all((i.get("metadata") or {}).get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def delete_child(self, engine: Engine, namespace: str, name: str) -> None:
        """Delete it (its pods go with it); gone already is fine."""
        try:
            self.custom.delete_namespaced_custom_object(
                engine.group, engine.version, namespace, engine.plural, name, propagation_policy="Background"
            )
        except ApiException as err:
            if err.status != 404:
                raise

    # --- KServe InferenceServices (spec.serving of a VideoTrainingJob) ---

    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService, or None when there is no such object."""
        try:
            isvc = self.custom.get_namespaced_custom_object(
                C.KSERVE_GROUP, C.KSERVE_VERSION, namespace, C.ISVC_PLURAL, name
            )
            return cast(dict[str, Any], isvc)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create_inference_service(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create it, or return the one that already exists under that name."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            created = self.custom.create_namespaced_custom_object(
                C.KSERVE_GROUP, C.KSERVE_VERSION, namespace, C.ISVC_PLURAL, body
            )
            return cast(dict[str, Any], created)
        except ApiException as err:
            if err.status != 409:
                raise
        existing = self.get_inference_service(namespace, name)
        if existing is None:  # deleted between the two calls: the next pass creates it
            raise RuntimeError(f"InferenceService {namespace}/{name} vanished while being created")
        return existing

    def patch_inference_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch it (a changed spec.serving)."""
        patched = self.custom.patch_namespaced_custom_object(
            C.KSERVE_GROUP, C.KSERVE_VERSION, namespace, C.ISVC_PLURAL, name, patch
        )
        return cast(dict[str, Any], patched)

    def delete_inference_service(self, namespace: str, name: str) -> None:
        """Delete it (spec.serving.enabled false); gone already is fine."""
        try:
            self.custom.delete_namespaced_custom_object(
                C.KSERVE_GROUP, C.KSERVE_VERSION, namespace, C.ISVC_PLURAL, name, propagation_policy="Background"
            )
        except ApiException as err:
            if err.status != 404:
                raise

    # --- API discovery and Trainer runtimes ---

    def served(self, group: str, version: str) -> set[str]:
        """The resources (plurals) the API server serves under group/version; empty when it serves none."""
        try:
            found = self.custom.get_api_resources(group, version)  # GET /apis/{group}/{version}: discovery
        except ApiException as err:
            if err.status in (404, 503):  # not installed, or its API service is down
                return set()
            raise
        return {r.name for r in found.resources or [] if "/" not in r.name}

    def get_training_runtime(self, name: str) -> dict[str, Any] | None:
        """The ClusterTrainingRuntime `name` (cluster-scoped), or None."""
        try:
            runtime = self.custom.get_cluster_custom_object(
                C.TRAINJOB_GROUP, C.TRAINJOB_VERSION, C.RUNTIME_PLURAL, name
            )
            return cast(dict[str, Any], runtime)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    # --- ConfigMaps and Secrets ---

    def apply_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the ConfigMap, or bring the data of an existing one with the same owner up to date.

        Returns the metadata of the ConfigMap now there: one with another owner is left untouched.
        """
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.core.create_namespaced_config_map(namespace, body)
            return cast(dict[str, Any], body["metadata"])
        except ApiException as err:
            if err.status != 409:
                raise
        existing = self.core.api_client.sanitize_for_serialization(
            self.core.read_namespaced_config_map(name, namespace)
        )
        meta = cast(dict[str, Any], existing.get("metadata") or {})
        ours = {ref["uid"] for ref in body["metadata"].get("ownerReferences", [])}
        if ours & {ref.get("uid") for ref in meta.get("ownerReferences") or []}:
            self.core.patch_namespaced_config_map(name, namespace, {"data": body["data"]})
        return meta

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None if there is no such Secret."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        data = secret.data or {}
        return {key: base64.b64decode(value).decode("utf-8", "replace") for key, value in data.items()}
