"""The served model: raw input table -> every task's label and class probabilities.

Logged as an MLflow pyfunc *from code* (`served_model.py` calls `mlflow.models.set_model`;
no cloudpickled class). Its artifacts are the trained network (`TrainResult.save` layout,
read by `multitune.training.load_model`), the embed stage's fitted encoders
(`data/features/encoders/<modality>/` plus `meta.json`, so the text encoder travels with the
model) and `spec.json` (modalities, their source columns and encoder configs; tasks and
classes).

Output, one row per input row:
  * `<task>`: the predicted label (classification, binary, distribution), the list of
    predicted labels (multilabel, p >= 0.5), or the value in original units (regression);
  * `<task>_proba`: the class probabilities in the order of `spec.json`'s classes
    (categorical tasks only);
  * for a token task, `<task>` is the list of predicted labels, one per word of the text
    (words past the encoder's maximum length are not labelled).

Params: `tasks` (a list) keeps a subset of tasks; `task` (one name) gives the single-task
view old single-output callers expect: columns `prediction` and, for categorical tasks,
`probabilities`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext

from multitune.errors import UserError

MODEL_CODE = Path(__file__).with_name("served_model.py")
SPEC = "spec.json"
ARTIFACT_MODEL, ARTIFACT_FEATURES, ARTIFACT_SPEC = "network", "features", "spec"
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


def format_predictions(
    raw: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    wanted: Sequence[str],
    token_words: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Turn the network's per-task outputs into the served columns.

    Args:
        raw: Task -> probabilities `(n, C)` (binary may be `(n,)` = p(classes[1])) or values
            `(n,)` for regression, as `multitune.training.predict` returns them.
        tasks: Every task of the model, in order.
        wanted: The tasks to return.
        token_words: Token task -> `(words, offsets)`: each packed token's word index (-1
            but for a word's first sub-word token) and the row offsets.

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
            words, offsets = (token_words or {})[task.name]
            out[task.name] = [
                list(
                    classes[
                        values[i, np.flatnonzero(words[offsets[i] : offsets[i + 1]] >= 0)].argmax(
                            -1
                        )
                    ]
                )
                for i in range(len(values))
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


class MultituneModel(PythonModel):
    """Raw rows -> encoders of the embed stage -> trained network -> per-task outputs."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the spec, the fitted encoders and the network from the model's artifacts."""
        import torch

        from multitune.data import load_encoder
        from multitune.training import load_model

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
        self.network = load_model(Path(context.artifacts[ARTIFACT_MODEL]))
        self.network.to(self.device).eval()

    def encode(
        self, frame: pd.DataFrame
    ) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Each modality's input for the raw rows in `frame`: the embed stage's vectors, or,
        for a text backbone in the network, the token states its layers read; and for those
        modalities each token's word (`(words, offsets)`, for token tasks)."""
        from multitune.training.tokens import PackedTokens

        missing = [c for _, cols in self.encoders.values() for c in cols if c not in frame]
        if missing:
            raise UserError(f"input lacks column(s) {', '.join(sorted(set(missing)))}")
        out: dict[str, Any] = {}
        words: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (enc, cols) in self.encoders.items():
            if name in self.network.token_modalities:
                layers = int(self.network.token_caches[name]["layers"])
                states, offsets = enc.token_states(frame[cols], layers)  # type: ignore[attr-defined]
                out[name] = PackedTokens.from_arrays(states, offsets, self.device)
                words[name] = (enc.word_index(frame[cols]), offsets)  # type: ignore[attr-defined]
            else:
                out[name] = torch_vectors(enc.transform(frame[cols]), self.device)
        return out, words

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Predict every (or the asked) task for raw rows; see the module docstring."""
        import torch

        from multitune.training import predict as predict_network

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        names = [t.name for t in self.tasks]
        wanted, single = _selected(params, names)
        if frame.empty:
            return pd.DataFrame(columns=wanted)
        features, words = self.encode(frame.reset_index(drop=True))
        with torch.no_grad():
            raw = predict_network(self.network, features)
        token_words = {t: words[m] for t, m in self.network.token_tasks.items()}
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
