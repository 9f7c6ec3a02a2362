"""What the final stage's phases share: the stage (`Stage`), the configs chosen (`Chosen`),
where each run's model is kept to publish, and where the trainings run (`training_on`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multitune.config import Params
from multitune.console import console
from multitune.final.grouping import KIND as GROUP_KIND
from multitune.final.paths import FinalPaths
from multitune.final.protocol import (
    delta_m_percent,
)
from multitune.final.reference import ReferenceResult
from multitune.final.resume import Ledger
from multitune.final.runs import Fitted, RunJob, Trainings, fit, training_backend
from multitune.final.selection import Selection
from multitune.report import (
    RunRecord,
)
from multitune.training import TrainingData
from multitune.tuning.remote import ray_trainings, wants_ray


def safe_delta_m(mt: dict[str, dict[str, float]], st: dict[str, dict[str, float]]) -> float:
    """Δm (percent) over the tasks both sides score; NaN when none (e.g. no val labels)."""
    shared = {t: m for t, m in mt.items() if m and st.get(t)}
    try:
        return delta_m_percent(shared, {t: st[t] for t in shared}) if shared else float("nan")
    except ValueError:
        return float("nan")


@dataclass(frozen=True)
class Stage:
    """What every phase reads: the params, data, seeds, the stage's MLflow run, its ledger
    (every run of the stage is logged, or found again, through it) and how its runs train
    (`trainings`: the ledger's record and reuse, the workers)."""

    params: Params
    paths: FinalPaths
    data: TrainingData
    units: np.ndarray
    seeds: list[int]
    tags: dict[str, str]
    dhash: str
    run: Any
    tmp: Path
    ledger: Ledger
    trainings: Trainings

    @property
    def names(self) -> list[str]:
        return self.data.task_names

    @property
    def types(self) -> dict[str, str]:
        return self.data.task_types

    def model_dir(self, kind: str, tasks: tuple[str, ...] | None, seed: int) -> Path:
        """Where a run's model is saved (`saved_model`)."""
        return model_dir(self.tmp, kind, tasks, seed)


SAVED = ("multi", "single", GROUP_KIND)


def model_dir(tmp: Path, kind: str, tasks: tuple[str, ...] | None, seed: int) -> Path:
    return tmp / "models" / f"{kind}-{'+'.join(tasks or ('all',))}-s{seed}"


def saved_model(tmp: Path) -> Callable[[RunJob], Path | None]:
    """Where each job's model is kept, to publish: the shipped grouping may route a task to
    any multi-task, group or single-task network."""
    return lambda job: model_dir(tmp, job.kind, job.tasks, job.seed) if job.kind in SAVED else None


@dataclass(frozen=True)
class Chosen:
    """Phase `choose`: the linear reference and each side's config."""

    reference: ReferenceResult | None
    reference_runs: list[RunRecord]
    selection: Selection


@contextlib.contextmanager
def training_on(params: Params, data: TrainingData) -> Iterator[None]:
    """Every training of the stage on Ray (`multitune.tuning.remote`) when `final.backend`
    says so, else in the local process pool."""
    if not wants_ray(params.final.backend, params):
        yield
        return

    def one_task(job: RunJob) -> bool:
        return job.tasks is not None and len(job.tasks) == 1

    def with_node(fitted: Fitted, node: str) -> Fitted:
        return dataclasses.replace(fitted, node=node)

    with (
        ray_trainings(params, data, fit, one_task, with_node) as trainings,
        training_backend(trainings),
    ):
        console.print(
            f"final: trainings run on Ray ({params.final.backend})", markup=False, soft_wrap=True
        )
        yield
