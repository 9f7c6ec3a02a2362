"""Contract suite run over every registered sharing architecture."""

from __future__ import annotations

import pytest
import torch

from multitune.models.sharing import SHARINGS

IN_DIM, BATCH = 10, 16


@pytest.mark.parametrize("n_tasks", [1, 3])
@pytest.mark.parametrize("name", SHARINGS.names())
def test_shapes_and_gradients(name: str, n_tasks: int) -> None:
    torch.manual_seed(0)
    tasks = [f"t{i}" for i in range(n_tasks)]
    sharing = SHARINGS.build(SHARINGS.config(name)(hidden=[12, 6]), IN_DIM, tasks)
    x = torch.randn(BATCH, IN_DIM, requires_grad=True)
    out = sharing(x)
    assert set(out.per_task) == set(tasks)
    assert all(z.shape == (BATCH, sharing.out_dim) for z in out.per_task.values())
    assert out.features and all(f.requires_grad for f in out.features)
    sum((z * torch.randn_like(z)).sum() for z in out.per_task.values()).backward()
    for pname, p in sharing.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"


@pytest.mark.parametrize("name", SHARINGS.names())
def test_task_parameters_belong_to_their_task(name: str) -> None:
    tasks = ["a", "b"]
    sharing = SHARINGS.build(SHARINGS.config(name)(hidden=[8]), IN_DIM, tasks)
    own_a = {id(p) for p in sharing.task_parameters("a")}
    own_b = {id(p) for p in sharing.task_parameters("b")}
    assert not own_a & own_b
    sharing(torch.randn(BATCH, IN_DIM)).per_task["a"].sum().backward()
    for p in sharing.task_parameters("b"):
        assert p.grad is None or not p.grad.any(), "task a's loss moved task b's parameters"
