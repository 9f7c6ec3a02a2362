"""Training checkpoints: saved with safetensors and JSON; optimizer state with
``torch.save``, read back with ``weights_only=True`` (no pickle of arbitrary objects)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from multitune.io import atomic_path


def cpu_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A detached CPU copy of a state dict (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


@dataclass
class Checkpoint:
    """The trainer's state after an epoch: enough to resume exactly where it stopped.

    `model` is the current weights; `best_model` the best so far (early stopping).
    """

    epoch: int
    model: dict[str, Tensor]
    best_model: dict[str, Tensor]
    balancer: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write the checkpoint to `directory` (atomically)."""
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            save_file(self.model, str(tmp / "model.safetensors"))
            save_file(self.best_model, str(tmp / "best_model.safetensors"))
            save_file(self.balancer, str(tmp / "balancer.safetensors"))
            torch.save(
                {"optimizer": self.optimizer, "scheduler": self.scheduler}, tmp / "optim.pt"
            )
            (tmp / "checkpoint.json").write_text(
                json.dumps({"epoch": self.epoch, "meta": self.meta}, indent=2)
            )
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Checkpoint:
        """Read a checkpoint written by `save`."""
        d = Path(directory)
        info = json.loads((d / "checkpoint.json").read_text())
        optim = torch.load(d / "optim.pt", weights_only=True, map_location="cpu")
        return cls(
            epoch=int(info["epoch"]),
            model=load_file(str(d / "model.safetensors")),
            best_model=load_file(str(d / "best_model.safetensors")),
            balancer=load_file(str(d / "balancer.safetensors")),
            optimizer=optim["optimizer"],
            scheduler=optim["scheduler"],
            meta=info["meta"],
        )
