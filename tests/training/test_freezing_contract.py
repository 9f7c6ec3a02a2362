"""Contract suite run over every registered freezing policy: frozen parameters do not move,
the others do; lr multipliers; warm start and gradual unfreezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multitune.errors import ConfigError
from multitune.training import train
from multitune.training.freezing import FREEZINGS
from multitune.training.setup import build_model, build_optimizer
from multitune.training.weighting import WEIGHTINGS


def _config(name: str, saved: Path) -> dict:
    extra = {"frozen_heads": {"heads": ["cls", "reg"]}, "warm_start": {"path": str(saved)}}
    return {"name": name, **extra.get(name, {})}


@pytest.fixture(scope="module")
def saved_single_task(tiny_data, tiny_params, tmp_path_factory) -> Path:
    result = train(tiny_params(train={"epochs": 1}), tiny_data, tasks=["cls"])
    return result.save(tmp_path_factory.mktemp("st") / "model")


@pytest.mark.parametrize("name", FREEZINGS.names())
def test_frozen_parameters_do_not_move(name, tiny_data, tiny_params, saved_single_task) -> None:
    params = tiny_params(train={"epochs": 1, "freezing": _config(name, saved_single_task)})
    torch.manual_seed(params.train.seed)
    initial = build_model(params.model, tiny_data)
    policy = FREEZINGS.build(params.train.freezing, tiny_data.task_names)
    policy.setup(initial)
    frozen = policy.frozen(initial, 0)
    before = {n: p.detach().clone() for n, p in initial.named_parameters()}
    after = dict(train(params, tiny_data).model.named_parameters())
    for n, p in after.items():
        moved = not torch.equal(p.detach(), before[n])
        assert moved != (n in frozen), f"{name}: {n} frozen={n in frozen} moved={moved}"
    if name != "none":
        assert frozen


def test_lr_multiplier_zero_keeps_a_component(tiny_data, tiny_params) -> None:
    freezing = {"name": "none", "lr_multipliers": {"encoders": 0.0, "heads": 2.0}}
    params = tiny_params(train={"epochs": 1, "freezing": freezing})
    torch.manual_seed(params.train.seed)
    initial = build_model(params.model, tiny_data).state_dict()
    model = train(params, tiny_data).model
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), initial[n]) == n.startswith("encoders.")


def test_components_at_one_learning_rate_share_a_param_group(tiny_data, tiny_params) -> None:
    freezing = {"name": "none", "lr_multipliers": {"heads": 2.0}}
    params = tiny_params(train={"epochs": 1, "freezing": freezing})
    model = build_model(params.model, tiny_data)
    policy = FREEZINGS.build(params.train.freezing, tiny_data.task_names)
    balancer = WEIGHTINGS.build(params.train.weighting, tiny_data.task_names)
    optimizer = build_optimizer(model, balancer, policy, params.train)
    lr = params.train.lr
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert sorted(by_lr) == [lr, 2 * lr]  # one group per rate (the fused step runs per group)
    heads = {id(p) for p in model.heads.parameters()}
    assert by_lr[2 * lr] == heads
    assert by_lr[lr] == {id(p) for p in model.parameters()} - heads


def test_warm_start_loads_then_unfreezes(tiny_data, tiny_params, saved_single_task) -> None:
    freezing = {"name": "warm_start", "path": str(saved_single_task), "unfreeze_after": 1}
    params = tiny_params(train={"freezing": freezing})
    model = build_model(params.model, tiny_data)
    policy = FREEZINGS.build(params.train.freezing, tiny_data.task_names)
    policy.setup(model)
    from safetensors.torch import load_file

    saved = load_file(str(saved_single_task / "model.safetensors"))
    torch.testing.assert_close(model.encoders["a"].net[0].weight, saved["encoders.a.net.0.weight"])
    assert policy.frozen(model, 0) and not policy.frozen(model, 1)
    assert not any(n.startswith("heads.") for n in policy.frozen(model, 0))


def test_bad_freezing_configs_are_clear(tiny_data, tiny_params, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown task head"):
        train(tiny_params(train={"freezing": {"name": "frozen_heads", "heads": ["nope"]}}),
              tiny_data)  # fmt: skip
    with pytest.raises(ConfigError, match="no saved model"):
        train(tiny_params(train={"freezing": {"name": "warm_start", "path": str(tmp_path)}}),
              tiny_data)  # fmt: skip
    with pytest.raises(ConfigError, match="lr_multipliers"):
        tiny_params(train={"freezing": {"name": "none", "lr_multipliers": {"trunk": 1.0}}})
