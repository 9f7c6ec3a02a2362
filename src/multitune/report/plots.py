"""Per-epoch validation curves as CSV for `dvc plots` (one file per task: epoch, multi, single).

`dvc plots show` renders them offline through the vendored template in
`.dvc/plots/offline.html` (vega, vega-lite and vega-embed inlined; set as
`plots.html_template` in `.dvc/config`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from multitune.io import atomic_path

DVC_TEMPLATE = Path(".dvc/plots/offline.html")


def curves_wide(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Task -> table with columns epoch, multi, single: the val score averaged over seeds.

    Args:
        curves: Long table with columns task, metric, kind, seed, epoch, value.
    """
    out: dict[str, pd.DataFrame] = {}
    for task, part in curves.groupby("task", sort=False):
        mean = part.groupby(["epoch", "kind"])["value"].mean().unstack("kind")
        table = pd.DataFrame({"epoch": mean.index.astype(int)})
        for kind in ("multi", "single"):
            table[kind] = mean[kind].to_numpy() if kind in mean else float("nan")
        out[str(task)] = table.reset_index(drop=True)
    return out


def write_curves(curves: pd.DataFrame, directory: Path) -> Path:
    """Write `<directory>/<task>.csv` for every task, atomically (the whole directory)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for task, table in curves_wide(curves).items():
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task)
            table.to_csv(tmp / f"{safe}.csv", index=False, float_format="%.6g")
    return directory
