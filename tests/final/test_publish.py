"""What ships with the registered model: the input example holds train rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from multitune.data import write_parquet
from multitune.final.publish import EXAMPLE_ROWS, eval_data_hash, raw_example


def _data(root: Path) -> Path:
    """Test rows first in the file (the old example took the first five test rows)."""
    splits = ["test"] * 8 + ["val"] * 4 + ["train"] * 8
    ids = [f"{s}-{i}" for i, s in enumerate(splits)]
    frame = pd.DataFrame(
        {
            "id": ids,
            "text": [f"row {i}" for i in ids],
            "x": np.arange(len(ids), dtype=np.float32),
            "label": ["a"] * len(ids),
        }
    )
    data = root / "data"
    write_parquet(data / "dataset.parquet", frame)
    write_parquet(data / "splits.parquet", pd.DataFrame({"id": ids, "split": splits, "unit": ids}))
    (data / "tasks.json").write_text("[]")
    return data


def test_the_input_example_holds_train_rows_only(tmp_path: Path) -> None:
    example = raw_example(_data(tmp_path), ["text", "x"])
    assert len(example) == EXAMPLE_ROWS
    assert list(example.columns) == ["text", "x"]  # only what the model reads: no id
    assert all(t.startswith("row train-") for t in example["text"])
    assert example["x"].dtype == np.float64  # widened for JSON clients (the signature)


def test_the_eval_data_hash_follows_rows_splits_and_tasks_not_features(tmp_path: Path) -> None:
    data = _data(tmp_path)
    before = eval_data_hash(data)
    (data / "features").mkdir()
    (data / "features" / "meta.json").write_text("{}")
    assert eval_data_hash(data) == before  # the model carries its own encoders
    (data / "tasks.json").write_text('[{"name": "label"}]')
    assert eval_data_hash(data) != before
