"""A grouped served model: each task routed to its group's network or linear model, every task
answered in one call on raw rows, as one network over the same tasks would answer it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from final.project import tiny_raw

from multitune.config import validate_params
from multitune.config.final import ReferenceConfig
from multitune.data import read_dataset, read_tasks
from multitune.embed.token_pass import TokenArrays
from multitune.errors import UserError
from multitune.final.reference import ReferenceResult, fit_reference
from multitune.tracking.linear import LINEAR_NPZ, load_linear
from multitune.tracking.pyfunc import (
    GroupMember,
    build_spec,
    input_columns,
    stage_artifacts,
    stage_grouped,
)
from multitune.tracking.pyfunc_members import GROUPS, Needs, NetworkMember
from multitune.tracking.pyfunc_model import MultituneModel, load_local
from multitune.tracking.pyfunc_output import format_predictions
from multitune.tracking.requirements import served_requirements
from multitune.training import TrainingData, train

NET_A, NET_B, LINEAR = ("sentiment", "topic"), ("rating", "tags"), ("mood",)


def _spec_of(spec: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, Any]:
    return {**spec, "tasks": [t for t in spec["tasks"] if t["name"] in tasks]}


@pytest.fixture(scope="module")
def grouped(
    tmp_path_factory: pytest.TempPathFactory, synthetic_data: tuple[Path, Any]
) -> dict[str, Any]:
    """Two networks trained on disjoint tasks, the linear reference for a third group, staged
    as one grouped model and as each network alone; raw test rows to predict."""
    data_dir, synthetic = synthetic_data
    root = tmp_path_factory.mktemp("grouped")
    params = validate_params(tiny_raw(synthetic.data.source))
    data = TrainingData.from_files(data_dir, params, "cpu")
    for name, tasks in (("a", NET_A), ("b", NET_B)):
        train(params, data, tasks=list(tasks), seed=0).save(root / name)
    reference = fit_reference(data, ReferenceConfig(c=[0.1, 1.0], class_weight=["none"]))
    reference.save("mood", root / "linear")
    spec = build_spec(params, read_tasks(data_dir / "tasks.json"))
    members = [
        GroupMember(NET_A, "network", root / "a"),
        GroupMember(NET_B, "network", root / "b"),
        GroupMember(LINEAR, "linear", root / "linear"),
    ]
    stage_grouped(root / "bundle", members)
    features = data_dir / "features"
    test_ids = data.ids[data.splits["test"].numpy()]
    frame = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[test_ids]
    return {
        "spec": spec,
        "data": data,
        "reference": reference,
        "bundle": root / "bundle",
        "artifacts": stage_artifacts(root / "staging", root / "bundle", features, spec),
        "alone": {
            tasks: stage_artifacts(root / f"alone-{d}", root / d, features, _spec_of(spec, tasks))
            for d, tasks in (("a", NET_A), ("b", NET_B))
        },
        "rows": frame[input_columns(spec)].reset_index(drop=True),
        "root": root,
    }


def _columns(spec: dict[str, Any], tasks: tuple[str, ...] | None = None) -> list[str]:
    """The served columns of `tasks` (all) in spec order: `<task>`, then `<task>_proba` for
    categorical tasks."""
    out = []
    for t in spec["tasks"]:
        if tasks is None or t["name"] in tasks:
            out += [t["name"]] + ([f"{t['name']}_proba"] if t["type"] != "regression" else [])
    return out


def _assert_same_columns(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in expected:
        left, right = got[column].to_numpy(), expected[column].to_numpy()
        if column.endswith("_proba"):
            np.testing.assert_allclose(np.stack(left), np.stack(right), rtol=0, atol=1e-9)
        elif left.dtype == object and isinstance(left[0], list):
            assert [list(v) for v in left] == [list(v) for v in right], column
        else:
            np.testing.assert_array_equal(left, right)


def test_a_grouped_model_answers_every_task_as_each_group_alone(grouped: dict[str, Any]) -> None:
    served = load_local(grouped["artifacts"])
    rows, spec = grouped["rows"], grouped["spec"]
    out = served.predict(None, rows)
    assert len(out) == len(rows)
    assert list(out.columns) == _columns(spec)  # as one network over every task would give
    assert [m.tasks for m in served.members] == [NET_A, NET_B, LINEAR]
    assert served.network is None  # two networks: no single one to point at

    # Each network's columns are what that network, served alone, gives on the same rows.
    for tasks, artifacts in grouped["alone"].items():
        alone = load_local(artifacts).predict(None, rows)
        assert list(alone.columns) == _columns(spec, tasks)
        _assert_same_columns(out, alone)

    # The linear group's columns are the reference's predictions, formatted alike, on the
    # vectors the embed stage's encoders give for the raw rows (stored as float32)...
    reference: ReferenceResult = grouped["reference"]
    vectors = served.encode(rows).vectors
    pred = reference.predict("mood", {m: v.astype(np.float32) for m, v in vectors.items()})
    expected = format_predictions({"mood": pred}, served.tasks, ["mood"])
    _assert_same_columns(out, expected)
    # ...and so its test predictions, served from the raw test rows.
    proba = np.stack(out["mood_proba"].to_numpy())
    np.testing.assert_allclose(proba, reference.test_pred["mood"], rtol=0, atol=1e-5)


def test_asked_tasks_run_only_their_groups(
    grouped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = load_local(grouped["artifacts"])
    rows = grouped["rows"].head(5)
    everything = served.predict(None, rows)
    asked = served.predict(None, rows, params={"tasks": ["mood", "topic"]})
    assert list(asked.columns) == ["topic", "topic_proba", "mood", "mood_proba"]  # spec order
    _assert_same_columns(asked, everything[asked.columns])

    def refuse(*args: Any) -> Any:
        raise AssertionError("a network ran for a task it does not answer")

    monkeypatch.setattr(NetworkMember, "run", refuse)
    only = served.predict(None, rows, params={"task": "mood"})
    assert list(only.columns) == ["prediction", "probabilities"]
    assert list(only["prediction"]) == list(everything["mood"])
    # The linear model reads every modality's vectors: a missing column is named.
    with pytest.raises(UserError, match=r"lacks column.*audio"):
        served.predict(None, rows.drop(columns=["audio"]), params={"task": "mood"})


def test_a_single_network_artifact_still_loads(grouped: dict[str, Any]) -> None:
    artifacts = grouped["alone"][NET_A]
    assert not (Path(artifacts["network"]) / GROUPS).exists()  # the layout models had before
    served = MultituneModel()
    served.load_context(_context(artifacts))
    assert served.network is not None and served.network.task_names == list(NET_A)
    out = served.predict(None, grouped["rows"].head(3))
    assert list(out.columns) == _columns(grouped["spec"], NET_A)


def _context(artifacts: dict[str, str]) -> Any:
    from mlflow.pyfunc import PythonModelContext

    return PythonModelContext(artifacts=dict(artifacts), model_config={})


def test_the_linear_export_round_trips_without_pickle(
    grouped: dict[str, Any], tmp_path: Path
) -> None:
    reference: ReferenceResult = grouped["reference"]
    data: TrainingData = grouped["data"]
    features = {m: f.numpy() for m, f in data.features.items()}
    assert set(reference.fits) == {"sentiment", "topic", "rating", "tags", "mood"}
    for task in reference.fits:  # every task type: binary, classes, values, multilabel, dist
        reference.save(task, tmp_path / task)
        with np.load(tmp_path / task / LINEAR_NPZ, allow_pickle=False) as arrays:
            assert {a.dtype.kind for a in arrays.values()} <= {"f", "i"}
        assert json.loads((tmp_path / task / "linear.json").read_text())["task"] == task
        loaded = load_linear(tmp_path / task)
        np.testing.assert_allclose(
            loaded.predict(features), reference.predict(task, features), rtol=0, atol=1e-9
        )


def test_a_bundle_is_refused_when_a_group_cannot_answer(grouped: dict[str, Any]) -> None:
    root = grouped["root"]
    with pytest.raises(ValueError, match="a task in two groups"):
        stage_grouped(
            root / "bad",
            [
                GroupMember(NET_A, "network", root / "a"),
                GroupMember(("topic",), "network", root / "b"),
            ],
        )
    with pytest.raises(ValueError, match="not a saved linear model"):
        stage_grouped(root / "bad", [GroupMember(LINEAR, "linear", root / "a")])
    assert not (root / "bad").exists()
    # A network asked for a task it was not trained on fails when the model loads.
    stage_grouped(root / "wrong", [GroupMember(("mood",), "network", root / "a")])
    with pytest.raises(ValueError, match="predicts only"):
        load_local({**grouped["artifacts"], "network": str(root / "wrong")})


def test_a_grouped_model_loads_and_predicts_in_a_fresh_interpreter(
    grouped: dict[str, Any], tmp_path: Path
) -> None:
    pins = served_requirements(grouped["artifacts"], grouped["rows"].head(3), tmp_path)
    assert {p.split("==")[0] for p in pins} >= {"mlflow", "numpy", "torch"}


def test_serving_a_linear_model_imports_no_scikit_learn(grouped: dict[str, Any]) -> None:
    script = (
        "import sys, numpy as np\n"
        "from multitune.tracking.linear import load_linear\n"
        f"model = load_linear({str(grouped['root'] / 'linear')!r})\n"
        "x = {m: np.zeros((2, w), np.float32) for m, w in model.modalities.items()}\n"
        "assert model.predict(x).shape == (2, 3)\n"
        "print(sorted(m for m in sys.modules if m.startswith('sklearn')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


class _CountingText:
    """A text encoder that counts what it is asked: vectors, token states (with their words)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append("vectors")
        return np.ones((len(frame), 4), np.float32)

    def token_states(self, frame: pd.DataFrame, layers: int) -> TokenArrays:
        self.calls.append(f"tokens/{layers}")
        offsets = np.arange(0, 2 * len(frame) + 1, 2)
        words = np.zeros(2 * len(frame), np.int32)
        counts = np.ones(len(frame), np.int64)
        states = np.ones((2 * len(frame), 4), np.float32)
        return TokenArrays(states, offsets, offsets, words, counts)


class _Reads:
    def __init__(self, vectors: set[str], tokens: set[tuple[str, int]]) -> None:
        self.tasks = ("t",)
        self._needs = Needs(frozenset(vectors), frozenset(tokens))

    def needs(self) -> Needs:
        return self._needs


def test_each_modality_is_encoded_once_in_each_form_its_readers_need() -> None:
    served = MultituneModel()
    text, other = _CountingText(), _CountingText()
    served.encoders = {"text": (text, ["text"]), "other": (other, ["other"])}
    served.device = "cpu"
    fine_tuned = _Reads({"other"}, {("text", 1)})  # a network with a text backbone
    linear = _Reads({"text", "other"}, set())  # the embed stage's vectors
    rows = pd.DataFrame({"text": ["a b", "c d", "e"], "other": [1, 2, 3]})
    encoded = served.encode(rows, [fine_tuned, linear, fine_tuned])  # type: ignore[list-item]
    assert sorted(text.calls) == ["tokens/1", "vectors"]  # words come with the tokens
    assert other.calls == ["vectors"]
    assert set(encoded.vectors) == {"text", "other"} and set(encoded.tokens) == {("text", 1)}
    text.calls.clear()
    served.encode(rows.drop(columns="other"), [_Reads(set(), {("text", 1)})])  # type: ignore[list-item]
    assert text.calls == ["tokens/1"]  # no vectors nobody reads
