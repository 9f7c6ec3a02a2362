"""`final:` — retraining over seeds, the measured comparison, and the registered model."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from multitune.config._base import StrictModel


class TransferConfig(StrictModel):
    """How task transfer is measured for the report's heatmap.

    `pairwise`: for every ordered pair (A, B), train the best multi-task config on {A, B}
    and on {B} alone (one seed) and report the change in B's validation score. `none`: skip.
    """

    method: Literal["pairwise", "none"] = Field(
        default="pairwise", description="pairwise runs, or none (no heatmap)."
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        description="Epoch cap of each transfer run (null: the final config's own cap). "
        "Transfer runs stop when validation stops improving, as every run does; a low cap "
        "measures step counts, not transfer.",
    )
    max_tasks: int = Field(
        default=6,
        ge=2,
        description="Skip the heatmap when there are more tasks than this (runs grow as n^2).",
    )


class ReferenceConfig(StrictModel):
    """The linear floor: a scikit-learn model per task on the same features, tuned on val.

    Each task gets logistic regression (L2, lbfgs; ridge regression for regression tasks,
    with ``alpha = 1 / C``) fitted on its labelled train rows for every setting of the grid
    ``c x class_weight``; the setting with the best validation primary metric is kept (ties:
    the smaller C, then no weighting) and only it is scored on test.
    """

    enabled: bool = Field(default=True, description="Fit the reference models.")
    c: list[Annotated[float, Field(gt=0.0)]] = Field(
        default=[0.001, 0.01, 0.1, 1.0, 10.0],
        min_length=1,
        description="Grid of inverse L2 strengths (sklearn's C; ridge uses alpha = 1/C), "
        "each > 0. Without labelled validation rows the middle value is used. Strong "
        "regularization is often best on wide embeddings with few labels, hence 0.001.",
    )
    class_weight: list[Literal["none", "balanced"]] = Field(
        default=["none", "balanced"],
        min_length=1,
        description="Grid of class weightings of the logistic models: none, or balanced "
        "(inverse class frequency, which favours macro-F1). Not used by ridge.",
    )
    tolerance: float = Field(
        default=0.01,
        ge=0.0,
        description="How far a network may trail the reference, in the metric's own units, "
        "before its task's verdict is 'not trustworthy' (the whole single - linear interval "
        "must lie beyond it). 0: any significant gap.",
    )
    max_iter: int = Field(
        default=300,
        ge=10,
        description="lbfgs iterations per fit; each fit warm-starts from the next smaller C "
        "(measured on 12k rows x 512 dims: every fit converged in under 50).",
    )


class SelectionConfig(StrictModel):
    """How the final stage chooses configs for small tasks: cross-validation, not one split.

    A task with fewer labelled validation rows than `max_val_rows` is *small*: a validation
    split that size cannot rank close configs. For each small task the single-task side is
    chosen among the baselines' best `finalists` configs and the linear reference by their
    mean held-out primary metric over `folds` group-aware, stratified folds of train+val (each
    fold trains on the rest, stopping early on the next fold, as the pipeline trains on train
    and stops on val). When some task is small, the multi-task config is chosen the same way
    among the sweep's best `finalists`, on mean held-out Δm. Other tasks choose on
    validation, the linear reference included.
    """

    enabled: bool = Field(
        default=True,
        description="Re-score small tasks' finalists by cross-validation (false: choose on "
        "the validation split alone).",
    )
    max_val_rows: int = Field(
        default=1000,
        ge=0,
        description="A task with fewer labelled val rows than this is small (0: none is).",
    )
    finalists: int = Field(
        default=3,
        ge=1,
        le=5,
        description="Best configs of each search re-scored (the stages save the best 5).",
    )
    folds: int = Field(
        default=5,
        ge=3,
        le=20,
        description="Cross-validation folds over train+val (each run trains on folds - 2, "
        "stops early on one and is scored on one).",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the fold assignment.")


class CrossfitConfig(StrictModel):
    """The verdict about the method: repeated K-fold cross-fitting over the whole table.

    `repeats` times, the table's units are dealt into `folds` folds stratified over every
    task; in each fold both sides train on the other folds (their inner validation carved from
    those rows by the split's rule) and predict the held-out fold, so every labelled row is
    scored once per repeat by models that never saw it. The per-fold differences give a
    corrected resampled t interval (Nadeau & Bengio 2003), family-wise over the tasks, and one
    of improves / hurts / equivalent (within `margin`) / inconclusive. The cost is
    ``folds x repeats`` x (the single-task networks + one multi-task run).
    """

    enabled: bool = Field(
        default=True,
        description="Cross-fit the comparison (false: only the test-split bootstrap, which "
        "describes the trained models, not the method).",
    )
    folds: int = Field(
        default=5,
        ge=2,
        le=20,
        description="Folds per repeat (>= 2; at most the units, groups or duplicate sets, "
        "each task's labelled rows form).",
    )
    repeats: int = Field(
        default=2,
        ge=1,
        le=20,
        description="Repeats of the fold assignment, each seeded apart (>= 1): the interval "
        "has folds x repeats - 1 degrees of freedom.",
    )
    margin: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="The practical margin, declared before the run: 'equivalent' when the 90% "
        "interval of the difference lies inside +-margin. In the metric's units for scores "
        "(AUROC, F1, accuracy, R2), relative to the single-task value for errors (mae, rmse, "
        "kl); 100 x margin percent for the overall delta-m. 0: never 'equivalent'.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the fold assignment.")


class GroupingConfig(StrictModel):
    """Which tasks to train together: measured affinity proposes groupings, retraining
    chooses one.

    `tag`: one run of the best multi-task config measures how a step on each task moves every
    other task's loss (TAG's lookahead, Fifty et al. 2021); the `candidates` best partitions
    by that affinity, with all-in-one and each-alone, are trained with the final protocol and
    the grouping to ship is chosen on validation. `none`: ship the all-in-one model.
    """

    method: Literal["tag", "none"] = Field(
        default="tag", description="tag (lookahead affinity + verified candidates), or none."
    )
    candidates: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Partitions proposed by affinity (besides all-in-one and each-alone), each "
        "trained over the final seeds: the cost is their multi-task groups x seeds runs.",
    )
    every: int = Field(
        default=5,
        ge=1,
        description="Measure the lookahead every this many optimizer steps of the affinity run.",
    )
    lookahead_lr: float = Field(
        default=0.1,
        gt=0.0,
        description="Step size of the lookahead's SGD step on the shared parameters. An SGD "
        "step, not the run's Adam rate: Adam's 1e-3 moves SGD by too little to read.",
    )
    together: list[list[str]] = Field(
        default=[],
        description="Tasks that must share a network, e.g. [[speaker, party]].",
    )
    apart: list[list[str]] = Field(
        default=[],
        description="Pairs of tasks that must not share a network, e.g. [[subjective, party]].",
    )
    max_exhaustive: int = Field(
        default=8,
        ge=2,
        le=10,
        description="Up to this many tasks every partition is scored (8 tasks: 4,140); beyond, "
        "groups are merged greedily by affinity.",
    )

    @field_validator("together", "apart", mode="before")
    @classmethod
    def _groups_of_tasks(cls, value: Any, info: ValidationInfo) -> Any:
        # A flat list ([speaker, party]) is the likely slip: say how to nest it, in one line.
        if isinstance(value, str):
            tasks = [t.strip() for t in value.split(",") if t.strip()]
            shown = repr(value)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            tasks, shown = value, _flow(value)
        else:
            return value
        what = "groups" if info.field_name == "together" else "pairs"
        raise ValueError(
            f"expected a list of {what} of tasks, each in brackets: write [{_flow(tasks)}] "
            f"(got {shown})"
        )

    def check_tasks(self, names: list[str]) -> None:
        """`together` and `apart` name known tasks; `apart` holds pairs; no pair is both apart
        and joined by `together` (directly or through groups sharing a task); `apart` is not
        set with method none, which ships all tasks in one network.

        Raises:
            ValueError: one line naming the key and the fix.
        """
        for key in ("together", "apart"):
            for members in getattr(self, key):
                unknown = [m for m in members if m not in names]
                if unknown:
                    close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.5)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    raise ValueError(
                        f"final.grouping.{key}: '{unknown[0]}' is not a task; {hint}"
                        f"tasks are: {', '.join(names)}"
                    )
                if len(set(members)) < 2 or (key == "apart" and len(members) != 2):
                    want = "two different tasks" if key == "apart" else "two or more tasks"
                    raise ValueError(
                        f"final.grouping.{key}: {_flow(members)} must list {want}, "
                        f"e.g. [{', '.join(names[:2])}]"
                    )
        root = {t: t for t in names}

        def find(task: str) -> str:
            while root[task] != task:
                task = root[task]
            return task

        for group in self.together:
            for member in group[1:]:
                root[find(member)] = find(group[0])
        for a, b in self.apart:
            if find(a) != find(b):
                continue
            direct = [g for g in self.together if a in g and b in g]
            via = direct or [g for g in self.together if find(g[0]) == find(a)]
            how = "also in" if direct else "joined through"
            raise ValueError(
                f"final.grouping.apart: {_flow([a, b])} is {how} final.grouping.together "
                f"({', '.join(_flow(g) for g in via)}); drop it from one of them"
            )
        if self.method == "none" and self.apart:
            raise ValueError(
                f"final.grouping.apart: method none ships one network for all tasks, which "
                f"puts {_flow(self.apart[0])} together; set final.grouping.method: tag, or "
                "drop apart"
            )


def _flow(members: list[str]) -> str:
    """A list of tasks as YAML's flow style writes it: [a, b]."""
    return f"[{', '.join(members)}]"


class FinalConfig(StrictModel):
    """The final stage: retrain the best configs over seeds, compare, register."""

    KEY_HINTS: ClassVar[dict[str, str]] = {
        "folds": "it is final.crossfit.folds (the verdict about the method) or "
        "final.selection.folds (cross-validation of small tasks)",
        "repeats": "it is final.crossfit.repeats",
        "margin": "it is final.crossfit.margin",
        "cross_fit": "it is final.crossfit (enabled, folds, repeats, margin, seed)",
        "cv": "cross-validation of small tasks is final.selection (enabled, max_val_rows, "
        "finalists, folds, seed)",
        "cross_validation": "cross-validation of small tasks is final.selection (enabled, "
        "max_val_rows, finalists, folds, seed)",
        "together": "it is final.grouping.together",
        "apart": "it is final.grouping.apart",
        "groups": "which tasks train together is final.grouping (method, together, apart, ...)",
    }

    seeds: int = Field(
        default=3, ge=1, le=50, description="Seeds per config (multi-task and each baseline)."
    )
    seed_base: int = Field(default=1000, description="Seeds used are seed_base + 0..seeds-1.")
    bootstrap_samples: int = Field(
        default=1000, ge=100, le=100_000, description="Bootstrap resamples for the intervals."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Two-sided level of the intervals."
    )
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    grouping: GroupingConfig = Field(default_factory=GroupingConfig)
    crossfit: CrossfitConfig = Field(default_factory=CrossfitConfig)
    top_trials: int = Field(default=10, ge=1, description="Sweep trials shown in the report.")
    importance: Literal["fanova", "mean_decrease_impurity", "ped_anova"] = Field(
        default="fanova", description="Optuna importance evaluator over the sweep's trials."
    )
    threads: int | None = Field(
        default=1,
        ge=1,
        description="PyTorch intra-op threads while the final runs train (null: PyTorch's "
        "default, one per core). The networks are small: one thread is about as fast on an "
        "idle machine and many times faster on a busy one, where threads oversubscribe.",
    )
    backend: Literal["auto", "processes", "ray"] = Field(
        default="auto",
        description="Where the final stage's trainings run. ray: Ray tasks with the searches' "
        "per-trial resources (baselines.resources for one-task runs, sweep.resources "
        "otherwise, GPU fractions included) on sweep.ray_address / RAY_ADDRESS, else a local "
        "Ray; processes: a local process pool (`workers` at a time); auto: ray, measured the "
        "faster on 2 CPU cores too (benchmarks/final.py: 0.44x the pool's time).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Training runs at once, each in its own process with `threads` threads "
        "(null: one per CPU core divided by threads).",
    )
    register_model: bool = Field(
        default=True, description="Log the multi-task model and register it (alias gating)."
    )
