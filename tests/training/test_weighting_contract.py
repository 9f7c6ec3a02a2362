"""Contract suite run over every registered loss-balancing method."""

from __future__ import annotations

import pytest
import torch

from multitune.training.freezing import FREEZINGS
from multitune.training.setup import build_model, build_optimizer
from multitune.training.weighting import WEIGHTINGS, GradientAggregator, LossWeighting, StepContext


def _steps(params, data, n_steps: int):
    """Manual optimisation steps on the train rows; returns (losses per step, weights, model)."""
    torch.manual_seed(0)
    names = data.task_names
    model = build_model(params.model, data)
    balancer = WEIGHTINGS.build(params.train.weighting, names)
    freezing = FREEZINGS.build(params.train.freezing, names)
    optimizer = build_optimizer(model, balancer, freezing, params.train)
    idx = data.splits["train"]
    batch = {m: f[idx] for m, f in data.features.items()}
    history, weights = [], []
    for step in range(n_steps):
        out = model.forward_all(batch)
        losses = torch.stack(
            [
                model.heads[t].loss(out.outputs[t], data.targets[t][idx], data.labelled[t][idx])
                for t in names
            ]
        )
        optimizer.zero_grad(set_to_none=True)
        ctx = StepContext(
            out.features, model.shared_parameters(), [model.task_parameters(t) for t in names]
        )
        weights.append(balancer.backward(losses, ctx))
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, f"no gradient for {missing}"
        optimizer.step()
        balancer.after_step(lambda losses=losses: losses.detach())
        balancer.epoch_end(step, losses.detach())
        history.append(losses.detach())
    return torch.stack(history), torch.stack(weights), model


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_finite_weights_and_loss_falls(name: str, tiny_data, tiny_params) -> None:
    params = tiny_params(train={"weighting": {"name": name}, "lr": 0.01})
    losses, weights, _ = _steps(params, tiny_data, 25)
    assert weights.shape == (25, len(tiny_data.tasks))
    assert torch.isfinite(weights).all()
    assert torch.isfinite(losses).all()
    assert losses[-3:].mean() < 0.85 * losses[:3].mean(), losses.sum(1)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_interface_kind(name: str) -> None:
    impl = WEIGHTINGS.get(name)
    assert issubclass(impl, LossWeighting) != issubclass(impl, GradientAggregator)
    assert impl.__module__.split(".")[-1] in {name, "jacobian"} or name in impl.__module__


def test_static_weights_are_per_task_and_checked(tiny_params) -> None:
    from multitune.errors import ConfigError

    cfg = tiny_params(train={"weighting": {"name": "static", "weights": {"cls": 2.0}}})
    w = WEIGHTINGS.build(cfg.train.weighting, ["cls", "reg"])
    total, weights = w.combine(torch.tensor([1.0, 3.0]), None)  # type: ignore[arg-type]
    assert total.item() == 5.0 and weights.tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="unknown task"):
        WEIGHTINGS.build(cfg.train.weighting, ["reg"])
    with pytest.raises(ConfigError, match="did you mean 'pcgrad'"):
        tiny_params(train={"weighting": {"name": "pcgard"}})


@pytest.mark.parametrize("sharing", ["hard", "mmoe", "cgc"])
@pytest.mark.parametrize("name", ["static", "upgrad"])
def test_every_parameter_gets_a_gradient_with_any_sharing(
    name: str, sharing: str, tiny_data, tiny_params
) -> None:
    params = tiny_params(
        train={"weighting": {"name": name}},
        model={"sharing": {"name": sharing, "hidden": [8]}, "fusion": {"name": "gated"}},
    )
    _steps(params, tiny_data, 1)  # asserts every parameter has a gradient after step 0
