"""Wall time of a sweep (Ray Tune, trials side by side) against the same configurations
trained one after another in a plain loop without Ray, in one run, and where the sweep's
time goes.

The sweep's time is everything `run_sweep` does (Ray start, the object store, trial actors,
MLflow logging of every epoch, checkpoints, outputs); the loop trains the configs the sweep
sampled, with torch's default thread count (what a user gets without Ray) and with one
thread (what each trial gets). No scheduler and a high patience: both sides train every epoch
of every trial. The breakdown, with c trials side by side:

* training: the one-thread loop's time of the same configs, / c;
* per-trial overhead: a trial's time in its actor (Tune's `time_total_s`: reporting,
  checkpoints, running beside another trial) beyond its one-thread loop time;
* fixed cost: the rest of the sweep's wall time (Ray start and stop, trial actors starting
  and importing, the object store, scheduling gaps, outputs).

With a GPU, also: trials per hour with 4 trials sharing the GPU (0.25 each) against one at a
time. Run: ``python benchmarks/sweep.py`` (``--rows``, ``--epochs``, ``--trials``); the
issue's two sizes: ``--trials 16`` and ``--trials 32``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multitune import tracking
from multitune.config import Params, validate_params
from multitune.data import TaskInfo, features_table, write_parquet, write_tasks
from multitune.io import write_json
from multitune.training import TrainingData, train
from multitune.tuning import run_sweep
from multitune.tuning.trial import TrialSpec, trial_base

TASKS = [
    {"name": "topic", "type": "classification", "column": "topic"},
    {"name": "stance", "type": "classification", "column": "stance"},
    {"name": "flag", "type": "binary", "column": "flag"},
]
DIMS = {"text": 384, "lexical": 128}


def _params(trials: int, epochs: int, gpu: float = 0.0) -> dict[str, Any]:
    return {
        "data": {
            "source": "table.parquet",
            "modalities": {m: {"column": m, "encoder": {"name": "precomputed"}} for m in DIMS},
        },
        "tasks": TASKS,
        "train": {"epochs": epochs, "patience": epochs + 1, "device": "cpu"},
        "sweep": {
            "num_samples": trials,
            "scheduler": {"name": "none"},
            "search": {"seed": 0, "n_startup_trials": 4},
            "resources": {"cpu": 1, "gpu": gpu},
            "space": {
                "fusion": {"choice": ["concat", "gated"]},
                "lr": {"dist": "loguniform", "low": 3e-4, "high": 3e-3},
                "batch_size": {"choice": [128, 256]},
                "trunk": {"choice": [[256], [256, 128]]},
                "weighting": {
                    "name": "static",
                    "weights": {"dist": "loguniform", "low": 0.5, "high": 2.0},
                },
            },
        },
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "bench"},
    }


def _project(root: Path, rows: int, raw: dict[str, Any]) -> Params:
    """Synthetic features whose labels depend on them, data artifacts, baselines."""
    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in range(rows)]
    feats = {m: rng.normal(size=(rows, d)).astype(np.float32) for m, d in DIMS.items()}
    z = feats["text"][:, :4] @ np.array([1.0, -1.0, 0.5, 0.3]) + feats["lexical"][:, 0]
    frame = pd.DataFrame(
        {
            "id": ids,
            "topic": np.array(list("abcdef"))[np.digitize(z, [-1.5, -0.6, 0, 0.6, 1.5])],
            "stance": np.array(["pro", "con", "neutral"])[rng.integers(0, 3, rows)],
            "flag": np.where(feats["text"][:, 5] > 0, "yes", "no"),
        }
    )
    data = root / "data"
    write_parquet(data / "dataset.parquet", frame)
    split = np.array(["train", "val", "test"])[np.digitize(rng.random(rows), [0.8, 0.9])]
    write_parquet(data / "splits.parquet", pd.DataFrame({"id": ids, "split": split}))
    params = validate_params(raw)
    infos = [
        TaskInfo(t, sorted(frame[t.column].unique()), rows)  # type: ignore[union-attr]
        for t in params.tasks
    ]
    write_tasks(data / "tasks.json", infos)
    for m, x in feats.items():
        write_parquet(data / "features" / f"{m}.parquet", features_table(ids, x))
    write_json(
        data / "features/meta.json",
        {m: {"encoder": "precomputed", "dim": d} for m, d in DIMS.items()},
    )
    baselines = {
        t["name"]: {"params": f"{t['name']}.yaml", "metric": "accuracy", "val": {"accuracy": 0.5}}
        for t in TASKS
    }
    write_json(root / "results/baselines/baselines.json", {"tasks": baselines})
    tracking.connect(params.mlflow, root)  # the store's schema is created outside the timing
    return params


def _sweep(root: Path, params: Params) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    run_sweep(
        params,
        data_dir=root / "data",
        baselines_dir=root / "results/baselines",
        out_dir=root / "results/sweep",
        project_root=root,
    )
    elapsed = time.perf_counter() - start
    return elapsed, pd.read_parquet(root / "results/sweep/trials.parquet")


def _loop(root: Path, params: Params, trials: pd.DataFrame, threads: int) -> list[float]:
    """Seconds of each config trained in a plain loop (the first also loads the data)."""
    torch.set_num_threads(threads)
    spec = TrialSpec(
        base=trial_base(params, params.sweep.epochs),
        space=params.sweep.space,
        tasks=[t.name for t in params.tasks],
    )
    times = []
    start = time.perf_counter()
    data = TrainingData.from_files(root / "data", params, "cpu")
    for config in trials["config"]:
        train(spec.params(json.loads(config)), data, device="cpu", seed=params.train.seed)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return times


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=15000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument(
        "--loop-threads",
        default="default,1",
        help="torch threads of the plain loops to time: `default` and/or numbers",
    )
    parser.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the fractional-GPU comparison (benchmarks/gpu.sh); needs CUDA",
    )
    args = parser.parse_args()
    if args.gpu_only:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu-only: no CUDA device")
        with tempfile.TemporaryDirectory(prefix="multitune-bench-") as tmp:
            _gpu(Path(tmp), args)
        return
    default_threads = torch.get_num_threads()
    threads = [default_threads if t == "default" else int(t) for t in args.loop_threads.split(",")]
    threads += [] if 1 in threads else [1]  # the breakdown needs the one-thread loop
    with tempfile.TemporaryDirectory(prefix="multitune-bench-") as tmp:
        root = Path(tmp)
        params = _project(root, args.rows, _params(args.trials, args.epochs))
        sweep_s, trials = _sweep(root, params)
        loops = {n: _loop(root, params, trials, n) for n in threads}
        side = min(args.trials, os.cpu_count() or 1)  # 1 CPU per trial
        in_actor, one_thread = float(trials["time_s"].sum()), sum(loops[1])
        print(f"{args.trials} trials x {args.epochs} epochs, {args.rows} rows, 3 tasks, CPU")
        print(f"  sweep (Ray Tune, 1 CPU per trial, {side} side by side): {sweep_s:7.1f} s")
        print(f"    training (one-thread loop time / {side}):   {one_thread / side:7.1f} s")
        per_trial = (in_actor - one_thread) / args.trials
        print(
            f"    per-trial overhead: {per_trial:5.2f} s a trial "
            f"({per_trial * args.trials / one_thread:+.0%} of its training)"
        )
        print(f"    fixed cost:                               {sweep_s - in_actor / side:7.1f} s")
        for n, seconds in loops.items():
            note = " (torch's default)" if n == default_threads else ""
            print(f"  plain loop, {n} torch thread(s){note}: {sum(seconds):7.1f} s")
        for n, seconds in loops.items():
            ratio = sweep_s / sum(seconds)
            print(f"  ratio sweep / loop ({n} thread(s)): {ratio:.2f}  (aim <= 0.6)")
        best = one_thread / side / sum(loops[default_threads])
        print(f"  bound with no overhead and no fixed cost: {best:.2f} against the default loop")
        if torch.cuda.is_available():
            _gpu(root, args)
        else:
            print("  no GPU: the fractional-GPU comparison is skipped")


def _gpu(root: Path, args: argparse.Namespace) -> None:
    """Trials per hour: 4 trials sharing one GPU against one trial at a time."""
    rates = {}
    for share in (1.0, 0.25):
        raw = _params(args.trials, args.epochs, gpu=share)
        raw["sweep"]["resources"]["cpu"] = 0.5
        raw["mlflow"]["experiment"] = f"bench-gpu-{share}"
        sub = root / f"gpu-{share}"
        params = _project(sub, args.rows, raw)
        elapsed, _ = _sweep(sub, params)
        rates[share] = args.trials / elapsed * 3600
        print(f"  GPU {share:g} per trial: {rates[share]:8.0f} trials/hour")
    print(f"  sharing one GPU (0.25 each) vs one at a time: x{rates[0.25] / rates[1.0]:.2f}")


if __name__ == "__main__":
    main()
