"""Token classification on a small generated NER table, through the data stages, the trainer
and the served model: word labels on first sub-word tokens, token accuracy and entity F1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModelContext
from synthetic import ner_frame, run_data_stages

from multitune.config import validate_params
from multitune.data import read_dataset, read_tasks
from multitune.errors import DataError
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData, predict, train
from multitune.training.metrics import entity_spans, task_metrics


def _raw(source: Path) -> dict[str, Any]:
    return {
        "data": {
            "source": str(source),
            "id_column": "row",
            "modalities": {
                "text": {
                    "column": "text",
                    "encoder": {
                        "name": "sentence_transformer",
                        "backend": "torch",
                        "cache_top_layers": 1,
                    },
                }
            },
        },
        "tasks": [
            {"name": "entities", "type": "token_classification", "column": "tags"},
            {"name": "has_place", "type": "binary", "column": "has_place"},
        ],
        "split": {"seed": 1, "fractions": [0.6, 0.2, 0.2]},
        "model": {
            "encoder": {"hidden": 32, "dropout": 0.0},
            "sharing": {"hidden": [32]},
            "backbone": {"name": "top_k", "layers": 1},
        },
        "train": {
            "epochs": 6,
            "epoch_steps": None,
            "batch_size": 32,
            "lr": 3e-3,
            "device": "cpu",
            "patience": 6,
        },
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("ner")
    source = root / "ner.parquet"
    ner_frame().to_parquet(source, index=False)
    raw = _raw(source)
    run_data_stages(validate_params(raw), root / "data")
    return root / "data", raw


def test_each_word_labels_its_first_sub_word_token(
    project: tuple[Path, dict[str, Any]], st_model: Any
) -> None:
    data_dir, raw = project
    data = TrainingData.from_files(data_dir, validate_params(raw), "cpu")
    (spec,) = [t for t in data.tasks if t.name == "entities"]
    frame = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[data.ids]
    row = next(
        i
        for i, t in enumerate(frame["text"])
        if "Oluwaseun" in t and frame["tags"].iloc[i] is not None
    )
    pieces = st_model.tokenizer.tokenize("Oluwaseun")
    assert len(pieces) > 1  # a name the tokenizer splits: only its first piece is labelled
    targets = data.targets["entities"][row].numpy()
    labelled = [spec.classes[c] for c in targets[targets >= 0]]
    assert labelled == list(frame["tags"].iloc[row])  # one label per word, in order
    n_tokens = len(st_model.tokenizer(frame["text"].iloc[row])["input_ids"])
    assert (targets[:n_tokens] >= 0).sum() == len(frame["text"].iloc[row].split())


def test_entity_f1_counts_exact_spans() -> None:
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC", "I-PER"]) == {
        (0, 2, "PER"),
        (3, 4, "LOC"),
        (4, 5, "PER"),
    }
    spec = TaskSpec(
        validate_params(_raw(Path("x.parquet"))).tasks[0], ["B-LOC", "B-PER", "I-PER", "O"]
    )
    gold = np.array([[1, 2, 3, 0, -1]])  # B-PER I-PER O B-LOC (pad)
    guess = np.array([1, 3, 3, 0, 0])  # B-PER O O B-LOC: PER span cut short
    proba = np.eye(4)[guess][None]
    metrics = task_metrics(spec, proba, gold, np.array([True]))
    assert metrics == {"token_accuracy": 0.75, "entity_f1": 0.5}


def test_a_token_task_learns_entities_and_is_served_per_word(
    project: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from multitune.tracking.pyfunc import build_spec, stage_artifacts
    from multitune.tracking.pyfunc_model import MultituneModel

    data_dir, raw = project
    params = validate_params(raw)
    data = TrainingData.from_files(data_dir, params, "cpu")
    result = train(params, data)
    test = result.metrics["test"]["entities"]
    y = data.targets["entities"][data.splits["test"]].numpy()
    share_o = float((y == data.tasks[0].classes.index("O")).sum() / (y >= 0).sum())
    assert test["token_accuracy"] > share_o + 0.1  # better than tagging every word O
    assert test["entity_f1"] > 0.8
    assert result.metrics["test"]["has_place"]["accuracy"] > 0.8
    print(f"token task: test {test}, all-O token accuracy {share_o:.3f}")

    result.save(tmp_path / "model")
    spec = build_spec(params, read_tasks(data_dir / "tasks.json"))
    artifacts = stage_artifacts(
        tmp_path / "staging", tmp_path / "model", data_dir / "features", spec
    )
    served = MultituneModel()
    served.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
    rows = pd.DataFrame({"text": ["Maria flew to New York on Monday .", "Bob said so ."]})
    out = served.predict(None, rows)
    assert [len(labels) for labels in out["entities"]] == [8, 4]  # one label per word
    assert out["entities"].iloc[0][:1] == ["B-PER"]
    # The same per-word labels as the in-process model on the cached rows.
    idx = data.splits["test"][:20]
    in_process = predict(result.model, data.inputs(idx, result.model.token_modalities))
    frame = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[data.ids[idx.numpy()]]
    served_rows = served.predict(None, frame.reset_index())["entities"]
    classes = np.array(data.tasks[0].classes)
    for i, labels in enumerate(served_rows):
        y_row = data.targets["entities"][idx[i]].numpy()
        words = np.flatnonzero(y_row >= 0) if frame["tags"].iloc[i] is not None else None
        if words is not None:
            expected = classes[in_process["entities"][i, words].argmax(-1)]
            assert list(labels) == list(expected)


def test_labels_not_aligned_to_words_are_a_clear_error(tmp_path: Path) -> None:
    from multitune.data.ingest import ingest

    frame = ner_frame(n=20)
    frame.loc[3, "tags"] = ["O", "O"]
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataError, match=r"row r3 \(2 labels, \d+ words\)"):
        ingest(validate_params(_raw(tmp_path / "bad.parquet")))
