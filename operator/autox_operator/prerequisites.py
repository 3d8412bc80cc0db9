"""What a job needs before it can start, and why it cannot: a valid spec, its Secret, buckets and
objects, children that are its own; `Waiting` (retry later) or `Invalid` (do not retry) says what to fix.

Shared by the plain jobs (reconcile) and the search driver (search); imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from autox_operator import s3
from autox_operator.builders import Owner, s3_endpoint
from autox_operator.kube import Kube
from autox_operator.settings import OperatorSettings
from autox_operator.status import condition
from autox_video.spec.common import StorageSpec

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The condition a job gets when the operator started it without checking its storage.
CHECKS_SKIPPED = "StorageChecksSkipped"
# The operator's own identity may not see what the pods' identity (spec.serviceAccountName) can.
NO_ACCESS_REASONS = frozenset({"StorageNoCredentials", "StorageAccessDenied"})
M = TypeVar("M", bound=BaseModel)


class Blocked(Exception):
    """The job cannot start now; `reason` is a CamelCase word, the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Waiting(Blocked):
    """A prerequisite is missing but may appear: retry later."""


class Invalid(Blocked):
    """The spec cannot work as written: fail, do not retry."""


def error_reason(err: Exception) -> str:
    """The CamelCase reason of a Blocked or S3Error (a spec that does not validate: InvalidSpec)."""
    return getattr(err, "reason", None) or ("InvalidSpec" if isinstance(err, ValidationError) else type(err).__name__)


def parse_spec(model: type[M], spec: Mapping[str, Any]) -> M:
    """`spec` as `model`; Invalid (InvalidSpec) naming the first field that does not validate."""
    try:
        return model.model_validate(dict(spec))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(["spec", *(str(p) for p in first["loc"])])
        value = f"={first['input']!r}" if "input" in first and first["loc"] else ""
        raise Invalid("InvalidSpec", f"{where}{value}: {first['msg']}") from None


def storage_access(kube: Kube, namespace: str, storage: StorageSpec, settings: OperatorSettings) -> s3.S3Access:
    """S3 endpoint, region and the credentials from spec.storage.secretRef (read through the API)."""
    endpoint = s3_endpoint(storage, settings)
    if storage.secret_ref is None or not settings.read_secrets:  # the operator's own ambient credentials
        return s3.S3Access(endpoint, storage.region)
    data = kube.read_secret(namespace, storage.secret_ref)
    if data is None:
        raise Waiting(
            "SecretNotFound",
            f"Secret {storage.secret_ref!r} not found in namespace {namespace!r}: "
            f"create it with keys {' and '.join(SECRET_KEYS)}, or fix spec.storage.secretRef",
        )
    missing = [key for key in SECRET_KEYS if not data.get(key)]
    if missing:
        raise Waiting(
            "SecretKeyMissing",
            f"Secret {storage.secret_ref!r} has no {', '.join(missing)}: add "
            f"{'it' if len(missing) == 1 else 'them'}, or fix spec.storage.secretRef",
        )
    return s3.S3Access(endpoint, storage.region, data[SECRET_KEYS[0]], data[SECRET_KEYS[1]])


def preflight(access: s3.S3Access, *, buckets: list[str], objects: list[tuple[str, str]]) -> None:
    """Buckets reachable and present, and the given objects there; `objects` is [(uri, field to fix)]."""
    try:
        seen: set[str] = set()
        for uri in buckets:
            bucket, _ = s3.split_uri(uri)
            if bucket not in seen:
                seen.add(bucket)
                s3.check_bucket(access, uri)
        for uri, field in objects:
            if not s3.exists(access, uri):
                raise Waiting(
                    "ObjectNotFound", f"{uri} does not exist at {access.describe()}: upload it, or fix {field}"
                )
    except s3.S3Error as err:
        raise Waiting(err.reason, str(err)) from None


def check_storage(
    kube: Kube,
    namespace: str,
    storage: StorageSpec,
    settings: OperatorSettings,
    *,
    buckets: list[str],
    objects: list[tuple[str, str]],
) -> dict[str, Any] | None:
    """The preflight where the operator can run it: None when it passed; a StorageChecksSkipped condition
    when checks are off or, with no Secret (workload identity), the operator's own credentials may not
    look. The job then starts anyway: its pods use their own identity."""
    if not settings.read_secrets:
        return condition(
            CHECKS_SKIPPED,
            "True",
            "ChecksOff",
            "the operator does not read Secrets (chart value operator.readSecrets: false), so it did not "
            "check the buckets and objects; the pods use their own credentials",
        )
    access = storage_access(kube, namespace, storage, settings)
    try:
        preflight(access, buckets=buckets, objects=objects)
    except Waiting as err:
        if storage.secret_ref is not None or err.reason not in NO_ACCESS_REASONS:
            raise
        return condition(
            CHECKS_SKIPPED,
            "True",
            "OperatorHasNoAccess",
            f"the operator's own credentials cannot check the storage ({err.message}); started anyway: the pods "
            "use their service account's identity (spec.serviceAccountName)",
        )
    return None


def with_condition(fields: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """`fields` with the condition `extra` among its conditions (replacing one of the same type)."""
    if extra is None:
        return fields
    kept = [c for c in fields.get("conditions") or [] if c.get("type") != extra["type"]]
    return {**fields, "conditions": [*kept, dict(extra)]}


def check_child_owner(kind: str, meta: Mapping[str, Any], owner: Owner) -> None:
    """Raise unless the child `meta` describes is `owner`'s: Waiting while a deleted job of the same
    kind and name is still being garbage-collected (delete + re-create), Invalid for anyone else's."""
    refs = meta.get("ownerReferences") or []
    if owner.uid in {ref.get("uid") for ref in refs}:
        return
    name = meta.get("name")
    predecessor = any(ref.get("kind") == owner.kind and ref.get("name") == owner.name for ref in refs)
    if predecessor or meta.get("deletionTimestamp"):
        raise Waiting(
            "PreviousJobBeingDeleted",
            f"{kind} {name!r} of a deleted {owner.kind} named {owner.name!r} is still being deleted: "
            "this job starts once it is gone",
        )
    raise Invalid(
        "NameConflict",
        f"{kind} {name!r} already exists and belongs to another owner: "
        f"delete it, or give this {owner.kind} another name",
    )
