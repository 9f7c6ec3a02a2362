"""Log the shipped multi-task model as a pyfunc and register it, gated on validation Δm.

The gate (`multitune.tracking.gate.decide`) scores the new model and the alias's holder
against this run's single-task validation metrics; the version carries its absolute
validation metrics and the hash of the rows they were measured on, so a later run can rescore
it. The input example is a few *train* rows: no test row ships with the model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from multitune.config import Params
from multitune.data import read_dataset, read_splits, read_tasks
from multitune.final.paths import FinalPaths
from multitune.final.scoring import SeedRun
from multitune.report import Comparison
from multitune.tracking import data_hash, resumed
from multitune.tracking.pyfunc import build_spec, input_columns, log_pyfunc, stage_artifacts
from multitune.tracking.registry import (
    Evidence,
    Metrics,
    Registration,
    Verdict,
    existing_version,
    fingerprint,
    package_code_hash,
    register,
    unchanged,
)

EXAMPLE_ROWS = 5
EXAMPLE_SPLIT = "train"
EVAL_FILES = ("dataset.parquet", "splits.parquet", "tasks.json")
"""What validation metrics depend on besides the model: the rows, their split and labels, and
the task definitions. Not the features: a registered model carries its own encoders."""
REPORTED_TAGS = (
    "grouping",
    "test_delta_m",
    "delta_m",
    "delta_m_ci",
    "method_delta_m",
    "method_delta_m_ci",
)
"""The stage's tags a registered version carries (the comparison's figures)."""


def raw_example(data_dir: Path, columns: list[str], n: int = EXAMPLE_ROWS) -> pd.DataFrame:
    """A few raw train rows, only the columns the model reads (the input example, from which
    the signature is inferred). Train rows only: no test (or validation) row ships."""
    frame = read_dataset(data_dir / "dataset.parquet", ["id", *columns])
    splits = read_splits(data_dir / "splits.parquet")
    train_ids = set(splits.loc[splits["split"] == EXAMPLE_SPLIT, "id"].astype(str))
    rows = frame[frame["id"].astype(str).isin(train_ids)].head(n)[columns]
    return rows.reset_index(drop=True).apply(_widen)


def eval_data_hash(data_dir: Path) -> str:
    """The hash two versions' validation metrics must share to be compared (`EVAL_FILES`)."""
    return data_hash([data_dir / name for name in EVAL_FILES])


def _widen(column: pd.Series) -> pd.Series:
    """float64 for numbers and vectors: JSON clients send doubles, and the signature inferred
    from the example must accept them (float32 -> float64 is safe, the reverse is refused)."""
    if pd.api.types.is_float_dtype(column):
        return column.astype(np.float64)
    if column.dtype == object and column.map(lambda v: isinstance(v, np.ndarray | list)).all():
        return column.map(lambda v: np.asarray(v, dtype=np.float64))
    return column


def publish(
    params: Params,
    paths: FinalPaths,
    model_dir: Path,
    chosen: SeedRun,
    *,
    baseline_val: Metrics,
    verdict: Verdict,
    phash: str,
    dhash: str,
    tags: Mapping[str, str],
    description: str = "",
) -> Registration:
    """Log (unless this exact params+data+code is registered already) and register.

    The model is logged on the run that trained it (`chosen`), so the registry's version
    links to that run's params, curves and datasets.

    Args:
        params: The validated params (`registry`: name, alias, `allow_hurts`).
        paths: `FinalPaths` (data directory, root).
        model_dir: The shipped run's saved model.
        chosen: The shipped run; its `val_metrics` are what the gate scores.
        baseline_val: This run's single-task validation metrics per task (mean over seeds):
            the baseline both the new model and the alias's holder are scored against.
        verdict: The cross-fitted verdict about the method (the test split's only with
            cross-fitting off); "hurts" keeps the model from the alias unless
            `registry.allow_hurts`.
        phash: Params hash.
        dhash: Data hash (dataset, splits, features): the fingerprint's data part.
        tags: The stage's tags (git commit...) and the comparison's (`delta_m`,
            `delta_m_ci`, `test_delta_m`), which the version carries.
        description: The version's description (`version_description`).

    Returns:
        The registration outcome (`gate`: one line saying why the alias moved or stayed).
    """
    reg = params.registry
    fp = fingerprint(phash, dhash, package_code_hash())
    found = existing_version(reg.model_name, fp)
    if found is not None:
        return unchanged(reg.model_name, reg.alias, found)
    data_dir = paths.data
    spec = build_spec(params, read_tasks(data_dir / "tasks.json"))
    example = raw_example(data_dir, input_columns(spec))
    version_tags = _version_tags(chosen, tags, phash, dhash)
    evidence = Evidence(
        val_metrics=chosen.val_metrics,
        baseline_val=baseline_val,
        eval_data_hash=eval_data_hash(data_dir),
        verdict=verdict,
    )
    with (
        tempfile.TemporaryDirectory(prefix="multitune-model-") as tmp,
        resumed(chosen.run_id),
    ):
        artifacts = stage_artifacts(Path(tmp), model_dir, data_dir / "features", spec)
        info = log_pyfunc(artifacts, example, metadata={"tasks": spec["tasks"]})
    return register(
        info.model_uri,
        reg.model_name,
        reg.alias,
        evidence=evidence,
        fp=fp,
        tags=version_tags,
        allow_hurts=reg.allow_hurts,
        description=description,
    )


def _version_tags(
    chosen: SeedRun, tags: Mapping[str, str], phash: str, dhash: str
) -> dict[str, str | int]:
    """What a registered version carries: where it came from, and the comparison's figures
    and its test metrics, reported with the version and never compared (the gate is
    validation Δm)."""
    version_tags: dict[str, str | int] = {
        "git_commit": tags.get("git_commit", "unknown"),
        "params_hash": phash,
        "data_hash": dhash,
        "run_id": chosen.run_id,
        "seed": chosen.seed,
    }
    for key in REPORTED_TAGS:
        if key in tags:
            version_tags[key] = tags[key]
    for task, metrics in chosen.test_metrics.items():
        for metric, value in metrics.items():
            version_tags[f"test.{task}.{metric}"] = f"{value:.6g}"
    return version_tags


def version_description(
    chosen: SeedRun,
    val_dm: float,
    test_dm: float,
    verdict: str,
    comparison: Comparison,
    dhash: str,
    tags: Mapping[str, str],
    grouping: str = "all in one",
) -> str:
    """What a registry user reads first: which run, how it was chosen, what it was found."""
    ci = f"{comparison.confidence:.0%} CI [{comparison.delta_m_low:+.2f}%, "
    ci += f"{comparison.delta_m_high:+.2f}%]"
    if grouping != "all in one":
        return (
            f"Grouped model over {', '.join(chosen.tasks)}: each task routed to its group's "
            f"network, grouping {grouping} (chosen on validation among the candidates "
            f"affinity proposed; a one-task group is that task's single-task model). Record "
            f"run {chosen.run_id}; val Δm {val_dm:+.2f}% against the single-task sides, test "
            f"Δm {test_dm:+.2f}%. Verdict about the method (cross-fitted where on): {verdict}; "
            f"test-split Δm {comparison.delta_m:+.2f}% ({ci}). Data hash {dhash}, git commit "
            f"{tags.get('git_commit', 'unknown')}. Input: the raw table's columns; output: "
            "every task's prediction."
        )
    return (
        f"Multi-task model over {', '.join(chosen.tasks)}: run {chosen.run_id} (seed "
        f"{chosen.seed}), chosen among the final stage's seeds on validation (val Δm "
        f"{val_dm:+.2f}% against the single-task baselines; test Δm {test_dm:+.2f}%). "
        f"Verdict about the method (cross-fitted where on): {verdict}; test-split Δm "
        f"{comparison.delta_m:+.2f}% ({ci}). Data hash {dhash}, git commit "
        f"{tags.get('git_commit', 'unknown')}. Input: the raw table's columns (see the "
        "signature); output: every task's prediction."
    )
