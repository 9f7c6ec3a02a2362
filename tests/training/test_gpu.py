"""The trainer on CUDA (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from token_steps import PATHS, run_steps, tiny_transformer, token_data, token_params

from multitune.training import predict, train


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_and_predicts_on_cuda(tiny_data, tiny_params) -> None:
    result = train(tiny_params(train={"epochs": 2, "device": "cuda"}), tiny_data)
    assert next(result.model.parameters()).is_cuda
    assert result.metrics["test"]["cls"]
    out = predict(result.model, {m: f[:4] for m, f in tiny_data.features.items()})
    assert out["cls"].shape == (4, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", list(PATHS))
def test_a_step_on_cuda_never_synchronizes(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each path's steps (pooled vectors, frozen token states, top-k fine-tuning) under
    `set_sync_debug_mode("error")`: any wait for the device inside a step raises."""
    setup = PATHS[path]
    data = token_data(
        tiny_transformer(tmp_path / "tiny_bert"), windows=setup.get("windows", False)
    )
    params = token_params(setup["backbone"], epoch_steps=3, device="cuda")
    try:
        run_steps(
            params,
            data,
            setup["tasks"],
            lambda: torch.cuda.set_sync_debug_mode("error"),
            lambda: torch.cuda.set_sync_debug_mode("default"),
            monkeypatch,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
