"""The served model, staged and logged: raw input table -> every task's label and class
probabilities (`multitune.tracking.pyfunc_model` is the class, `pyfunc_output` its answer).

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
tasks run (`multitune.tracking.pyfunc_members`); the output is the same as one network's
over the same tasks.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo

import multitune
from multitune.config.methods.encoders import default_model_path
from multitune.io import atomic_path
from multitune.tracking.pyfunc_members import GROUPS
from multitune.tracking.pyfunc_model import (
    ARTIFACT_FEATURES,
    ARTIFACT_MODEL,
    ARTIFACT_SPEC,
    BUNDLED_MODEL,
    TEXT_ENCODER,
    load_local,
)
from multitune.tracking.requirements import served_requirements

MODEL_CODE = Path(__file__).with_name("served_model.py")
SPEC = "spec.json"
TEXT_STATE = "sentence_transformer.json"


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
    return str(default_model_path())


def signature_for(
    example: pd.DataFrame, output: pd.DataFrame, task_names: Sequence[str]
) -> ModelSignature:
    """The signature: raw input columns, the served columns, and the `tasks`/`task` params."""
    return infer_signature(example, output, params={"tasks": list(task_names), "task": ""})


def stage_code(staging: Path) -> Path:
    """A clean copy of the multitune package (no bytecode) for the model's `code_paths`."""
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
