"""The final stage's time on each training backend: the local process pool vs a local Ray.

A generated table (``--rows`` rows, two numeric modalities, a 3-class task on every row and
two binary tasks labelled on a fifth of the rows each, in groups of 4) goes through the real
ingest, split and embed code; the search stages' outputs are the params' own config (as the
tests write them). Then `pipeline/final.py` runs twice in fresh processes, once with
``final.backend: processes`` and once with ``final.backend: ray`` (a local Ray started by the
stage, one CPU a training), alone on the machine: every phase that trains (the small tasks'
cross-validation, both sides over seeds, the cross-fit, the grouping candidates). It prints
each backend's wall time, the ratio, and whether the two reports' numbers are equal (they
must be: same seeds, one thread a training).

Run: ``python benchmarks/final.py`` (``--rows 6000``; ``--quick``: 1,500 rows). Run it alone:
beside other work the timings mean nothing (two cores, oversubscribed threads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from multitune.config import validate_params
from multitune.data import read_dataset, read_splits, write_parquet, write_tasks
from multitune.data.ingest import ingest
from multitune.data.split import split_rows
from multitune.embed.stage import embed

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "pipeline" / "final.py"


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.arange(rows) // 4
    a = rng.normal(size=(rows, 16)) + rng.normal(size=(rows // 4 + 1, 16))[group] * 0.5
    b = rng.normal(size=(rows, 8))
    u = a @ rng.normal(size=16)
    u /= u.std()
    frame = pd.DataFrame({f"a{i}": a[:, i] for i in range(16)})
    for i in range(8):
        frame[f"b{i}"] = b[:, i]
    frame["group"] = group.astype(str)
    frame["big"] = np.array(["lo", "mid", "hi"], dtype=object)[
        np.digitize(u + 0.3 * rng.normal(size=rows), [-0.5, 0.5])
    ]
    for name in ("s1", "s2"):
        w = rng.normal(size=8)
        y = (b @ w + 0.5 * u + rng.normal(size=rows) > 0).astype(int).astype(object)
        y[rng.random(rows) > 0.2] = None
        frame[name] = y
    return frame


def _raw(source: Path, backend: str) -> dict[str, Any]:
    return {
        "data": {
            "source": str(source),
            "modalities": {
                "a": {"columns": [f"a{i}" for i in range(16)], "encoder": {"name": "numeric"}},
                "b": {"columns": [f"b{i}" for i in range(8)], "encoder": {"name": "numeric"}},
            },
        },
        "tasks": [
            {"name": "big", "type": "classification", "column": "big"},
            {"name": "s1", "type": "binary", "column": "s1"},
            {"name": "s2", "type": "binary", "column": "s2"},
        ],
        "split": {"seed": 0, "fractions": [0.8, 0.1, 0.1], "group_column": "group"},
        "model": {"encoder": {"hidden": 32, "dropout": 0.0}, "sharing": {"hidden": [32]}},
        "train": {"epochs": 20, "epoch_steps": 20, "batch_size": 64, "patience": 4},
        "final": {
            "seeds": 2,
            "bootstrap_samples": 200,
            "transfer": {"method": "none"},
            "selection": {"folds": 3},
            "crossfit": {"folds": 3, "repeats": 1},
            "backend": backend,
        },
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "bench"},
        "registry": {"model_name": "bench", "allow_hurts": True},
    }


def _project(root: Path, rows: int, backend: str) -> Path:
    root.mkdir(parents=True)
    source = root / "table.parquet"
    _table(rows, 0).to_parquet(source)
    raw = _raw(source, backend)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = validate_params(raw)
    data = root / "data"
    result = ingest(params, root=root)
    write_parquet(data / "dataset.parquet", result.frame)
    write_tasks(data / "tasks.json", result.tasks)
    write_parquet(data / "splits.parquet", split_rows(result.frame, params).frame)
    embed(
        read_dataset(data / "dataset.parquet"),
        read_splits(data / "splits.parquet"),
        params.data,
        data / "features",
    )
    best = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    (root / "results" / "sweep").mkdir(parents=True)
    (root / "results" / "sweep" / "best.yaml").write_text(best)
    (root / "results" / "baselines").mkdir(parents=True)
    for task in params.tasks:
        (root / "results" / "baselines" / f"{task.name}.yaml").write_text(best)
    return root / "params.yaml"


def _numbers(reports: Path) -> dict[str, Any]:
    metrics = json.loads((reports / "metrics.json").read_text())
    metrics.pop("runs")
    metrics["not_converged"] = len(metrics["not_converged"])  # run ids differ between stores
    return metrics


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two metrics.json trees differ (dotted paths)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _time(params: Path) -> float:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--params", str(params)],
        cwd=params.parent,
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the final stage failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--quick", action="store_true", help="1,500 rows")
    args = parser.parse_args()
    rows = 1500 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="multitune-bench-final-") as tmp:
        seconds: dict[str, float] = {}
        numbers: dict[str, dict[str, Any]] = {}
        for backend in ("processes", "ray"):
            params = _project(Path(tmp) / backend, rows, backend)
            seconds[backend] = _time(params)
            numbers[backend] = _numbers(params.parent / "reports")
            print(f"final stage, {backend:9s}: {seconds[backend]:7.1f} s", flush=True)
    ratio = seconds["ray"] / seconds["processes"]
    faster = "processes" if ratio > 1 else "ray"
    differ = _differences(numbers["processes"], numbers["ray"])
    print(
        f"{rows:,} rows, {os.cpu_count()} cores: ray / processes = {ratio:.2f} "
        f"(faster here: {faster}); reports equal: {not differ}"
    )
    for line in differ[:10]:
        print(f"  differs: {line}")


if __name__ == "__main__":
    main()
