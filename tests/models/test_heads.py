"""Task heads: masked losses, statistics from train rows, user-facing predictions."""

from __future__ import annotations

import pytest
import torch

from multitune.config import (
    BinaryTask,
    ClassificationTask,
    DistributionTask,
    MultilabelTask,
    RegressionTask,
    TokenClassificationTask,
)
from multitune.models.heads import TaskSpec, build_head

N, DIM, T = 12, 5, 7


def _specs() -> list[TaskSpec]:
    return [
        TaskSpec(ClassificationTask(name="c", column="c", label_smoothing=0.1), ["x", "y", "z"]),
        TaskSpec(BinaryTask(name="b", column="b", pos_weight="balanced"), ["no", "yes"]),
        TaskSpec(MultilabelTask(name="m", column="m"), ["p", "q"]),
        TaskSpec(RegressionTask(name="r", column="r", loss="huber")),
        TaskSpec(DistributionTask(name="d", column="d", missing="mask"), ["l", "h"]),
        TaskSpec(TokenClassificationTask(name="t", column="t"), ["B-X", "I-X", "O"]),
    ]


def _input(spec: TaskSpec) -> torch.Tensor:
    """What the head reads: trunk features, or token states for a token task."""
    return torch.randn(N, T, DIM) if spec.type == "token_classification" else torch.randn(N, DIM)


def _target(spec: TaskSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if spec.type in ("classification", "distribution"):
        return torch.randint(0, spec.n_outputs, (N,), generator=g)
    if spec.type == "binary":
        return torch.randint(0, 2, (N,), generator=g).float()
    if spec.type == "multilabel":
        return torch.randint(0, 2, (N, 2), generator=g).float()
    if spec.type == "token_classification":  # one label per token; -1 on some (no label)
        return torch.randint(-1, spec.n_outputs, (N, T + 2), generator=g)
    return torch.randn(N, generator=g) * 3 + 100


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.type)
def test_loss_ignores_unlabelled_rows(spec: TaskSpec) -> None:
    torch.manual_seed(0)
    head = build_head(spec, DIM)
    z = _input(spec)
    target, labelled = _target(spec), torch.arange(N) % 3 != 0
    head.fit_statistics(target, labelled)
    loss = head.loss(head(z), target, labelled)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    other = target.clone()
    other[~labelled] = other.flip(0)[~labelled]
    torch.testing.assert_close(head.loss(head(z), other, labelled), loss)
    none = head.loss(head(z), target, torch.zeros(N, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.type)
def test_predict_gives_probabilities_or_original_units(spec: TaskSpec) -> None:
    head = build_head(spec, DIM)
    target = _target(spec)
    head.fit_statistics(target, torch.ones(N, dtype=torch.bool))
    pred = head.predict(head(_input(spec)))
    if spec.type == "regression":
        assert pred.shape == (N,) and 90 < pred.mean() < 110
    elif spec.type == "binary":
        assert pred.shape == (N,) and ((pred >= 0) & (pred <= 1)).all()
    elif spec.type == "multilabel":
        assert pred.shape == (N, 2)
    else:
        torch.testing.assert_close(pred.sum(-1), torch.ones(pred.shape[:-1]))


def test_balanced_class_weights_and_pos_weight() -> None:
    cls = build_head(TaskSpec(ClassificationTask(name="c", column="c", class_weights="balanced"),
                              ["a", "b"]), DIM)  # fmt: skip
    cls.fit_statistics(torch.tensor([0, 0, 0, 1]), torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(cls.class_weight, torch.tensor([4 / 6, 2.0]))
    binary = build_head(_specs()[1], DIM)
    binary.fit_statistics(torch.tensor([1.0, 0, 0, 0]), torch.ones(4, dtype=torch.bool))
    assert binary.pos_weight.item() == 3.0


def test_unknown_class_weight_is_named() -> None:
    spec = TaskSpec(ClassificationTask(name="c", column="c", class_weights={"q": 2.0}), ["a"])
    with pytest.raises(ValueError, match="unknown class"):
        build_head(spec, DIM).fit_statistics(torch.tensor([0]), torch.ones(1, dtype=torch.bool))


def test_distribution_missing_uniform_vs_mask() -> None:
    uniform = DistributionTask(name="d", column="d", missing="uniform", smoothing=0.2)
    head = build_head(TaskSpec(uniform, ["a", "b", "c"]), DIM)
    soft = head.soft_target(torch.tensor([0, 2]), torch.tensor([True, False]))
    torch.testing.assert_close(soft, torch.tensor([[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3]]))
    out = torch.randn(2, 3)
    # uniform: the unlabelled row is a uniform target and counts; mask: it does not
    loss_uniform = head.loss(out, torch.tensor([0, 2]), torch.tensor([True, False]))
    head.spec = TaskSpec(uniform.model_copy(update={"missing": "mask"}), ["a", "b", "c"])
    loss_mask = head.loss(out, torch.tensor([0, 2]), torch.tensor([True, False]))
    assert not torch.isclose(loss_uniform, loss_mask)


def test_regression_loss_is_on_standardized_targets() -> None:
    head = build_head(TaskSpec(RegressionTask(name="r", column="r")), DIM)
    y = torch.tensor([1000.0, 1010.0, 990.0])
    head.fit_statistics(y, torch.ones(3, dtype=torch.bool))
    exact = (y - head.mean) / head.std
    assert head.loss(exact, y, torch.ones(3, dtype=torch.bool)).item() < 1e-10
