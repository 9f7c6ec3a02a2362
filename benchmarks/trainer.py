"""Rows per second of one training epoch: the multitune trainer vs the pandas-row recipe it
replaces vs a bare loop over preloaded tensors.

Setup (issue 3): 768-d input, trunk 256 -> 128, one 8-class and three 3-class heads, batch 64,
``torch.set_num_threads(2)``, CPU unless ``--device cuda``. Epochs of the three are
interleaved and each figure is the best of ``--repeats`` epochs. Run:
``python benchmarks/trainer.py`` (``--rows``, ``--pandas-rows``, ``--repeats``, ``--device``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from multitune.config import validate_params
from multitune.models.heads import TaskSpec
from multitune.training import EpochReport, TrainingData, train

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def _now() -> float:
    """The chosen clock: wall time, or this process's CPU time (less sensitive to other
    processes on a shared machine; with several threads it also counts their spinning)."""
    return _clock[0]()


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
            # One pass over the rows per epoch, as the other two contenders do (train.epoch_steps
            # defaults to a fixed 100 steps, which would count 20,000 rows for 6,400 trained).
            "train": {
                "epochs": 3,
                "epoch_steps": None,
                "batch_size": BATCH,
                "device": device,
                "patience": 99,
            },
        }
    )


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
    start = _now()
    for xb, yb in batches():  # type: ignore[attr-defined]
        out = net(xb.to(device))
        loss = sum(nn.functional.cross_entropy(out[t], yb[t].to(device)) for t in CLASSES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return _now() - start


def bare_epochs(x: np.ndarray, y: dict[str, np.ndarray], device: str) -> Callable[[], float]:
    """One epoch of a bare loop: preloaded tensors on the device, a shuffled index, slices."""
    torch.manual_seed(0)
    xt = torch.as_tensor(x, device=device)
    yt = {t: torch.as_tensor(v, device=device) for t, v in y.items()}
    net = _Net().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def batches() -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        perm = torch.randperm(len(xt), device=device)
        for s in range(0, len(xt), BATCH):
            idx = perm[s : s + BATCH]
            yield xt[idx], {t: v[idx] for t, v in yt.items()}

    return lambda: len(x) / _epoch(batches, net, opt, device)


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


def pandas_epochs(x: np.ndarray, y: dict[str, np.ndarray], device: str) -> Callable[[], float]:
    """One epoch of the recipe: a Dataset reading one pandas row per item, a DataLoader."""
    torch.manual_seed(0)
    frame = pd.DataFrame({"embedding": list(x), **y})
    loader = torch.utils.data.DataLoader(_PandasRows(frame), batch_size=BATCH, shuffle=True)
    net = _Net().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    return lambda: len(x) / _epoch(lambda: loader, net, opt, device)


def run(
    x: np.ndarray, y: dict[str, np.ndarray], pandas_rows: int, device: str, repeats: int
) -> dict[str, float]:
    """Best rows/s of each contender, their epochs interleaved so that load from other
    processes hits all three alike.

    The trainer runs ``repeats + 1`` epochs; after each, inside its per-epoch callback, one
    bare-loop epoch and one pandas-recipe epoch run. A trainer epoch is timed from the return
    of one callback to the start of the next (the first epoch, which includes setup, is
    not counted).
    """
    params = _params(device)
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"epochs": repeats + 1})}
    )
    specs = [TaskSpec(t, t.classes) for t in params.tasks]
    labels = {t: y[t].astype(str) for t in CLASSES}
    data = TrainingData.from_arrays({"emb": x}, specs, labels, ["train"] * len(x), device=device)
    bare = bare_epochs(x, y, device)
    n = pandas_rows
    recipe = pandas_epochs(x[:n], {t: v[:n] for t, v in y.items()}, device)
    rates: dict[str, list[float]] = {"trainer": [], "bare": [], "pandas": []}
    resumed: list[float] = []

    def between_epochs(report: EpochReport) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        if resumed:
            rates["trainer"].append(len(x) / (_now() - resumed[-1]))
        rates["bare"].append(bare())
        rates["pandas"].append(recipe())
        resumed.append(_now())

    train(params, data, callback=between_epochs)
    return {k: max(v) for k, v in rates.items()}


def main() -> None:
    """Print rows/s of each and the two ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per epoch")
    parser.add_argument("--pandas-rows", type=int, default=5_000, help="rows for the slow recipe")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed; best is kept")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", default="wall", choices=sorted(_CLOCKS))
    args = parser.parse_args()
    _clock[0] = _CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    x, y = _arrays(args.rows)
    best = run(x, y, args.pandas_rows, args.device, args.repeats)
    trainer, pandas_rows, bare = best["trainer"], best["pandas"], best["bare"]
    print(
        f"device {args.device}, {args.threads} threads, {args.clock} clock, batch {BATCH}, "
        f"{DIM}-d, trunk 256->128, best of {args.repeats} interleaved epochs"
    )
    print(f"  trainer        {trainer:10,.0f} rows/s")
    print(f"  pandas recipe  {pandas_rows:10,.0f} rows/s")
    print(f"  bare loop      {bare:10,.0f} rows/s")
    print(f"  trainer / pandas recipe = {trainer / pandas_rows:.2f}x (aim >= 2x)")
    print(f"  trainer / bare loop     = {trainer / bare:.2f}x (aim >= 0.9x)")


if __name__ == "__main__":
    main()
