"""Contract suite over every registered encoder, plus per-encoder behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from synthetic import synthetic_frame

from multitune.embed import ENCODERS, Encoder
from multitune.embed.sentence_transformer import SentenceTransformerEncoder
from multitune.errors import DataError

COLUMNS = {"text": ["text"], "numeric": ["num_a", "num_b", "num_c"], "vector": ["audio"]}
SMALL = {"tfidf_svd": {"dims": 8, "min_df": 1}}


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the text model per test session."""
    return tmp_path_factory.mktemp("onnx")


def _build(name: str, st_model: Any, **fields: Any) -> Encoder:
    fields = {"name": name, **SMALL.get(name, {}), **fields}
    config = ENCODERS.config(name).model_validate(fields)
    if name == "sentence_transformer":
        return SentenceTransformerEncoder(config, model=st_model)
    return ENCODERS.build(config)


def _frame(encoder: Encoder, n: int = 60) -> pd.DataFrame:
    return synthetic_frame(n=n)[COLUMNS[getattr(encoder, "input_kind", "text")]]


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_contract(name: str, st_model: Any, tmp_path: Path, onnx_cache: Path) -> None:
    extra = {"onnx_cache": str(onnx_cache)} if name == "sentence_transformer" else {}
    encoder = _build(name, st_model, **extra)
    frame = _frame(encoder)
    encoder.fit(frame.iloc[:40])
    vectors = encoder.transform(frame)
    assert vectors.shape == (len(frame), encoder.dim)
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    assert np.isfinite(vectors).all()
    assert encoder.describe()["encoder"] == name and encoder.describe()["dim"] == encoder.dim
    encoder.save(tmp_path)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.joblib"))
    restored = type(encoder).load(encoder.config, tmp_path)
    if isinstance(restored, SentenceTransformerEncoder):
        restored._model = st_model  # same weights; avoid loading them a second time
    np.testing.assert_allclose(restored.transform(frame), vectors, atol=1e-6)


TEXTS = [*synthetic_frame(n=40)["text"], "", "Yes.", "word " * 300, "A longer one, " * 12]


@pytest.fixture(scope="module")
def reference(st_model: Any) -> np.ndarray:
    """Plain `SentenceTransformer.encode` on TEXTS (empty, tiny and truncated texts included)."""
    return st_model.encode(TEXTS, batch_size=16, convert_to_numpy=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_text_vectors_equal_sentence_transformer_encode(
    backend: str, st_model: Any, onnx_cache: Path, reference: np.ndarray
) -> None:
    encoder = _build(
        "sentence_transformer",
        st_model,
        backend=backend,
        onnx_cache=str(onnx_cache),
        batch_size=16,
    )
    assert isinstance(encoder, SentenceTransformerEncoder)
    ours = encoder.encode(TEXTS)
    assert encoder.backend == backend
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - reference).max() < 1e-4


def test_tfidf_svd_needs_a_big_enough_vocabulary() -> None:
    config = ENCODERS.config("tfidf_svd").model_validate({"name": "tfidf_svd", "dims": 64})
    with pytest.raises(DataError, match="dims=64 needs a vocabulary larger"):
        ENCODERS.build(config).fit(pd.DataFrame({"text": ["one two", "two three"] * 3}))


def test_numeric_uses_train_statistics() -> None:
    encoder = ENCODERS.build(ENCODERS.config("numeric")())
    encoder.fit(pd.DataFrame({"a": [1.0, 3.0], "b": [5.0, 5.0]}))
    z = encoder.transform(pd.DataFrame({"a": [2.0, 5.0], "b": [5.0, 6.0]}))
    np.testing.assert_allclose(z, [[0.0, 0.0], [3.0, 1.0]])  # constant column: centred only


def test_precomputed_rejects_ragged_or_non_finite_vectors() -> None:
    encoder = ENCODERS.build(ENCODERS.config("precomputed")())
    ragged = pd.DataFrame({"v": [np.zeros(3), np.zeros(4)]})
    with pytest.raises(DataError, match=r"one length; found lengths \[3, 4\]"):
        encoder.fit(ragged)
    encoder.fit(pd.DataFrame({"v": [np.zeros(3)]}))
    with pytest.raises(DataError, match="fitted on 3"):
        encoder.transform(pd.DataFrame({"v": [np.zeros(5)]}))
    with pytest.raises(DataError, match="NaN or inf"):
        encoder.transform(pd.DataFrame({"v": [np.array([0.0, np.inf, 1.0])]}))
    strings = encoder.transform(pd.DataFrame({"v": ["[1, 2, 3]"]}))  # vectors from a csv
    np.testing.assert_array_equal(strings, [[1.0, 2.0, 3.0]])


def test_precomputed_reads_arrow_vector_columns_without_python_rows(tmp_path: Path) -> None:
    from multitune.data import read_dataset, write_parquet
    from multitune.embed.precomputed import stack_vectors

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 5)).astype(np.float32)
    write_parquet(tmp_path / "d.parquet", pd.DataFrame({"id": range(30), "v": list(vectors)}))
    cells = read_dataset(tmp_path / "d.parquet", ["v"], arrow_vectors=True)["v"]
    assert isinstance(cells.dtype, pd.ArrowDtype)
    matrix = stack_vectors(cells)
    np.testing.assert_array_equal(matrix, vectors)
    np.testing.assert_array_equal(matrix, stack_vectors(pd.Series(list(vectors))))
    assert not matrix.flags["OWNDATA"]  # a view of Arrow's buffer
    encoder = ENCODERS.build(ENCODERS.config("precomputed")())
    encoder.fit(cells.iloc[:1].to_frame())
    np.testing.assert_array_equal(encoder.transform(cells.to_frame()), vectors)

    def arrow(values: list) -> pd.Series:
        return pd.Series(pd.array(values, dtype=pd.ArrowDtype(pa.list_(pa.float32()))), name="v")

    with pytest.raises(DataError, match=r"one length; found lengths \[2, 3\]"):
        stack_vectors(arrow([[1, 2, 3], [1, 2]]))
    with pytest.raises(DataError, match="fitted on 5"):
        encoder.transform(arrow([[1, 2, 3]]).to_frame())
    with pytest.raises(DataError, match=r"1 row\(s\) lack a vector"):
        stack_vectors(arrow([[1, 2], None]))
    with pytest.raises(DataError, match=r"1 vector\(s\) hold NaN or inf"):
        stack_vectors(arrow([[1, float("nan")], [1, 2]]))
