"""params.yaml validation: the shipped file loads; each mistake gets one precise message."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitune.config import Params, load_params, validate_params
from multitune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "builtin:movies-debates"
    assert set(params.data.modalities) >= {"text", "lexical"}
    assert [t.name for t in params.tasks][:2] == ["subjective", "polarity"]
    assert params.split.fractions == (0.8, 0.1, 0.1)


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        validate_params(raw, source="params.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda r: r["tasks"][0].update(typ="binary"),
            ["params.yaml", "tasks[0]", "unknown key 'typ'", "did you mean 'type'"],
        ),
        (
            lambda r: r["tasks"][1].update(type="binery"),
            ["tasks[1].type", "'binery'", "did you mean 'binary'", "classification"],
        ),
        (
            lambda r: r["data"]["modalities"]["lexical"]["encoder"].update(dimz=3),
            ["data.modalities.lexical.encoder", "did you mean 'dims'"],
        ),
        (
            lambda r: r["data"]["modalities"]["lexical"]["encoder"].update(name="tfidf"),
            ["data.modalities.lexical.encoder.name", "did you mean 'tfidf_svd'"],
        ),
        (lambda r: r.update(splt={}), ["unknown key 'splt'", "did you mean 'split'"]),
        (lambda r: r["split"].update(fractions=[0.5, 0.1, 0.1]), ["split.fractions", "sum to 1"]),
        (lambda r: r["split"].update(seed="abc"), ["split.seed", "integer", "'abc'"]),
        (
            lambda r: r["data"]["modalities"]["lexical"]["encoder"].update(dims=0),
            ["encoder.dims", "greater than or equal to 1", "got 0"],
        ),
        (lambda r: r["data"].pop("modalities"), ["data.modalities", "missing"]),
        (
            lambda r: r["data"]["modalities"]["text"].update(columns=["a"]),
            ["data.modalities.text", "exactly one of `column`"],
        ),
        (lambda r: r["tasks"].append(dict(r["tasks"][0])), ["unique", "subjective"]),
        (
            lambda r: r.update(task_groups={"g": ["subjective", "nope"]}),
            ["task_groups.g", "nope"],
        ),
        (lambda r: r["data"].update(source="table.xlsx"), ["data.source", ".parquet or .csv"]),
    ],
)
def test_bad_params_are_named(shipped: dict[str, Any], mutate: Any, expected: list[str]) -> None:
    raw = copy.deepcopy(shipped)
    mutate(raw)
    message = _error(raw)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_cli_reports_bad_params_without_traceback(tmp_path: Path, shipped: dict[str, Any]) -> None:
    raw = copy.deepcopy(shipped)
    raw["split"]["sead"] = 1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "multitune.cli", "train", "--params", str(bad), "--out", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "did you mean 'seed'" in proc.stderr


def test_schema_command_prints_json_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "multitune.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    schema = yaml.safe_load(proc.stdout)
    assert schema["additionalProperties"] is False
    assert {"data", "tasks", "split"} <= set(schema["properties"])
