"""The training budget: epochs of a fixed number of steps, convergence, and what stops a run."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from multitune.config import Params
from multitune.training import TrainingData, train
from multitune.training.setup import build_model


def test_an_epoch_is_the_same_number_of_steps_for_a_small_task_and_for_all_tasks(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    params = tiny_params(train={"epochs": 2, "epoch_steps": 7, "patience": 5})
    small = train(params, tiny_data, tasks=["dist"])  # about half the rows are labelled
    everything = train(params, tiny_data)
    for result in (small, everything):
        assert result.steps_per_epoch == 7
        assert [h["step"] for h in result.history] == [7, 14]
        assert result.steps_run == 14


def test_a_run_stopped_by_patience_is_converged_and_one_stopped_by_its_cap_is_not(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    stopped = train(
        tiny_params(train={"epochs": 60, "epoch_steps": 5, "patience": 2, "lr": 0.05}),
        tiny_data,
        tasks=["cls"],
    )
    assert stopped.converged and stopped.epochs_run < 60
    assert stopped.best_step == (stopped.best_epoch + 1) * 5
    capped = train(
        tiny_params(train={"epochs": 2, "epoch_steps": 5, "patience": 10}),
        tiny_data,
        tasks=["cls"],
    )
    assert not capped.converged and capped.epochs_run == 2


def test_a_nan_objective_never_counts_as_an_improvement(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    val = tiny_data.splits["val"]
    labelled = {k: v.clone() for k, v in tiny_data.labelled.items()}
    labelled["cls"][val] = False  # no val label: the objective is NaN every epoch
    data = TrainingData(
        tiny_data.ids,
        tiny_data.features,
        tiny_data.tasks,
        tiny_data.targets,
        labelled,
        tiny_data.splits,
    )
    result = train(
        tiny_params(train={"epochs": 20, "epoch_steps": 3, "patience": 2}), data, tasks=["cls"]
    )
    assert all(np.isnan(h["objective"]) for h in result.history)
    # Nothing to stop on: the run trains to its cap, keeps its latest weights, and says so.
    assert result.epochs_run == 20 and result.best_epoch == 19
    assert not result.converged


def test_static_weights_of_a_multi_task_config_train_a_subset_of_its_tasks(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    params = tiny_params(
        train={"epochs": 1, "weighting": {"name": "static", "weights": {"cls": 2.0, "bin": 0.5}}}
    )
    result = train(params, tiny_data, tasks=["bin"])
    assert list(result.metrics["test"]) == ["bin"]


def test_balanced_class_weighting_weighs_the_rare_class_up(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    result = train(
        tiny_params(train={"epochs": 1, "class_weighting": "balanced"}), tiny_data, tasks=["cls"]
    )
    weight = result.model.head("cls").class_weight  # type: ignore[union-attr]
    counts = torch.bincount(
        tiny_data.targets["cls"][tiny_data.splits["train"]][
            tiny_data.labelled["cls"][tiny_data.splits["train"]]
        ],
        minlength=3,
    ).float()
    assert torch.argmax(weight) == torch.argmin(counts)
    assert torch.allclose(weight * counts, (weight * counts)[0])  # inverse frequency


def test_encoder_layers_zero_with_no_trunk_is_a_linear_model(
    tiny_params: Callable[..., Params], tiny_data: TrainingData
) -> None:
    params = tiny_params(
        model={"encoder": {"hidden": 8, "layers": 0}, "sharing": {"hidden": []}},
        tasks=[{"name": "reg", "type": "regression", "column": "reg"}],
    )
    data = tiny_data.select(["reg"])
    model = build_model(params.model, data).eval()
    x1 = {m: torch.randn(4, f.shape[1]) for m, f in data.features.items()}
    x2 = {m: torch.randn(4, f.shape[1]) for m, f in data.features.items()}
    zero = {m: torch.zeros(4, f.shape[1]) for m, f in data.features.items()}
    both = {m: x1[m] + x2[m] for m in x1}
    with torch.no_grad():
        f = {k: model(v)["reg"] for k, v in {"x1": x1, "x2": x2, "0": zero, "both": both}.items()}
    assert torch.allclose(f["both"] - f["0"], (f["x1"] - f["0"]) + (f["x2"] - f["0"]), atol=1e-5)
