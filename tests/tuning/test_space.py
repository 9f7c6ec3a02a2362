"""`sweep.space`: validated like the rest of params, sampled conditionally, applied to params."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from multitune.config import load_params, validate_params
from multitune.errors import ConfigError
from multitune.tuning.space import apply, suggest

from .project import tiny_params


def _params(tmp_path: Path, space: dict[str, Any], **sweep: Any) -> Any:
    raw = tiny_params(tmp_path)
    raw["sweep"] = {**raw["sweep"], "space": space, **sweep}
    return validate_params(raw)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lrr": 0.1}, "sweep.space.lrr: unknown key 'lrr'; did you mean 'lr'?"),
        ({"weighting": {"name": "statc"}}, "unknown method 'statc'; did you mean 'static'?"),
        (
            {"sampling": {"name": "temperature", "temprature": 2}},
            "unknown option 'temprature'; did you mean 'temperature'?",
        ),
        (
            {
                "sampling": {
                    "name": "temperature",
                    "temperature": {"dist": "uniform", "low": -1, "high": 2},
                }
            },
            "temperature.temperature: Input should be greater than 0 (got -1.0)",
        ),
        ({"lr": {"dist": "loguniform", "low": 0, "high": 0.1}}, "needs low > 0"),
        ({"lr": {"dist": "uniform", "low": 0.1, "high": 3}}, "lr: Input should be less than"),
        ({"dropout": {"choice": [0.1, 1.5]}}, "dropout: Input should be less than 1"),
        ({"batch_size": {"dist": "int", "low": 64, "high": 32}}, "must be below high"),
        ({"trunk": [8], "sharing": {"name": "hard", "hidden": [4]}}, "both set"),
    ],
)
def test_a_bad_space_is_a_precise_config_error(
    tmp_path: Path, space: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _params(tmp_path, space)
    assert message in str(err.value)


def test_every_model_knob_can_be_searched(tmp_path: Path) -> None:
    space = {
        "fusion": {"choice": ["concat", {"name": "gated", "modality_dropout": 0.1}]},
        "sharing": {"choice": ["hard", {"name": "mmoe", "experts": {"choice": [2, 3]}}]},
        "weighting": {
            "choice": [
                {"name": "static", "weights": {"dist": "loguniform", "low": 0.5, "high": 2}},
                {"name": "dwa", "temperature": {"dist": "uniform", "low": 1, "high": 3}},
            ]
        },
        "freezing": {"choice": ["none", "frozen_trunk"]},
        "backbone": {"choice": ["frozen", {"name": "top_k", "layers": {"choice": [1, 2]}}]},
        "sampling": {
            "choice": [
                "proportional",
                {"name": "temperature", "temperature": {"dist": "uniform", "low": 1, "high": 5}},
            ]
        },
        "lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-2},
        "weight_decay": {"dist": "loguniform", "low": 1e-6, "high": 1e-2},
        "batch_size": {"choice": [32, 64]},
        "trunk": {"choice": [[8], [16, 8]]},
        "dropout": {"dist": "uniform", "low": 0.0, "high": 0.3},
        "encoder_hidden": {"dist": "int", "low": 8, "high": 32, "step": 8},
        "encoder_dropout": 0.05,
    }
    raw = tiny_params(tmp_path)
    # A top_k backbone needs a text modality that caches enough layers (checked at load).
    raw["data"]["modalities"]["t"] = {
        "column": "t",
        "encoder": {"name": "sentence_transformer", "cache_top_layers": 2},
    }
    raw["sweep"] = {**raw["sweep"], "space": space}
    params = validate_params(raw)
    tasks = [t.name for t in params.tasks]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_temperature = {True: 0, False: 0}
    seen_backbone: set[Any] = set()
    for _ in range(24):
        trial = study.ask()
        suggest(params.sweep.space, trial, tasks)
        values = trial.params
        tried = validate_params(apply(params.sweep.space, values, params.model_dump(), tasks))
        # Conditional: a temperature only with temperature sampling.
        has_t = "sampling.temperature.temperature" in values
        assert has_t == (tried.train.sampling.name == "temperature")
        seen_temperature[has_t] += 1
        if tried.train.weighting.name == "static":
            assert set(tried.train.weighting.weights) == set(tasks)  # one weight per task
            assert all(0.5 <= w <= 2 for w in tried.train.weighting.weights.values())
        else:
            assert not any(k.startswith("weighting.static") for k in values)
        assert tried.model.sharing.hidden in ([8], [16, 8])
        assert tried.model.encoder.dropout == 0.05
        assert tried.model.encoder.hidden in (8, 16, 24, 32)
        backbone = tried.model.backbone
        seen_backbone.add((backbone.name, getattr(backbone, "layers", None)))
        study.tell(trial, 0.0)
    assert seen_temperature[True] and seen_temperature[False]
    assert seen_backbone == {("frozen", None), ("top_k", 1), ("top_k", 2)}


def test_a_params_file_with_a_space_round_trips(tmp_path: Path) -> None:
    params = _params(tmp_path, tiny_params(tmp_path)["sweep"]["space"])
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    assert load_params(path) == params


def test_defaults_search_nothing(tmp_path: Path) -> None:
    raw = tiny_params(tmp_path)
    del raw["sweep"]
    params = validate_params(raw)
    assert params.sweep.space.knobs() == {}
    assert apply(params.sweep.space, {}, params.model_dump(), ["bin"]) == params.model_dump()
