"""Rows per second of one training epoch: the multitune trainer vs the pandas-row recipe it
replaces vs a bare loop over preloaded tensors.

Setup (issue 3): 768-d input, trunk 256 -> 128, one 8-class and three 3-class heads, batch 64,
``torch.set_num_threads(2)``, CPU unless ``--device cuda``. Each figure is the best of
``--repeats`` epochs. Run: ``python benchmarks/trainer.py`` (``--rows``, ``--device``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from multitune.config import validate_params
from multitune.models.heads import TaskSpec
from multitune.training import EpochReport, TrainingData, train

DIM, BATCH, CLASSES = 768, 64, {"genre": 8, "mode_a": 3, "mode_b": 3, "mode_c": 3}


def _arrays(rows: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, DIM)).astype(np.float32)
    return x, {t: rng.integers(0, c, rows) for t, c in CLASSES.items()}


def _params(device: str):
    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {"emb": {"column": "emb", "encoder": {"name": "precomputed"}}},
            },
            "tasks": [
                {
                    "name": t,
                    "type": "classification",
                    "column": t,
                    "classes": [str(i) for i in range(c)],
                }
                for t, c in CLASSES.items()
            ],
            "model": {"encoder": {"hidden": 256}, "sharing": {"name": "hard", "hidden": [128]}},
            "train": {"epochs": 3, "batch_size": BATCH, "device": device, "patience": 99},
        }
    )


def bench_trainer(x: np.ndarray, y: dict[str, np.ndarray], device: str, repeats: int) -> float:
    """Epoch time measured between per-epoch callbacks (all rows are train rows)."""
    params = _params(device)
    specs = [TaskSpec(t, t.classes) for t in params.tasks]
    labels = {t: y[t].astype(str) for t in CLASSES}
    data = TrainingData.from_arrays({"emb": x}, specs, labels, ["train"] * len(x), device=device)
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"epochs": repeats + 1})}
    )
    stamps: list[float] = []

    def stamp(report: EpochReport) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    train(params, data, callback=stamp)
    return len(x) / min(np.diff(stamps))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(DIM, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, 128), nn.GELU(),
            nn.Dropout(0.1),
        )  # fmt: skip
        self.heads = nn.ModuleDict({t: nn.Linear(128, c) for t, c in CLASSES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {t: h(z) for t, h in self.heads.items()}


def _epoch(
    batches: Callable[[], object], net: _Net, opt: torch.optim.Optimizer, device: str
) -> float:
    start = time.perf_counter()
    for xb, yb in batches():  # type: ignore[attr-defined]
        out = net(xb.to(device))
        loss = sum(nn.functional.cross_entropy(out[t], yb[t].to(device)) for t in CLASSES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_bare(x: np.ndarray, y: dict[str, np.ndarray], device: str, repeats: int) -> float:
    """Preloaded tensors on the device, a shuffled index, slices."""
    torch.manual_seed(0)
    xt = torch.as_tensor(x, device=device)
    yt = {t: torch.as_tensor(v, device=device) for t, v in y.items()}
    net = _Net().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def batches():
        perm = torch.randperm(len(xt), device=device)
        for s in range(0, len(xt), BATCH):
            idx = perm[s : s + BATCH]
            yield xt[idx], {t: v[idx] for t, v in yt.items()}

    return len(x) / min(_epoch(batches, net, opt, device) for _ in range(repeats))


class _PandasRows(torch.utils.data.Dataset):
    """The common recipe: one DataFrame row per item."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        row = self.frame.iloc[i]
        x = torch.tensor(row["embedding"], dtype=torch.float32)
        return x, {t: torch.tensor(row[t], dtype=torch.long) for t in CLASSES}


def bench_pandas(x: np.ndarray, y: dict[str, np.ndarray], device: str, repeats: int) -> float:
    """A Dataset reading one pandas row per item, through a DataLoader."""
    torch.manual_seed(0)
    frame = pd.DataFrame({"embedding": list(x), **y})
    loader = torch.utils.data.DataLoader(_PandasRows(frame), batch_size=BATCH, shuffle=True)
    net = _Net().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    return len(x) / min(_epoch(lambda: loader, net, opt, device) for _ in range(repeats))


def main() -> None:
    """Print rows/s of each and the two ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per epoch")
    parser.add_argument("--pandas-rows", type=int, default=5_000, help="rows for the slow recipe")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed; best is kept")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = _arrays(args.rows)
    bare = bench_bare(x, y, args.device, args.repeats)
    trainer = bench_trainer(x, y, args.device, args.repeats)
    n = args.pandas_rows
    pandas_rows = bench_pandas(x[:n], {t: v[:n] for t, v in y.items()}, args.device, 2)
    print(f"device {args.device}, {args.threads} threads, batch {BATCH}, {DIM}-d, trunk 256->128")
    print(f"  trainer        {trainer:10,.0f} rows/s")
    print(f"  pandas recipe  {pandas_rows:10,.0f} rows/s")
    print(f"  bare loop      {bare:10,.0f} rows/s")
    print(f"  trainer / pandas recipe = {trainer / pandas_rows:.2f}x (aim >= 2x)")
    print(f"  trainer / bare loop     = {trainer / bare:.2f}x (aim >= 0.9x)")


if __name__ == "__main__":
    main()
