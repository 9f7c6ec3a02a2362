"""The members of a served model's `network` artifact: read back, and run on encoded rows.

The artifact is one network (`TrainResult.save` layout) answering every task, or a grouped
bundle (`multitune.tracking.pyfunc.stage_grouped`, described by `groups.json`) whose groups
are each a saved network or a saved linear model (`multitune.tracking.linear`, served with
numpy only). Each member says what it reads (`Needs`), so every modality is encoded once
per call (`Encoded`), and answers its tasks in the format `multitune.training.predict`
returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from multitune.tracking.linear import LinearModel, is_linear, load_linear
from multitune.tracking.pyfunc_output import TaskSpec, TokenWords

if TYPE_CHECKING:  # annotations only: torch loads with a model, not with `multitune.tracking`
    from multitune.models.multitask import MultiTaskModel

GROUPS = "groups.json"


@dataclass
class Encoded:
    """Raw rows encoded for the members that will run, each modality once.

    Attributes:
        vectors: Modality -> the embed stage's vectors (`Encoder.transform`).
        tokens: ``(modality, layers)`` -> the token states entering its top `layers` layers.
        words: Token modality -> its `TokenWords`: the word each packed token labels, the
            row offsets, each row's number of words.
    """

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    tokens: dict[tuple[str, int], Any] = field(default_factory=dict)
    words: dict[str, TokenWords] = field(default_factory=dict)


@dataclass(frozen=True)
class Needs:
    """What a member reads: vector modalities, and token states as (modality, layers)."""

    vectors: frozenset[str]
    tokens: frozenset[tuple[str, int]]


@dataclass(frozen=True)
class NetworkMember:
    """A network answering `tasks` (its other tasks, if any, are not served)."""

    tasks: tuple[str, ...]
    network: MultiTaskModel

    def needs(self) -> Needs:
        tokens = self.network.token_modalities
        layers = {(m, int(self.network.token_caches[m]["layers"])) for m in tokens}
        return Needs(frozenset(set(self.network.modality_dims) - set(tokens)), frozenset(layers))

    def run(
        self, encoded: Encoded, device: Any
    ) -> tuple[dict[str, np.ndarray], dict[str, TokenWords]]:
        """Raw predictions of `tasks` (`multitune.training.predict`) and their token words."""
        from multitune.training import predict as predict_network  # torch: loaded with a model

        layers = dict(self.needs().tokens)
        features = {
            m: encoded.tokens[(m, layers[m])]
            if m in layers
            else torch_vectors(encoded.vectors[m], device)
            for m in self.network.modality_dims
        }
        raw = predict_network(self.network, features)
        words = {t: encoded.words[m] for t, m in self.network.token_tasks.items()}
        return {t: raw[t] for t in self.tasks}, {t: w for t, w in words.items() if t in self.tasks}


@dataclass(frozen=True)
class LinearMember:
    """A linear model answering one task from the embed stage's vectors, with numpy only."""

    tasks: tuple[str, ...]
    linear: LinearModel

    def needs(self) -> Needs:
        return Needs(frozenset(self.linear.modalities), frozenset())

    def run(
        self, encoded: Encoded, device: Any
    ) -> tuple[dict[str, np.ndarray], dict[str, TokenWords]]:
        """The task's predictions, in the networks' format (as stored: float32 vectors)."""
        vectors = {m: np.asarray(encoded.vectors[m], np.float32) for m in self.linear.modalities}
        return {self.linear.task: self.linear.predict(vectors)}, {}


Member = NetworkMember | LinearMember


def load_members(directory: Path, tasks: Sequence[TaskSpec] = ()) -> list[Member]:
    """The members of a `network` artifact: one network, or a grouped bundle's groups.

    Args:
        directory: The artifact.
        tasks: The served tasks (`spec.json`): each must be answered by exactly one member,
            a token task by a network.

    Raises:
        ValueError: a task no member answers, or a member that cannot answer its tasks.
    """
    from multitune.training import load_model  # torch: loaded with a model, not with tracking

    if not (directory / GROUPS).is_file():
        network = load_model(directory)
        members: list[Member] = [NetworkMember(tuple(network.task_names), network)]
    else:
        members = []
        for g in json.loads((directory / GROUPS).read_text())["groups"]:
            source, names = directory / g["dir"], tuple(g["tasks"])
            if g["kind"] == "linear" and is_linear(source):
                members.append(LinearMember(names, load_linear(source)))
            elif g["kind"] == "network":
                members.append(NetworkMember(names, load_model(source)))
            else:
                raise ValueError(f"{source}: not a saved {g['kind']!r} model")
    answers = {t: m for m in members for t in m.tasks}
    for m in members:
        known = m.network.task_names if isinstance(m, NetworkMember) else [m.linear.task]
        if set(m.tasks) - set(known):
            raise ValueError(f"group {list(m.tasks)}: its model predicts only {known}")
    for t in tasks:
        if t.name not in answers:
            raise ValueError(f"no group of {directory} answers task {t.name!r}")
        if t.type == "token_classification" and not isinstance(answers[t.name], NetworkMember):
            raise ValueError(f"token task {t.name!r} must be answered by a network")
    return members


def torch_vectors(vectors: np.ndarray, device: Any) -> Any:
    """A float32 tensor of an encoder's vectors on `device`."""
    import torch  # torch: loaded with a model, not with `multitune.tracking`

    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
