"""Input standardization: fitted on train rows only, saved with the model, applied to raw
input wherever the model is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multitune.config import validate_params
from multitune.models.heads import TaskSpec
from multitune.models.standardize import Standardize
from multitune.training import TrainingData, predict_rows, train
from multitune.training.result import load_model


def test_statistics_come_from_the_train_rows_alone_and_a_constant_feature_is_centred() -> None:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(3.0, 0.05, size=(200, 4)), dtype=torch.float32)
    x[:, 2] = 7.0  # constant
    x[150:] += 100.0  # val/test rows far off: they must not move the statistics
    train = torch.arange(150)
    scaler = Standardize(4)
    scaler.fit(x, train)
    z = scaler(x[train])
    assert torch.allclose(z.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z[:, [0, 1, 3]].std(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert torch.equal(z[:, 2], torch.zeros(150))  # centred, not divided by zero
    assert torch.isfinite(scaler(x)).all()


def test_fitting_on_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="zero train rows"):
        Standardize(3).fit(torch.zeros(5, 3), torch.zeros(0, dtype=torch.long))


def _data(scale: float) -> tuple[TrainingData, object]:
    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.where(x[:, 0] + 0.3 * rng.normal(size=n) > 0, "yes", "no").astype(object)
    split = np.array(["train"] * 300 + ["val"] * 50 + ["test"] * 50, dtype=object)
    params = validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {"v": {"column": "v", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [{"name": "t", "type": "binary", "column": "t"}],
            "model": {"encoder": {"hidden": 8}, "sharing": {"hidden": [8]}},
            "train": {"epochs": 3, "epoch_steps": 5, "batch_size": 32, "device": "cpu"},
        }
    )
    specs = [TaskSpec(t, None) for t in params.tasks]
    # The same table in other units: a tiny scale and an offset, as raw embeddings have.
    data = TrainingData.from_arrays({"v": x * scale + 5.0}, specs, {"t": y}, split)
    return data, params


def test_a_network_sees_the_same_standardized_input_whatever_the_raw_scale() -> None:
    small, params = _data(0.01)
    large, _ = _data(1.0)
    a = train(params, small, seed=0)  # type: ignore[arg-type]
    b = train(params, large, seed=0)  # type: ignore[arg-type]
    test = small.splits["test"]
    pa = predict_rows(a.model, small, test)["t"]
    pb = predict_rows(b.model, large, test)["t"]
    assert torch.allclose(pa, pb, atol=1e-3)


def test_off_the_network_takes_the_raw_vectors() -> None:
    data, params = _data(0.01)
    raw = params.model_copy(  # type: ignore[attr-defined]
        update={"model": params.model.model_copy(update={"standardize": False})}  # type: ignore[attr-defined]
    )
    model = train(raw, data, seed=0).model
    assert len(model.standardize) == 0
    on = train(params, data, seed=0).model  # type: ignore[arg-type]
    assert set(on.standardize) == {"v"}


def test_a_saved_model_applies_its_statistics_to_raw_input(tmp_path: Path) -> None:
    data, params = _data(0.01)
    result = train(params, data, seed=0)  # type: ignore[arg-type]
    result.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    test = data.splits["test"]
    before = predict_rows(result.model, data, test)["t"]
    after = predict_rows(loaded, data, test)["t"]
    assert torch.allclose(before, after, atol=1e-6)
    assert float(loaded.standardize["v"].mean.mean()) == pytest.approx(5.0, abs=0.01)
