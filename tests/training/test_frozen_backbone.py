"""Frozen is computed once: where no layer of the text backbone trains, a step reads the final
token states the embed stage cached instead of running the cached layers again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from token_steps import tiny_transformer, token_data, token_params

from multitune.models.backbone import TextLayers
from multitune.training import TrainingData, train


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainingData:
    return token_data(tiny_transformer(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture
def layer_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows each run of the cached layers took, in order."""
    runs: list[int] = []
    run = TextLayers._layers

    def counted(self: TextLayers, states: Any, *args: Any) -> Any:
        runs.append(len(states))
        return run(self, states, *args)

    monkeypatch.setattr(TextLayers, "_layers", counted)
    return runs


def test_a_token_task_over_a_frozen_encoder_never_runs_its_layers(
    data: TrainingData, layer_runs: list[int]
) -> None:
    result = train(token_params("frozen", epochs=2), data)
    assert result.epochs_run == 2 and result.metrics["val"]["tags"]
    assert layer_runs == []  # neither a step nor an evaluation ran a layer


def test_gradual_unfreezing_runs_the_layers_only_once_they_train(
    data: TrainingData, layer_runs: list[int]
) -> None:
    params = token_params({"name": "top_k", "layers": 1, "unfreeze_after": 1}, epochs=2)
    after_epoch: list[int] = []
    train(params, data, callback=lambda report: after_epoch.append(len(layer_runs)))
    # Epoch 0 (frozen), its steps and its evaluation, ran no layer; epoch 1 ran them.
    assert after_epoch[0] == 0 < after_epoch[1]


def test_a_cache_without_final_states_trains_alike_running_the_layers(
    data: TrainingData, layer_runs: list[int]
) -> None:
    params = token_params("frozen", epochs=2)
    read = train(params, data)
    assert layer_runs == []
    older = replace(data, tokens={"text": replace(data.tokens["text"], final=None)})
    ran = train(params, older)
    assert layer_runs  # the layers ran again, as before the final states were cached
    for a, b in zip(read.history, ran.history, strict=True):
        np.testing.assert_allclose(
            list(a["train_loss"].values()), list(b["train_loss"].values()), rtol=1e-3
        )
    for task in ("tags", "kind"):
        for metric, value in read.metrics["test"][task].items():
            assert value == pytest.approx(ran.metrics["test"][task][metric], abs=1e-6), metric
