"""`multitune train --params P --out DIR`: train params.yaml's configuration once."""

from __future__ import annotations

import json
from pathlib import Path

from multitune.config.schema import Params
from multitune.console import console
from multitune.errors import UserError
from multitune.io import atomic_path
from multitune.training.data import TrainingData
from multitune.training.loop import train
from multitune.training.result import EpochReport
from multitune.training.setup import resolve_device


def train_command(params: Params, out: str | Path, data_dir: str | Path = "data") -> Path:
    """Train once on the prepared features; write ``out/metrics.json`` and ``out/model/``.

    ``metrics.json`` is ``{split: {task: {metric: value}}}`` (train, val, test);
    ``group_metrics.json`` holds joint metrics of `task_groups`; ``history.json`` one entry per
    epoch; ``model/`` the best weights (`multitune.training.load_model` reads it).

    Raises:
        UserError: the data directory (features, splits, tasks.json) is missing.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(
            f"{data_dir}/ not found: run `dvc repro embed` first to prepare the dataset, "
            "splits and features"
        )
    device = resolve_device(params.train.device)
    data = TrainingData.from_files(data_dir, params, device)
    console.print(
        f"training {len(data.tasks)} task(s) on {len(data.ids)} rows "
        f"({', '.join(data.modality_dims)}) on {device}"
    )

    def report(r: EpochReport) -> None:
        console.print(
            f"epoch {r.epoch:3d}  objective {r.objective:.4f}{'  *' if r.is_best else ''}"
        )

    result = train(params, data, callback=report, device=device)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        (tmp / "group_metrics.json").write_text(json.dumps(result.group_metrics, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(result.history, indent=2) + "\n")
        result.save(tmp / "model")
    console.print(f"best epoch {result.best_epoch} of {result.epochs_run}; wrote {out}/")
    return out
