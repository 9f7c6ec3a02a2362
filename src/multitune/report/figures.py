"""The report's figures as PNG bytes. Matplotlib's object API (no pyplot): no global state,
no GUI backend."""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from multitune.report.pareto import pareto_mask
from multitune.report.stats import RowResult

_MULTI, _SINGLE, _REF = "#1f77b4", "#ff7f0e", "#555555"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _grid(panels: int, cols: int, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` axes of `size` inches each, `cols` to a row; the grid's unused
    axes are hidden."""
    nrows = -(-panels // cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * nrows))
    axes = list(fig.subplots(nrows, cols, squeeze=False).flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def forest(rows: Sequence[RowResult], confidence: float = 0.95) -> bytes:
    """The verdicts at a glance: per task/group row, multi minus single with its intervals.

    Each delta is sign-corrected (negated for a lower-is-better metric), so right of zero is
    always "multi-task better". The thick bar is the raw interval, the thin line with caps
    the family-wise adjusted one that the verdict is read off.

    Args:
        rows: The family's rows (one per task and group), top to bottom.
        confidence: The level of the intervals, for the legend.
    """
    pct = f"{round(confidence * 100):d}%"
    fig = Figure(figsize=(6.4, 0.55 * len(rows) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    shown: set[str] = set()

    def once(label: str) -> str:
        # One legend entry per kind of mark, whichever row draws it first.
        if label in shown:
            return "_nolegend_"
        shown.add(label)
        return label

    for yj, r in zip(y, rows, strict=True):
        sign = 1.0 if r.higher_is_better else -1.0
        adj = sorted((sign * r.adj_low, sign * r.adj_high))
        raw = sorted((sign * r.ci_low, sign * r.ci_high))
        if np.isfinite(adj).all():
            ax.errorbar(
                (adj[0] + adj[1]) / 2,
                yj,
                xerr=(adj[1] - adj[0]) / 2,
                fmt="none",
                ecolor=_REF,
                elinewidth=1.2,
                capsize=4,
                label=once(f"family-wise {pct} interval (verdict)"),
            )
        if np.isfinite(raw).all():
            ax.hlines(
                yj,
                raw[0],
                raw[1],
                color=_MULTI,
                linewidth=7,
                alpha=0.45,
                label=once(f"raw {pct} interval"),
            )
        ax.plot(sign * r.delta, yj, "D", color="black", ms=5, label=once("delta (full split)"))
    ax.axvline(0.0, color="#aa0000", linewidth=1, linestyle="--")
    labels = [
        f"{r.name}{' (group)' if r.kind == 'group' else ''}"
        f"{'' if r.single_kind == 'network' else f' vs {r.single_kind}'}\n{r.metric}"
        f"{'' if r.higher_is_better else ' (lower better, negated)'}"
        for r in rows
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.set_xlabel("multi - single, sign-corrected (right of 0: multi-task better)")
    ax.text(0.99, 1.01, "multi-task better →", transform=ax.transAxes, ha="right", fontsize=8)
    ax.text(0.01, 1.01, "← single-task better", transform=ax.transAxes, ha="left", fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def bars(rows: Sequence[RowResult], reference: Mapping[str, Mapping[str, float]]) -> bytes:
    """Single vs multi per row (mean, error bar = std over seeds), reference as a marker."""
    labels = [f"{r.name}\n{r.metric}" for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(5.0, 1.3 * len(rows) + 1), 3.6))
    ax = fig.subplots()
    w = 0.38
    ax.bar(
        x - w / 2,
        [r.single_mean for r in rows],
        w,
        yerr=[r.single_std for r in rows],
        capsize=3,
        color=_SINGLE,
        label="single-task",
    )
    ax.bar(
        x + w / 2,
        [r.multi_mean for r in rows],
        w,
        yerr=[r.multi_std for r in rows],
        capsize=3,
        color=_MULTI,
        label="multi-task",
    )
    ref = [reference.get(r.name, {}).get(r.metric, np.nan) for r in rows]
    if np.isfinite(ref).any():
        ax.scatter(x, ref, marker="_", s=400, color=_REF, zorder=3, label="logistic regression")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("test score (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def curves(frame: pd.DataFrame) -> bytes:
    """Validation curves per task: one line per final run (multi solid, single dashed).

    Args:
        frame: Long table with columns task, metric, kind ("multi"/"single"), seed, epoch,
            value.
    """
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = _grid(len(tasks), min(3, max(1, len(tasks))), (4.2, 3.0))
    for ax, task in zip(axes, tasks, strict=True):
        part = frame[frame["task"] == task]
        metric = str(part["metric"].iloc[0])
        for (kind, seed), run in part.groupby(["kind", "seed"], sort=True):
            ax.plot(
                run["epoch"],
                run["value"],
                color=_MULTI if kind == "multi" else _SINGLE,
                linestyle="-" if kind == "multi" else "--",
                alpha=0.8,
                label=f"{kind} (seeds)" if seed == part[part.kind == kind]["seed"].min() else None,
            )
        ax.set_title(f"{task}: val {metric}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def importance_bars(values: Mapping[str, float], evaluator: str) -> bytes:
    """Horizontal bars of hyperparameter importance, most important on top."""
    names = list(values)[::-1]
    fig = Figure(figsize=(6, 0.35 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(names, [values[n] for n in names], color=_MULTI)
    ax.set_xlabel(f"importance ({evaluator})")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def pareto(points: pd.DataFrame, max_pairs: int = 6) -> bytes:
    """Trials scattered per pair of tasks (val scores), the Pareto front of each pair joined.

    Args:
        points: One column per task (higher is better), one row per trial.
        max_pairs: At most this many task pairs are drawn.
    """
    pairs = list(itertools.combinations(points.columns, 2))[:max_pairs]
    fig, axes = _grid(len(pairs), min(3, len(pairs)), (3.8, 3.4))
    for ax, (a, b) in zip(axes, pairs, strict=True):
        xy = points[[a, b]].to_numpy(dtype=float)
        front = pareto_mask(xy)
        ax.scatter(xy[~front, 0], xy[~front, 1], s=14, color="#999999", label="trial")
        order = np.argsort(xy[front, 0])
        ax.plot(
            xy[front, 0][order],
            xy[front, 1][order],
            "o-",
            color=_MULTI,
            ms=4,
            label="Pareto front",
        )
        ax.set_xlabel(f"{a} (val)", fontsize=8)
        ax.set_ylabel(f"{b} (val)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def heatmap(matrix: pd.DataFrame, title: str) -> bytes:
    """A diverging heatmap (source task rows x target task columns), values annotated."""
    values = matrix.to_numpy(dtype=float)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    bound = bound or 1.0
    n = len(matrix.columns)
    fig = Figure(figsize=(1.1 * n + 2.4, 0.9 * len(matrix) + 1.6))
    ax = fig.subplots()
    im = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(n), list(matrix.columns), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(matrix)), list(matrix.index), fontsize=8)
    ax.set_xlabel("task B (scored)")
    ax.set_ylabel("task A (trained with B)")
    for i, j in itertools.product(range(len(matrix)), range(n)):
        if np.isfinite(values[i, j]):
            ax.text(j, i, f"{values[i, j]:+.3f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=9)
    return _png(fig)
