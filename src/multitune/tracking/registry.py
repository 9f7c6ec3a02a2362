"""Model registry: a new version per changed run; the alias moves only to a better model.

Gating: the alias (`registry.alias`, default `champion`) moves to the new version when its
*validation* Δm beats the current holder's (or nothing holds the alias, or the holder has no
validation Δm); otherwise the new version is tagged `challenger`. The test split never chooses:
its figures are reported (version tags `test.*`), not compared. A version carries a
`fingerprint` tag (a hash of params, data and code); registering again with an unchanged
fingerprint returns the existing version and registers nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint"
DELTA_M = "val_delta_m"
"""The version tag the gate compares: validation Δm in percent. (Versions registered before
it carry only a test `delta_m` tag, which is not used: such a holder counts as unscored.)"""
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
        holder_version: Who holds the alias afterwards.
        previous_version: Who held it before (None when nobody did).
        previous_delta_m: The previous holder's Δm.
    """

    name: str
    version: str
    outcome: Outcome
    alias: str
    holder_version: str | None
    previous_version: str | None = None
    previous_delta_m: float | None = None


def code_hash(package_dir: Path) -> str:
    """A short hash of the package's Python sources (names and contents, in name order)."""
    digest = hashlib.sha256()
    for file in sorted(Path(package_dir).rglob("*.py")):
        digest.update(str(file.relative_to(package_dir)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(params_hash: str, data_hash: str, code: str) -> str:
    """The identity of a registration: same params, data and code -> same fingerprint."""
    return hashlib.sha256(f"{params_hash}:{data_hash}:{code}".encode()).hexdigest()[:16]


def beats(new_delta_m: float, holder_delta_m: float | None) -> bool:
    """Whether a model with `new_delta_m` takes the alias from a holder with `holder_delta_m`.

    A missing or non-finite holder score loses to any finite new score; a non-finite new score
    never takes an alias that is held.
    """
    if holder_delta_m is None or not math.isfinite(holder_delta_m):
        return math.isfinite(new_delta_m) or holder_delta_m is None
    return math.isfinite(new_delta_m) and new_delta_m > holder_delta_m


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
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _delta_m(version: ModelVersion | None) -> float | None:
    if version is None or DELTA_M not in version.tags:
        return None
    try:
        return float(version.tags[DELTA_M])
    except ValueError:
        return None


def register(
    model_uri: str,
    name: str,
    alias: str,
    *,
    delta_m: float,
    fp: str,
    tags: Mapping[str, Any],
    description: str = "",
    client: MlflowClient | None = None,
) -> Registration:
    """Register `model_uri` as a new version of `name` and gate `alias` on Δm.

    Args:
        model_uri: The logged model (`ModelInfo.model_uri`).
        name: Registered model name.
        alias: The serving alias.
        delta_m: The new model's validation Δm (percent; higher is better).
        fp: Its fingerprint (see `fingerprint`); an existing version with it is returned
            as "unchanged" and nothing is registered.
        tags: Extra version tags (git commit, params hash, per-task test metrics...).
        description: The new version's description.
        client: Registry client (default: the current tracking/registry URI).

    Returns:
        What happened.
    """
    client = client or _client()
    holder = _holder(client, name, alias)
    found = existing_version(name, fp, client)
    if found is not None:
        return Registration(
            name, found, "unchanged", alias, str(holder.version) if holder else None
        )
    all_tags = {k: str(v) for k, v in tags.items()}
    all_tags.update({FINGERPRINT: fp, DELTA_M: repr(float(delta_m))})
    version = mlflow.register_model(model_uri, name, tags=all_tags)
    if description:
        client.update_model_version(name, version.version, description=description)
    previous = _delta_m(holder)
    if beats(delta_m, previous if holder is not None else None):
        client.set_registered_model_alias(name, alias, version.version)
        outcome: Outcome = "alias moved"
        now_holder = str(version.version)
    else:
        client.set_model_version_tag(name, version.version, CHALLENGER, "true")
        outcome = "challenger"
        now_holder = str(holder.version) if holder else ""
    logger.info("registered %s version %s: %s", name, version.version, outcome)
    return Registration(
        name,
        str(version.version),
        outcome,
        alias,
        now_holder or None,
        previous_version=str(holder.version) if holder else None,
        previous_delta_m=previous,
    )
