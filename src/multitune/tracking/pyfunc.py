"""The served model: raw input table -> every task's label and class probabilities.

Logged as an MLflow pyfunc *from code* (`served_model.py` calls `mlflow.models.set_model`;
no cloudpickled class). Its artifacts are the trained network, the embed stage's fitted
encoders (`data/features/encoders/<modality>/` plus `meta.json`, so the text encoder travels
with the model) and `spec.json` (modalities, their source columns and encoder configs; tasks
and classes).

The `network` artifact is either one network (`TrainResult.save` layout, read by
`multitune.training.load_model`) answering every task, or a grouped bundle (`stage_grouped`)
routing each task to its group's model: `groups.json` =
``{"groups": [{"tasks": [...], "kind": "network" | "linear", "dir": "g0"}, ...]}``, each
`dir` a saved network or a saved linear model (`multitune.tracking.linear`, served with
numpy only). Every modality is encoded once per call, and only the groups of the asked
tasks run; the output is the same as one network's over the same tasks.

Output, one row per input row:
  * `<task>`: the predicted label (classification, binary, distribution), the list of
    predicted labels (multilabel, p >= 0.5), or the value in original units (regression);
  * `<task>_proba`: the class probabilities in the order of `spec.json`'s classes
    (categorical tasks only);
  * for a token task, `<task>` is the list of predicted labels, one per word of the text
    (every word, however long the text: a text longer than the encoder's window is read
    through overlapping windows).

Params: `tasks` (a list) keeps a subset of tasks; `task` (one name) gives the single-task
view old single-output callers expect: columns `prediction` and, for categorical tasks,
`probabilities`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext

from multitune.errors import UserError
from multitune.io import atomic_path
from multitune.tracking.linear import LinearModel, is_linear, load_linear

if TYPE_CHECKING:
    from multitune.models.multitask import MultiTaskModel

MODEL_CODE = Path(__file__).with_name("served_model.py")
SPEC = "spec.json"
ARTIFACT_MODEL, ARTIFACT_FEATURES, ARTIFACT_SPEC = "network", "features", "spec"
GROUPS = "groups.json"
PROBA_SUFFIX = "_proba"
TEXT_ENCODER, TEXT_STATE, BUNDLED_MODEL = (
    "sentence_transformer",
    "sentence_transformer.json",
    "model",
)


@dataclass(frozen=True)
class TaskSpec:
    """What the served model needs to know about one task."""

    name: str
    type: str
    classes: list[str] | None


def build_spec(params: Any, tasks: Sequence[Any]) -> dict[str, Any]:
    """`spec.json` from the validated params and the data stage's `TaskInfo`s."""
    modalities = {
        name: {"columns": m.source_columns, "config": m.model_dump(mode="json")}
        for name, m in params.data.modalities.items()
    }
    return {
        "modalities": modalities,
        "tasks": [
            {"name": t.config.name, "type": t.config.type, "classes": t.classes} for t in tasks
        ],
    }


def input_columns(spec: Mapping[str, Any]) -> list[str]:
    """The raw table columns the model reads, in first-use order."""
    cols: dict[str, None] = {}
    for m in spec["modalities"].values():
        cols.update(dict.fromkeys(m["columns"]))
    return list(cols)


def _as_proba(values: np.ndarray, task: TaskSpec) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if task.type == "binary" and (values.ndim == 1 or values.shape[1] == 1):
        p = values.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    return values


TokenWords = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A token modality's `(words, offsets, counts)`: the word each packed token labels (-1 for
none), the row offsets, and each row's number of words."""


def word_labels(scores: np.ndarray, words: np.ndarray, count: int) -> np.ndarray:
    """One class index per word of a row, from its tokens' `(T, C)` scores.

    Each word takes its labelling token's class (`words[t] == w`). A word the tokenizer gave
    no token (a lone zero-width character, say) takes the preceding word's class, the
    following one's at the start: the list always has `count` entries, aligned to words.
    """
    at = np.flatnonzero((words >= 0) & (words < count))
    labels = np.full(count, -1, dtype=np.int64)
    labels[words[at]] = scores[at].argmax(-1)
    seen = np.flatnonzero(labels >= 0)
    if len(seen) < count:
        if not len(seen):
            return np.full(count, int(scores[0].argmax(-1)) if len(scores) else 0)
        filled = np.maximum.accumulate(np.where(labels >= 0, np.arange(count), -1))
        labels = labels[np.where(filled >= 0, filled, seen[0])]
    return labels


def format_predictions(
    raw: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    wanted: Sequence[str],
    token_words: Mapping[str, TokenWords] | None = None,
) -> pd.DataFrame:
    """Turn the network's per-task outputs into the served columns.

    Args:
        raw: Task -> probabilities `(n, C)` (binary may be `(n,)` = p(classes[1])) or values
            `(n,)` for regression, as `multitune.training.predict` returns them.
        tasks: Every task of the model, in order.
        wanted: The tasks to return.
        token_words: Token task -> `(words, offsets, counts)` (`TokenWords`): the word each
            packed token labels (-1 for none; a word has at most one), the row offsets and
            each row's number of words.

    Returns:
        A frame with `<task>` and `<task>_proba` columns (see the module docstring).
    """
    out: dict[str, Any] = {}
    for task in tasks:
        if task.name not in wanted:
            continue
        values = raw[task.name]
        if task.type == "regression" or task.classes is None:
            out[task.name] = np.asarray(values, dtype=np.float64).reshape(-1)
            continue
        classes = np.asarray(task.classes, dtype=object)
        if task.type == "token_classification":
            words, offsets, counts = (token_words or {})[task.name]
            out[task.name] = [
                list(classes[word_labels(values[i], words[offsets[i] : offsets[i + 1]], n)])
                for i, n in enumerate(counts)
            ]
            continue
        proba = _as_proba(values, task)
        if task.type == "multilabel":
            out[task.name] = [list(classes[row >= 0.5]) for row in proba]
        else:
            out[task.name] = classes[np.argmax(proba, axis=1)]
        out[task.name + PROBA_SUFFIX] = [row for row in proba]
    return pd.DataFrame(out)


def single_task_view(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """One task's columns renamed `prediction` / `probabilities` (old single-output callers)."""
    view = {"prediction": frame[task]}
    if task + PROBA_SUFFIX in frame:
        view["probabilities"] = frame[task + PROBA_SUFFIX]
    return pd.DataFrame(view)


def _selected(params: Mapping[str, Any] | None, names: Sequence[str]) -> tuple[list[str], str]:
    params = dict(params or {})
    single = str(params.get("task") or "")
    asked = params.get("tasks")
    wanted = [single] if single else list(asked) if asked is not None and len(asked) else names
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; this model predicts {names}")
    return list(wanted), single


GroupKind = Literal["network", "linear"]


@dataclass(frozen=True)
class GroupMember:
    """One group of a grouped served model (`stage_grouped`).

    Attributes:
        tasks: The tasks the group answers (a linear member answers one).
        kind: "network" (`source` as `multitune.training.save_model` writes it; it may
            predict more tasks than `tasks`, the others are not served from it) or "linear"
            (`source` as `multitune.tracking.linear.save_linear` writes it).
        source: The saved model's directory.
    """

    tasks: tuple[str, ...]
    kind: GroupKind
    source: Path


def stage_grouped(target: Path, members: Sequence[GroupMember]) -> Path:
    """Write a grouped `network` artifact to `target` (whole or not at all): each member's
    directory copied to `g<i>/`, and `groups.json` naming them (see the module docstring).

    Raises:
        ValueError: no member, a member without tasks, an unknown kind, a task in two
            members, a linear member of several tasks, or a source of the wrong kind.
    """
    if not members:
        raise ValueError("a grouped model needs at least one group")
    seen: set[str] = set()
    for m in members:
        again = seen.intersection(m.tasks)
        if not m.tasks or again or len(set(m.tasks)) < len(m.tasks):
            raise ValueError(f"group {list(m.tasks)}: no tasks, or a task in two groups")
        seen.update(m.tasks)
        marker = Path(m.source) / ("linear.json" if m.kind == "linear" else "model.json")
        if m.kind not in ("network", "linear") or not marker.is_file():
            raise ValueError(f"group {list(m.tasks)}: {m.source} is not a saved {m.kind} model")
        if m.kind == "linear" and len(m.tasks) != 1:
            raise ValueError(f"group {list(m.tasks)}: a linear model answers one task")
    groups = [
        {"tasks": list(m.tasks), "kind": m.kind, "dir": f"g{i}"} for i, m in enumerate(members)
    ]
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        for m, g in zip(members, groups, strict=True):
            shutil.copytree(m.source, tmp / str(g["dir"]))
        (tmp / GROUPS).write_text(json.dumps({"groups": groups}, indent=2) + "\n")
    return target


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
        from multitune.training import predict as predict_network

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
    from multitune.training import load_model

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


class MultituneModel(PythonModel):
    """Raw rows -> encoders of the embed stage -> each group's model -> per-task outputs."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the spec, the fitted encoders and the network(s) from the model's artifacts.

        `network` is the model's only network, if it has one (None for a bundle of several
        or of linear models only); `members` are its groups (one for a single network).
        """
        import torch

        from multitune.data import load_encoder

        spec = json.loads(Path(context.artifacts[ARTIFACT_SPEC]).read_text())
        features = Path(context.artifacts[ARTIFACT_FEATURES])
        self.tasks = [TaskSpec(**t) for t in spec["tasks"]]
        self.encoders = {
            name: (
                load_encoder(features, name, _modality_config(features, name, m["config"])),
                list(m["columns"]),
            )
            for name, m in spec["modalities"].items()
        }
        self.device = torch.device("cpu")
        self.members = load_members(Path(context.artifacts[ARTIFACT_MODEL]), self.tasks)
        networks = [m.network for m in self.members if isinstance(m, NetworkMember)]
        for network in networks:
            network.to(self.device).eval()
        self.network = networks[0] if len(networks) == 1 else None

    def encode(self, frame: pd.DataFrame, members: Sequence[Member] | None = None) -> Encoded:
        """What `members` (all when None) read of the raw rows in `frame`, each modality
        encoded once: the embed stage's vectors for whoever reads vectors (linear members
        always do), the token states a network's text backbone reads, and for those
        modalities each token's word (for token tasks)."""
        from multitune.training.tokens import PackedTokens

        needs = [m.needs() for m in (self.members if members is None else members)]
        vectors = set().union(*(n.vectors for n in needs))
        tokens = set().union(*(n.tokens for n in needs))
        used = vectors | {m for m, _ in tokens}
        missing = [c for name in used for c in self.encoders[name][1] if c not in frame]
        if missing:
            raise UserError(f"input lacks column(s) {', '.join(sorted(set(missing)))}")
        out = Encoded()
        for name, (enc, cols) in self.encoders.items():
            if name in vectors:
                out.vectors[name] = enc.transform(frame[cols])
        for name, layers in sorted(tokens):
            enc, cols = self.encoders[name]
            got = enc.token_states(frame[cols], layers)  # type: ignore[attr-defined]
            out.tokens[(name, layers)] = PackedTokens.from_arrays(
                got.states, got.offsets, self.device, segments=got.segments
            )
            out.words.setdefault(name, (got.words, got.offsets, got.counts))
        return out

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Predict every (or the asked) task for raw rows; see the module docstring."""
        import torch

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        names = [t.name for t in self.tasks]
        wanted, single = _selected(params, names)
        if frame.empty:
            return pd.DataFrame(columns=wanted)
        members = [m for m in self.members if set(m.tasks) & set(wanted)]
        encoded = self.encode(frame.reset_index(drop=True), members)
        raw: dict[str, np.ndarray] = {}
        token_words: dict[str, TokenWords] = {}
        with torch.no_grad():
            for member in members:
                values, words = member.run(encoded, self.device)
                raw.update(values)
                token_words.update(words)
        out = format_predictions(raw, self.tasks, wanted, token_words)
        return single_task_view(out, single) if single else out


def torch_vectors(vectors: np.ndarray, device: Any) -> Any:
    """A float32 tensor of an encoder's vectors on `device`."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)


def stage_artifacts(
    staging: Path, model_dir: Path, features_dir: Path, spec: Mapping[str, Any]
) -> dict[str, str]:
    """Copy what the model carries into `staging`; return MLflow's `artifacts` mapping."""
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, staging / ARTIFACT_MODEL, dirs_exist_ok=True)
    features = staging / ARTIFACT_FEATURES
    shutil.copytree(features_dir / "encoders", features / "encoders", dirs_exist_ok=True)
    meta = features_dir / "meta.json"
    if meta.exists():
        shutil.copy2(meta, features / "meta.json")
    for name, m in spec["modalities"].items():
        if m["config"]["encoder"]["name"] == TEXT_ENCODER:
            _bundle_text_model(features / "encoders" / name)
    (staging / SPEC).write_text(json.dumps(spec, indent=2))
    return {
        ARTIFACT_MODEL: str(staging / ARTIFACT_MODEL),
        ARTIFACT_FEATURES: str(features),
        ARTIFACT_SPEC: str(staging / SPEC),
    }


def _bundle_text_model(encoder_dir: Path) -> None:
    """Copy the sentence-transformers model into the encoder's directory.

    The embed stage records only the model's path; the served model must not depend on a
    path of the training machine, so the weights travel in `<encoder_dir>/model/` and the
    recorded path is replaced by a marker (`load_context` points the encoder at the copy).
    """
    state_file = encoder_dir / TEXT_STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    source = Path(state.get("model") or _default_text_model())
    shutil.copytree(source, encoder_dir / BUNDLED_MODEL, dirs_exist_ok=True)
    state["model"] = f"<bundled: {BUNDLED_MODEL}/>"
    state_file.write_text(json.dumps(state, indent=2))


def _default_text_model() -> str:
    from multitune.embed.sentence_transformer import default_model_path

    return str(default_model_path())


def _modality_config(features: Path, name: str, raw: dict[str, Any]) -> Any:
    """The modality's config; a bundled text model replaces the configured model path.

    The text model runs in PyTorch when served: an ONNX backend would export and cache a
    model under the server's working directory at load time (its vectors agree to ~1e-6).
    """
    from multitune.config.data import ModalityConfig

    if raw["encoder"]["name"] == TEXT_ENCODER:
        encoder = {**raw["encoder"]}
        if "backend" in encoder:
            encoder["backend"] = "torch"
        bundled = features / "encoders" / name / BUNDLED_MODEL
        if bundled.is_dir():
            encoder["model"] = str(bundled)
        raw = {**raw, "encoder": encoder}
    return ModalityConfig.model_validate(raw)


def load_local(artifacts: Mapping[str, str]) -> MultituneModel:
    """The served model, loaded in this process from staged artifacts (no MLflow store)."""
    model = MultituneModel()
    model.load_context(PythonModelContext(artifacts=dict(artifacts), model_config={}))
    return model


def signature_for(
    example: pd.DataFrame, output: pd.DataFrame, task_names: Sequence[str]
) -> ModelSignature:
    """The signature: raw input columns, the served columns, and the `tasks`/`task` params."""
    return infer_signature(example, output, params={"tasks": list(task_names), "task": ""})


def stage_code(staging: Path) -> Path:
    """A clean copy of the multitune package (no bytecode) for the model's `code_paths`."""
    import multitune

    target = staging / "code" / "multitune"
    shutil.copytree(
        Path(multitune.__file__).parent,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    return target


def log_pyfunc(
    artifacts: Mapping[str, str],
    example: pd.DataFrame,
    *,
    name: str = "model",
    metadata: Mapping[str, Any] | None = None,
) -> ModelInfo:
    """Log the served model from code into the active run, self-contained.

    The model carries multitune's code (`code_paths`: MLflow puts it on `sys.path` when
    loading) and the encoders' files, and requires only what loading it and predicting import
    (`multitune.tracking.requirements`), so a clean environment built from its
    `requirements.txt` serves it (`mlflow models serve` with a virtualenv or uv, or
    `mlflow models build-docker`), on a CPU or a GPU host.

    Args:
        artifacts: From `stage_artifacts`.
        example: A few raw input rows (the input example; also used to infer the signature).
        name: The logged model's name.
        metadata: Extra model metadata (e.g. the tasks' classes).

    Returns:
        MLflow's `ModelInfo` (its `model_uri` is what gets registered).
    """
    from multitune.tracking.requirements import served_requirements

    local = load_local(artifacts)
    output = local.predict(None, example)
    signature = signature_for(example, output, [t.name for t in local.tasks])
    with tempfile.TemporaryDirectory(prefix="multitune-code-") as tmp:
        code = stage_code(Path(tmp))
        requirements = served_requirements(artifacts, example, Path(tmp))
        return mlflow.pyfunc.log_model(
            python_model=str(MODEL_CODE),
            name=name,
            artifacts=dict(artifacts),
            code_paths=[str(code)],
            input_example=example,
            signature=signature,
            pip_requirements=requirements,
            metadata=dict(metadata or {}),
        )
