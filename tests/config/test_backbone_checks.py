"""A `top_k` backbone needs token states the modalities cache: refused when params load, not
in a trial after ingest, split and embed have run."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitune.config import load_params, validate_params
from multitune.config.methods.backbone import TopKConfig
from multitune.config.schema import backbone_modalities
from multitune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TOP_K_CHOICE = {"choice": ["frozen", {"name": "top_k", "layers": {"choice": [1, 2]}}]}


@pytest.fixture
def shipped() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


def _cache(raw: dict[str, Any], layers: int) -> dict[str, Any]:
    raw["data"]["modalities"]["text"]["encoder"]["cache_top_layers"] = layers
    return raw


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        validate_params(raw)
    message = str(err.value)
    assert "\n" not in message and "(top level)" not in message
    return message


def _top_k_without_cache(tmp_path: Path, shipped: dict[str, Any]) -> Path:
    """The shipped params.yaml with a top_k backbone and no token cache, written out."""
    shipped["model"]["backbone"] = {"name": "top_k", "layers": 2}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(shipped, sort_keys=False))
    return path


def test_top_k_without_a_token_cache_is_refused_when_params_load(
    tmp_path: Path, shipped: dict[str, Any]
) -> None:
    path = _top_k_without_cache(tmp_path, shipped)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert message.startswith(f"{path}: model.backbone: top_k (layers: 2)")
    assert "set data.modalities.text.encoder.cache_top_layers: 2" in message
    assert "{name: frozen}" in message and "\n" not in message


def test_the_ingest_stage_prints_it_in_one_line_before_reading_any_data(
    tmp_path: Path, shipped: dict[str, Any]
) -> None:
    path = _top_k_without_cache(tmp_path, shipped)
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / "ingest.py"), "--params", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: {path}: model.backbone: ") and "cache_top_layers" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("backbone", "cached", "expected"),
    [
        (
            {"name": "top_k", "layers": 3},
            2,
            "model.backbone: top_k (layers: 3) trains 3 layers, but "
            "data.modalities.text.encoder.cache_top_layers is 2; set cache_top_layers: 3 or "
            "more, or lower model.backbone.layers to 2",
        ),
        (
            {"name": "top_k", "modalities": ["lexical"]},
            2,
            "'lexical' is encoded by tfidf_svd, and only a sentence_transformer encoder",
        ),
        (
            {"name": "top_k", "modalities": ["txt"]},
            2,
            "model.backbone.modalities: 'txt' is not a modality; did you mean 'text'?",
        ),
    ],
)
def test_a_top_k_the_cache_cannot_serve_names_the_fix(
    shipped: dict[str, Any], backbone: dict[str, Any], cached: int, expected: str
) -> None:
    raw = _cache(shipped, cached)
    raw["model"]["backbone"] = backbone
    assert expected in _error(raw)


def test_a_search_that_may_pick_more_layers_than_cached_is_refused(
    shipped: dict[str, Any],
) -> None:
    raw = _cache(shipped, 1)
    raw["sweep"]["space"]["backbone"] = TOP_K_CHOICE
    message = _error(raw)
    assert message.startswith("params.yaml: sweep.space.backbone: top_k (layers: 2), which the")
    assert "data.modalities.text.encoder.cache_top_layers is 1" in message

    no_cache = copy.deepcopy(raw)
    del no_cache["data"]["modalities"]["text"]["encoder"]["cache_top_layers"]
    message = _error(no_cache)
    assert "sweep.space.backbone" in message
    assert "set data.modalities.text.encoder.cache_top_layers: 2" in message  # the most needed

    ranged = _cache(copy.deepcopy(raw), 2)
    ranged["sweep"]["space"]["backbone"] = {
        "name": "top_k",
        "layers": {"dist": "int", "low": 1, "high": 3},
    }
    assert "top_k (layers: 3)" in _error(ranged)


def test_a_search_inherits_the_layers_of_a_top_k_model_backbone(
    shipped: dict[str, Any],
) -> None:
    raw = _cache(shipped, 1)
    raw["model"]["backbone"] = {"name": "top_k", "layers": 1}
    raw["sweep"]["space"]["backbone"] = {"name": "top_k", "unfreeze_after": {"choice": [0, 2]}}
    validate_params(raw)  # layers 1 carry over into every sampled backbone
    raw["sweep"]["space"]["backbone"]["layers"] = 2
    assert "sweep.space.backbone: top_k (layers: 2)" in _error(raw)


def test_top_k_with_enough_cached_layers_loads(tmp_path: Path, shipped: dict[str, Any]) -> None:
    raw = _cache(shipped, 2)
    raw["model"]["backbone"] = {"name": "top_k", "layers": 2, "unfreeze_after": 1}
    raw["sweep"]["space"]["backbone"] = TOP_K_CHOICE
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(path)
    assert isinstance(params.model.backbone, TopKConfig) and params.model.backbone.layers == 2
    assert backbone_modalities(params.data, params.model.backbone) == ["text"]


def test_a_token_task_without_a_cache_reads_as_its_own_message(shipped: dict[str, Any]) -> None:
    shipped["tasks"].append({"name": "tags", "type": "token_classification", "column": "tags"})
    assert _error(shipped).startswith("params.yaml: token task 'tags' reads the token states")
