"""The embed stage: feature files, meta.json, fitting on train rows only, reusable encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from synthetic import synthetic_params

from multitune.data import load_features, read_dataset, read_meta, read_splits
from multitune.embed import load_encoder
from multitune.embed.stage import embed


def test_feature_files_and_loader(synthetic_data: tuple[Path, Any]) -> None:
    data_dir, _ = synthetic_data
    features = data_dir / "features"
    meta = read_meta(features)
    assert set(meta) == {"text", "meta", "audio"}
    assert meta["text"] | {"vocabulary": 0} == {
        "encoder": "tfidf_svd",
        "dim": 16,
        "vocabulary": 0,
        "rows": 300,
        "fitted_on": "train",
    }
    table = pq.read_table(features / "text.parquet")
    vector_type = table.schema.field("vector").type
    assert vector_type.list_size == 16 and str(vector_type.value_type) == "float"
    ids = table.column("id").to_pylist()[::-1]
    rows = np.array(table.column("vector").to_pylist()[::-1], dtype=np.float32)
    np.testing.assert_array_equal(load_features(features, "text", ids), rows)
    # A precomputed modality's vectors are stored once, by ingest: meta.json names the
    # dataset's column instead of a feature file holding a copy.
    assert not (features / "audio.parquet").exists()
    assert meta["audio"]["vectors"] == {"file": "../dataset.parquet", "column": "audio"}
    dataset = read_dataset(data_dir / "dataset.parquet").set_index("id")
    matrix = load_features(features, "audio", ids)
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, np.stack(dataset.loc[ids, "audio"].to_list()))


def test_saved_encoders_reproduce_the_vectors_on_raw_rows(
    synthetic_data: tuple[Path, Any],
) -> None:
    data_dir, params = synthetic_data
    dataset = read_dataset(data_dir / "dataset.parquet")
    for name, modality in params.data.modalities.items():
        encoder = load_encoder(data_dir / "features", name, modality)
        again = encoder.transform(dataset[modality.source_columns])
        stored = load_features(data_dir / "features", name, dataset["id"])
        np.testing.assert_allclose(again, stored, atol=1e-6)


def test_fitted_on_train_rows_only(synthetic_data: tuple[Path, Any], tmp_path: Path) -> None:
    data_dir, params = synthetic_data
    dataset = read_dataset(data_dir / "dataset.parquet")
    splits = read_splits(data_dir / "splits.parquet")
    split = dataset["id"].map(splits.set_index("id")["split"])
    train, held_out = split.eq("train").to_numpy(), split.ne("train").to_numpy()

    def train_vectors(frame: pd.DataFrame, out: str) -> dict[str, np.ndarray]:
        embed(frame, splits, params.data, tmp_path / out)
        ids = frame.loc[train, "id"]
        return {m: load_features(tmp_path / out, m, ids) for m in ("text", "meta")}

    base = train_vectors(dataset, "base")
    changed = dataset.copy()
    changed.loc[held_out, "text"] = "entirely new words nobody used in training"
    changed.loc[held_out, "num_a"] = 1e6
    for m, vectors in train_vectors(changed, "held_out").items():
        np.testing.assert_array_equal(vectors, base[m])
    # The check has teeth: changing train rows does move train vectors.
    changed = dataset.copy()
    changed.loc[np.flatnonzero(train)[0], "num_a"] += 100.0
    assert not np.array_equal(train_vectors(changed, "train")["meta"], base["meta"])


def test_a_cached_text_modality_is_encoded_in_one_pass(
    synthetic_data: tuple[Path, Any], tmp_path: Path, monkeypatch: Any
) -> None:
    """Pooled vectors, the states entering the cached layer and the final states come from
    one encoder pass per text (once a batch), and the vectors are the encoder's own."""
    from transformers.models.bert.modeling_bert import BertModel

    from multitune.config import validate_params
    from multitune.embed.token_cache import TokenCache, cache_dir

    data_dir, _ = synthetic_data
    frame = read_dataset(data_dir / "dataset.parquet").head(80)
    raw = synthetic_params(data_dir / "dataset.parquet")
    encoder = {"name": "sentence_transformer", "backend": "torch", "batch_size": 32}
    raw["data"]["modalities"] = {
        "text": {"column": "text", "encoder": encoder | {"cache_top_layers": 1}}
    }
    data = validate_params(raw).data
    passes = []
    forward = BertModel.forward
    monkeypatch.setattr(
        BertModel, "forward", lambda self, *a, **k: passes.append(1) or forward(self, *a, **k)
    )
    embed(frame, read_splits(data_dir / "splits.parquet"), data, tmp_path / "features")
    assert len(passes) == 3  # 80 texts, 32 a batch: each text went through the model once
    monkeypatch.setattr(BertModel, "forward", forward)

    vectors = load_features(tmp_path / "features", "text", frame["id"])
    again = load_encoder(tmp_path / "features", "text", data.modalities["text"])
    np.testing.assert_allclose(vectors, again.transform(frame[["text"]]), atol=1e-6)
    cache = TokenCache.read(cache_dir(tmp_path / "features", "text"))
    assert cache.final is not None and cache.final.shape == cache.states.shape
