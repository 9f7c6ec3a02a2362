"""Controls of the verdict: the final stage's own training, linear reference, bootstrap and
verdict rules on planted tables.

* Null: two unrelated modalities, a large task on one and a small learnable task on the other.
  Nothing can transfer, so the small task's verdict must never be "improves", and its
  single-task network must reach the tuned linear reference.
* Transfer: one modality whose hidden direction drives both tasks; the large task teaches the
  shared trunk what the small task (few labels) needs. The verdict must be "improves".
"""

from __future__ import annotations

import numpy as np
import pytest

from multitune.config import Params, validate_params
from multitune.config.final import ReferenceConfig
from multitune.final.reference import fit_reference
from multitune.final.runs import RunJob, fit
from multitune.final.scoring import SeedRun, SplitTargets, task_rows
from multitune.final.stage import delta_m_percent
from multitune.models.heads import TaskSpec
from multitune.report import compare
from multitune.report.verdicts import task_verdicts
from multitune.training import TrainingData

DATA_SEEDS = (0, 1, 2)
SEEDS = (0, 1, 2)
N_TRAIN, N_VAL, N_TEST = 1500, 300, 600
SMALL_LABELS = 100  # train rows labelled for the small task
DIM = 16


def _params(modalities: list[str]) -> Params:
    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {
                    m: {"column": m, "encoder": {"name": "precomputed"}} for m in modalities
                },
            },
            "tasks": [
                {"name": "big", "type": "classification", "column": "big"},
                {"name": "small", "type": "binary", "column": "small"},
            ],
            "model": {"encoder": {"hidden": 16, "dropout": 0.0}, "sharing": {"hidden": [16]}},
            "train": {
                "epochs": 400,
                "epoch_steps": 20,
                "patience": 10,
                "batch_size": 32,
                "lr": 3e-3,
                "device": "cpu",
                "sampling": {"name": "uniform"},
            },
        }
    )


def _table(seed: int, *, transfer: bool) -> tuple[TrainingData, Params]:
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL + N_TEST
    a = rng.normal(size=(n, DIM)).astype(np.float32)
    b = rng.normal(size=(n, DIM)).astype(np.float32)
    u = a @ rng.normal(size=DIM)  # the large task's direction, on modality a
    u /= u.std()
    big = np.array(["lo", "mid", "hi"], dtype=object)[
        np.digitize(u + 0.2 * rng.normal(size=n), [-0.5, 0.5])
    ]
    if transfer:  # the small task reads the same direction: what `big` teaches, it needs
        signal, features = u, {"a": a}
    else:  # the small task reads modality b only, in a direction `big` never sees
        v = b @ rng.normal(size=DIM)
        signal, features = v / v.std(), {"a": a, "b": b}
    small = np.where(signal + 0.3 * rng.normal(size=n) > 0.0, "yes", "no").astype(object)
    split = np.array(["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * N_TEST, dtype=object)
    small[np.flatnonzero(split == "train")[SMALL_LABELS:]] = None
    params = _params(list(features))
    specs = [TaskSpec(t, None) for t in params.tasks]
    data = TrainingData.from_arrays(features, specs, {"big": big, "small": small}, split)
    return data, params


def _linear(params: Params) -> Params:
    """The linear option of the baseline search: a linear projection, no trunk layer."""
    model = params.model.model_copy(
        update={
            "encoder": params.model.encoder.model_copy(update={"layers": 0}),
            "sharing": params.model.sharing.model_copy(update={"hidden": []}),
        }
    )
    return params.model_copy(update={"model": model})


def _runs(params: Params, data: TrainingData, kind: str, tasks: tuple[str, ...] | None) -> list:
    runs = []
    for s in SEEDS:
        fitted = fit(RunJob((kind, s), params, kind, tasks, s), data)
        runs.append(
            SeedRun(
                run_id=f"{kind}-{s}",
                kind=kind,
                seed=s,
                tasks=tasks or ("big", "small"),
                test_pred=fitted.test_pred,
                history=fitted.result.history,
                epochs_run=fitted.result.epochs_run,
                test_metrics=fitted.result.metrics["test"],
                val_metrics=fitted.result.metrics["val"],
                converged=fitted.result.converged,
            )
        )
    return runs


def _verdict(seed: int, *, transfer: bool) -> tuple[str, bool, float, float]:
    data, params = _table(seed, transfer=transfer)
    # The single-task side as the baselines stage searches it: the network or the linear
    # option, whichever scores better on validation (mean over seeds).
    candidates = [_runs(p, data, "single", ("small",)) for p in (params, _linear(params))]
    single = max(candidates, key=lambda rs: np.mean([r.val_metrics["small"]["auroc"] for r in rs]))
    multi = _runs(params, data, "multi", None)
    assert all(r.converged for r in single + multi), "a control run hit its cap"
    reference = fit_reference(data.select(["small"]), ReferenceConfig())
    test = data.splits["test"]
    spec = next(t for t in data.tasks if t.name == "small")
    targets = {
        "small": SplitTargets(
            spec,
            data.targets["small"][test].numpy(),
            data.labelled["small"][test].numpy(),
        )
    }
    rows = task_rows(targets, multi, {"small": single}, reference=reference.test_pred)
    comparison = compare(rows, len(test), delta_m_percent, samples=500, seed=seed)
    row = comparison.rows[0]
    verdict = task_verdicts(comparison)["small"].verdict
    print(
        f"{'transfer' if transfer else 'null'} data seed {seed}: {verdict}; "
        f"{row.metric} single {row.single_mean:.3f} multi {row.multi_mean:.3f} "
        f"linear {row.reference:.3f} CI [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
    )
    return verdict, row.below_floor, row.single_mean, row.reference


@pytest.mark.parametrize("seed", DATA_SEEDS)
def test_null_control_never_improves_and_its_baseline_reaches_the_linear_model(
    seed: int,
) -> None:
    verdict, below_floor, single, reference = _verdict(seed, transfer=False)
    assert verdict != "improves"
    assert not below_floor, (single, reference)


@pytest.mark.parametrize("seed", DATA_SEEDS)
def test_transfer_control_improves(seed: int) -> None:
    verdict, _, single, reference = _verdict(seed, transfer=True)
    assert verdict == "improves", (single, reference)
