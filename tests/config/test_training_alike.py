"""The settings that make both sides train alike: class weighting per task, one batch-size
rule; each mistake is one line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitune.config import load_params, validate_params
from multitune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        validate_params(raw, source="params.yaml")
    return str(info.value)


def test_shipped_params_use_the_batch_size_rule_and_search_class_weighting() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.sweep.space.batch_size is None  # both sides: sizes fit for their rows
    assert params.sweep.space.class_weighting is not None


def test_class_weighting_takes_one_value_or_one_per_task(shipped: dict[str, Any]) -> None:
    raw = copy.deepcopy(shipped)
    raw["train"]["class_weighting"] = {"speaker": "balanced", "polarity": "none"}
    train = validate_params(raw).train
    assert train.class_weighting_of("speaker") == "balanced"
    assert train.class_weighting_of("party") == "none"  # left out: none
    raw["train"]["class_weighting"] = "balanced"
    assert validate_params(raw).train.class_weighting_of("party") == "balanced"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "balancd",
            "params.yaml: train.class_weighting: expected none or balanced (every "
            "classification and binary task), or per task {task: none|balanced} (got 'balancd')",
        ),
        (
            {"speaker": "yes"},
            "params.yaml: train.class_weighting: task 'speaker': expected none or balanced "
            "(got 'yes')",
        ),
    ],
)
def test_a_bad_class_weighting_is_one_line(
    shipped: dict[str, Any], value: Any, message: str
) -> None:
    raw = copy.deepcopy(shipped)
    raw["train"]["class_weighting"] = value
    assert _error(raw) == message


def test_the_old_batch_size_switch_says_where_it_went(shipped: dict[str, Any]) -> None:
    raw = copy.deepcopy(shipped)
    raw["baselines"]["scale_batch_size"] = True
    message = _error(raw)
    assert message.startswith("params.yaml: baselines: scale_batch_size is gone")
    assert "sweep.space.batch_size" in message and "\n" not in message
