"""Checkpoints resume exactly; callbacks; bad configs fail with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from multitune.errors import ConfigError
from multitune.training import Checkpoint, EpochReport, train


def test_resume_from_checkpoint_matches_an_uninterrupted_run(
    tiny_data, tiny_params, tmp_path: Path
) -> None:
    params = tiny_params(train={"epochs": 4, "weighting": {"name": "uncertainty"}, "patience": 10})
    saved: list[Path] = []
    reports: list[EpochReport] = []

    def keep(report: EpochReport) -> None:
        reports.append(report)
        if report.epoch == 1:
            saved.append(report.checkpoint().save(tmp_path / "ckpt"))

    full = train(params, tiny_data, callback=keep)
    assert [r.epoch for r in reports] == [0, 1, 2, 3]
    assert all(set(r.metrics) == set(tiny_data.task_names) for r in reports)
    resumed = train(params, tiny_data, resume=Checkpoint.load(saved[0]))
    assert resumed.metrics == full.metrics
    assert resumed.history == full.history


def test_early_stopping_keeps_the_best_epoch(tiny_data, tiny_params) -> None:
    result = train(tiny_params(train={"epochs": 30, "patience": 2, "lr": 0.05}), tiny_data)
    assert result.epochs_run < 30
    objectives = [h["objective"] for h in result.history]
    assert result.best_epoch == max(range(len(objectives)), key=objectives.__getitem__)
    assert result.epochs_run - 1 - result.best_epoch == 2


def test_bad_model_configs_are_clear(tiny_data, tiny_params) -> None:
    with pytest.raises(ConfigError, match="did you mean 'mmoe'"):
        tiny_params(model={"sharing": {"name": "mmo"}})
    with pytest.raises(ConfigError, match="must divide the encoder width"):
        train(tiny_params(model={"fusion": {"name": "attention", "heads": 3}}), tiny_data)
    with pytest.raises(ConfigError, match="unknown key 'epoch'; did you mean 'epochs'"):
        tiny_params(train={"epoch": 3})
