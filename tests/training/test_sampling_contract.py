"""Contract suite run over every registered task sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multitune.errors import ConfigError
from multitune.training.sampling import SAMPLERS

ROWS = [torch.arange(0, 100), torch.arange(90, 110), torch.tensor([], dtype=torch.long)]


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_probabilities_are_a_distribution(name: str) -> None:
    sampler = SAMPLERS.build(SAMPLERS.config(name)(), ["a", "b", "c"])
    for epoch in (0, 4, 9):
        p = sampler.probabilities(np.array([100.0, 20.0, 0.0]), epoch, 10)
        assert p.shape == (3,) and np.isclose(p.sum(), 1.0) and (p >= 0).all() and p[2] == 0
        assert p[0] >= p[1] > 0


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_epoch_order_draws_labelled_rows_deterministically(name: str) -> None:
    sampler = SAMPLERS.build(SAMPLERS.config(name)(), ["a", "b", "c"])
    order = sampler.epoch_order(ROWS, 16, epoch=2, total_epochs=5, seed=3)
    assert len(order) == 7 * 16  # ceil(110 / 16) steps of 16 rows
    assert set(order.tolist()) <= set(range(110))
    assert torch.equal(order, sampler.epoch_order(ROWS, 16, epoch=2, total_epochs=5, seed=3))
    assert not torch.equal(order, sampler.epoch_order(ROWS, 16, epoch=3, total_epochs=5, seed=3))
    for start in range(0, len(order), 16):  # every batch comes from one task's labelled rows
        batch = set(order[start : start + 16].tolist())
        assert any(batch <= set(r.tolist()) for r in ROWS[:2])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_fully_labelled_epoch_is_a_permutation(name: str) -> None:
    rows = [torch.arange(50)] * 2
    order = SAMPLERS.build(SAMPLERS.config(name)(), ["a", "b"]).epoch_order(rows, 8, 0, 1, 0)
    assert sorted(order.tolist()) == list(range(50))


def test_sampler_shapes() -> None:
    counts = np.array([400.0, 100.0])
    temp = SAMPLERS.build(SAMPLERS.config("temperature")(temperature=2.0), ["a", "b"])
    sqrt = SAMPLERS.build(SAMPLERS.config("sqrt")(), ["a", "b"])
    np.testing.assert_allclose(temp.probabilities(counts, 0, 1), [2 / 3, 1 / 3])
    np.testing.assert_allclose(sqrt.probabilities(counts, 0, 1), [2 / 3, 1 / 3])
    annealed = SAMPLERS.build(SAMPLERS.config("annealed")(), ["a", "b"])
    first, last = annealed.probabilities(counts, 0, 5), annealed.probabilities(counts, 4, 5)
    np.testing.assert_allclose(first, [0.8, 0.2])
    assert last[0] < first[0]


@pytest.mark.parametrize("bad", [0, -1.5])
def test_temperature_must_be_positive(tiny_params, bad: float) -> None:
    with pytest.raises(ConfigError, match=r"train\.sampling\.temperature.*greater than 0"):
        tiny_params(train={"sampling": {"name": "temperature", "temperature": bad}})


def test_unknown_sampler_suggests_the_closest(tiny_params) -> None:
    with pytest.raises(ConfigError, match="did you mean 'uniform'"):
        tiny_params(train={"sampling": {"name": "unifrom"}})
