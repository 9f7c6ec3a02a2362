"""The trainer on CUDA (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from multitune.training import predict, train


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_and_predicts_on_cuda(tiny_data, tiny_params) -> None:
    result = train(tiny_params(train={"epochs": 2, "device": "cuda"}), tiny_data)
    assert next(result.model.parameters()).is_cuda
    assert result.metrics["test"]["cls"]
    out = predict(result.model, {m: f[:4] for m, f in tiny_data.features.items()})
    assert out["cls"].shape == (4, 3)
