"""What the final stage reads from the earlier stages: the best configs and the sweep trials."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from multitune.config import Params, validate_params
from multitune.errors import DataError

logger = logging.getLogger(__name__)


def with_sections(params: Params, sections: dict[str, Any], source: str) -> Params:
    """`params` with its `model` / `train` sections replaced by those in `sections`."""
    raw = params.model_dump(mode="json")
    for key in ("model", "train"):
        if key in sections:
            raw[key] = sections[key]
    return validate_params(raw, source=source)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(f"{path} is missing; run `dvc repro` for the earlier stages first")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping")
    return data


def best_multitask(params: Params, sweep_dir: Path) -> Params:
    """The sweep's best multi-task config: `best.yaml`'s model/train sections over params."""
    path = sweep_dir / "best.yaml"
    return with_sections(params, _read_yaml(path), str(path))


def best_single(params: Params, baselines_dir: Path, task: str) -> Params:
    """The tuned single-task config of `task`: `<task>.yaml`'s model/train sections."""
    path = baselines_dir / f"{task}.yaml"
    return with_sections(params, _read_yaml(path), str(path))


def finalists(params: Params, directory: Path, best: Params) -> list[Params]:
    """A search's saved finalists (`<directory>/<rank>.yaml`, best first); `[best]` when the
    stage saved none (outputs of an older version)."""
    ranked = (
        sorted(directory.glob("*.yaml"), key=lambda p: int(p.stem)) if directory.is_dir() else []
    )
    found = [with_sections(params, _read_yaml(p), str(p)) for p in ranked]
    return found or [best]


def baseline_val(baselines_dir: Path) -> dict[str, dict[str, float]]:
    """Each task's best baseline's validation metrics, as the search recorded them; empty
    when the baselines stage wrote no summary (its configs alone, written by hand)."""
    path = baselines_dir / "baselines.json"
    if not path.exists():
        logger.info("%s is missing: no recorded baseline validation metrics", path)
        return {}
    tasks = json.loads(path.read_text())["tasks"]
    return {task: {k: float(v) for k, v in entry["val"].items()} for task, entry in tasks.items()}


def read_trials(sweep_dir: Path) -> pd.DataFrame | None:
    """The sweep's trials table, or None when the sweep wrote none."""
    path = sweep_dir / "trials.parquet"
    return pd.read_parquet(path) if path.exists() else None
