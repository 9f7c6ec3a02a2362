"""Model registry: a new version per changed run; the alias moves only to a better model.

Gating: see `multitune.tracking.gate` (both versions scored against this run's single-task
validation metrics; a "hurts" verdict is not eligible by default; a holder measured on other
data is not comparable). Every new version says what happened in its `gate` tag (one line,
naming the holder it was compared against) and is tagged `challenger` when it does not hold
the alias: from the start, or from when a better version took the alias from it (its `gate`
line then ends `lost <alias> to v<N>`). So exactly one version, the holder, is untagged. The
test split never chooses: its figures are reported (version tags `test.*`). A version
carries a `fingerprint` tag (a hash of params, data and code); registering again with an
unchanged fingerprint returns the existing version and registers nothing.

Concurrency: `register` reads the holder, registers the version and moves the alias while
holding the registry lock of the model (`multitune.tracking.registry_lock`): a registered
model named `<name>.lock`, with no versions, that exists only during a registration. Two
final stages finishing together against one tracking server thus register one after the
other, and the second is gated against the first's outcome, as if they had run in turn. A
lock left by a killed process is broken after 10 minutes; to go on sooner, delete that
registered model. Lock models hold no versions, so version searches never see them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

import multitune
from multitune import logs
from multitune.tracking.gate import (
    DELTA_M,
    EVAL_DATA_HASH,
    GATE,
    VAL_PREFIX,
    VERDICT,
    Decision,
    Evidence,
    Holder,
    Metrics,
    Verdict,
    decide,
    gate_tags,
)
from multitune.tracking.registry_lock import STALE_S, WAIT_S, registry_lock

__all__ = [
    "CHALLENGER",
    "DELTA_M",
    "EVAL_DATA_HASH",
    "FINGERPRINT",
    "GATE",
    "VAL_PREFIX",
    "VERDICT",
    "Decision",
    "Evidence",
    "Holder",
    "Metrics",
    "Outcome",
    "Registration",
    "Verdict",
    "code_hash",
    "decide",
    "existing_version",
    "fingerprint",
    "package_code_hash",
    "register",
    "unchanged",
]

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint"
CHALLENGER = "challenger"

Outcome = Literal["alias moved", "challenger", "unchanged"]


@dataclass(frozen=True)
class Registration:
    """What happened in the registry.

    Attributes:
        name: The registered model.
        version: The version this run corresponds to (new, or the unchanged existing one).
        outcome: "alias moved", "challenger" or "unchanged" (nothing registered).
        alias: The alias gated.
        holder_version: Who holds the alias afterwards (None when nobody does).
        previous_version: Who held it before (None when nobody did).
        previous_delta_m: The previous holder's validation Δm (percent) against this run's
            baselines, recomputed from its stored metrics; None when not comparable.
        delta_m: The new version's validation Δm (percent) against the same baselines.
        gate: One line saying why the alias moved or stayed (also the version's `gate` tag).
    """

    name: str
    version: str
    outcome: Outcome
    alias: str
    holder_version: str | None
    previous_version: str | None = None
    previous_delta_m: float | None = None
    delta_m: float | None = None
    gate: str = ""


def code_hash(package_dir: Path) -> str:
    """A short hash of the package's Python sources (names and contents, in name order)."""
    digest = hashlib.sha256()
    for file in sorted(Path(package_dir).rglob("*.py")):
        digest.update(str(file.relative_to(package_dir)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def package_code_hash() -> str:
    """`code_hash` of the installed multitune package (read once per process)."""
    return code_hash(Path(multitune.__file__).parent)


def fingerprint(params_hash: str, data_hash: str, code: str) -> str:
    """The identity of a registration: same params, data and code -> same fingerprint."""
    return hashlib.sha256(f"{params_hash}:{data_hash}:{code}".encode()).hexdigest()[:16]


def _client() -> MlflowClient:
    return MlflowClient()


def existing_version(name: str, fp: str, client: MlflowClient | None = None) -> str | None:
    """The version of `name` registered with fingerprint `fp`, if any."""
    client = client or _client()
    versions: list[ModelVersion]
    try:
        versions = list(
            client.search_model_versions(f"name = '{name}' and tags.{FINGERPRINT} = '{fp}'")
        )
    except MlflowException:  # a store without tag filters: scan
        versions = [
            v
            for v in client.search_model_versions(f"name = '{name}'")
            if v.tags.get(FINGERPRINT) == fp
        ]
    return str(max(int(v.version) for v in versions)) if versions else None


def _holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points at; None when the model or the alias does not exist (a
    store that cannot answer raises: it must not look like an empty alias)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def unchanged(
    name: str, alias: str, version: str, client: MlflowClient | None = None
) -> Registration:
    """The registration of a run whose fingerprint is registered already: nothing changes."""
    holder = _holder(client or _client(), name, alias)
    return Registration(
        name,
        version,
        "unchanged",
        alias,
        str(holder.version) if holder else None,
        gate=f"unchanged: v{version} has this fingerprint; nothing registered",
    )


def _displace(
    client: MlflowClient, name: str, alias: str, old: ModelVersion, new_version: str
) -> None:
    """Tag the alias's previous holder a challenger: a better version has taken the alias."""
    line = str((old.tags or {}).get(GATE, ""))
    lost = f"lost {alias} to v{new_version}"
    client.set_model_version_tag(name, old.version, GATE, f"{line}; {lost}" if line else lost)
    client.set_model_version_tag(name, old.version, CHALLENGER, "true")


def register(
    model_uri: str,
    name: str,
    alias: str,
    *,
    evidence: Evidence,
    fp: str,
    tags: Mapping[str, Any],
    allow_hurts: bool = False,
    description: str = "",
    client: MlflowClient | None = None,
    lock_wait_s: float = WAIT_S,
    lock_stale_s: float = STALE_S,
) -> Registration:
    """Register `model_uri` as a new version of `name` and gate `alias` (see `decide`).

    Holds the model's registry lock from reading the holder to moving the alias, so
    concurrent registrations are gated one after the other (see the module docstring).

    Args:
        model_uri: The logged model (`ModelInfo.model_uri`).
        name: Registered model name.
        alias: The serving alias.
        evidence: The new model's validation metrics, this run's single-task validation
            metrics, the eval data hash and the verdict.
        fp: Its fingerprint (see `fingerprint`); an existing version with it is returned
            as "unchanged" and nothing is registered.
        tags: Extra version tags (git commit, params hash, per-task test metrics...).
        allow_hurts: Let a version whose verdict is "hurts" take the alias
            (`registry.allow_hurts`).
        description: The new version's description.
        client: Registry client (default: the current tracking/registry URI).
        lock_wait_s: How long to wait for another registration's lock.
        lock_stale_s: A lock older than this is a killed holder's, and is broken.

    Returns:
        What happened.

    Raises:
        UserError: The registry lock stayed taken for `lock_wait_s`.
    """
    client = client or _client()
    found = existing_version(name, fp, client)
    if found is not None:  # the common rerun: no need to wait for the lock
        return unchanged(name, alias, found, client)
    purpose = f"registering a version of {name!r} and gating its alias {alias!r}"
    with registry_lock(client, name, purpose=purpose, wait_s=lock_wait_s, stale_s=lock_stale_s):
        # Again under the lock: a concurrent run with this fingerprint may just have finished.
        found = existing_version(name, fp, client)
        if found is not None:
            return unchanged(name, alias, found, client)
        before = _holder(client, name, alias)
        holder = (
            Holder.from_tags(str(before.version), dict(before.tags or {}))
            if before is not None
            else None
        )
        decision = decide(evidence, holder, alias=alias, allow_hurts=allow_hurts)
        all_tags = {str(k): str(v) for k, v in tags.items()}
        all_tags.update(gate_tags(evidence, decision))
        all_tags[FINGERPRINT] = fp
        if not decision.takes:
            all_tags[CHALLENGER] = "true"
        return _write(client, model_uri, name, alias, before, decision, all_tags, description)


def _write(
    client: MlflowClient,
    model_uri: str,
    name: str,
    alias: str,
    before: ModelVersion | None,
    decision: Decision,
    tags: dict[str, str],
    description: str,
) -> Registration:
    """`register`'s writes, with the registry lock held: the new version of `name`, and
    `alias` moved to it from `before` (None: nobody holds it) when `decision` says so."""
    previous = str(before.version) if before is not None else None
    with _unsaid():
        version = mlflow.register_model(model_uri, name, tags=tags)
    if description:
        client.update_model_version(name, version.version, description=description)
    if decision.takes:
        client.set_registered_model_alias(name, alias, version.version)
        if before is not None:
            _displace(client, name, alias, before, str(version.version))
        outcome: Outcome = "alias moved"
        now_holder = str(version.version)
    else:
        outcome = "challenger"
        now_holder = previous or ""
    logger.info("registered %s version %s: %s (%s)", name, version.version, outcome, decision.line)
    return Registration(
        name,
        str(version.version),
        outcome,
        alias,
        now_holder or None,
        previous_version=previous,
        previous_delta_m=decision.holder_delta_m,
        delta_m=decision.delta_m,
        gate=decision.line,
    )


@contextlib.contextmanager
def _unsaid() -> Iterator[None]:
    """Without MLflow's own lines ("Successfully registered model 'x'.", "Created version
    '1' of model 'x'.", printed, not logged) in a quiet stage (`multitune.logs`): the stage
    says what happened to the model in its own line."""
    if not logs.quiet():
        yield
        return
    before = MLFLOW_LOGGING_STREAM.enabled
    MLFLOW_LOGGING_STREAM.enabled = False
    try:
        yield
    finally:
        MLFLOW_LOGGING_STREAM.enabled = before
