"""The report's view of the sweep's trials table (the columns the sweep stage writes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from multitune.config import load_params
from multitune.config.final import FinalConfig
from multitune.config.space import with_batch_sizes
from multitune.final.sweep_view import param_columns, sweep_view
from multitune.report import ReportInputs, Scored, compare, render
from multitune.tuning.outputs import trials_frame
from multitune.tuning.runner import TrialRecord
from multitune.tuning.space import suggest
from multitune.tuning.trial import WEIGHTED_TASK_TYPES

EXAMPLE = Path(__file__).parents[2] / "params.yaml"


def _trials(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-4, -2, n)
    a = 0.9 - (np.log10(lr) + 3) ** 2 * 0.1 + rng.normal(0, 0.005, n)
    b = 0.5 + rng.uniform(0, 0.1, n)
    return pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(n)],
            "status": ["completed"] * (n - 1) + ["failed"],
            "config": ["{}"] * n,
            "config/lr": lr,
            "config/fusion": rng.choice(["concat", "gated"], n),
            "val/a/auroc": a,
            "val/b/r2": b,
            "val/b/rmse": 1 - b,
            "delta_m": a - 0.8,
            "objective": np.r_[a[:-1] - 0.8, np.nan],
        }
    )


def _example_trials(
    n: int = 16, edit: Callable[[dict[str, Any]], None] = lambda config: None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A trials table as the sweep stage writes it for the bundled example: the example's
    space (every knob, class weighting per task) sampled by Optuna, written by the sweep's
    own writer; every 5th trial stopped by the scheduler. Also the tasks' types."""
    params = load_params(EXAMPLE)
    tasks = [t.name for t in params.tasks]
    weighted = [t.name for t in params.tasks if t.type in WEIGHTED_TASK_TYPES]
    space = with_batch_sizes(params.sweep.space, 12_000).per_task_class_weighting(weighted)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        trial = study.ask()
        suggest(space, trial, tasks)
        config = dict(trial.params)
        edit(config)
        dm = float(rng.normal(-0.05, 0.05))
        val = {f"val/{t}/accuracy": float(rng.uniform(0.5, 0.9)) for t in tasks}
        status = "stopped" if i % 5 == 4 else "completed"
        result = {"delta_m": dm, "objective": dm, **val}
        records.append(TrialRecord(f"t{i:02d}", status, config, result))
    return trials_frame(records, {}), {t.name: t.type for t in params.tasks}


def test_sweep_view_reads_the_sweep_stage_columns():
    trials = _trials()
    view = sweep_view(trials, ["a", "b"], {"a": "binary", "b": "regression"}, FinalConfig())
    assert param_columns(trials) == ["config/lr", "config/fusion"]
    assert view.top is not None and len(view.top) == 10
    best = trials.loc[trials["objective"].idxmax()]
    assert view.top.iloc[0].tolist()[:2] == [best["trial_id"], f"{100 * best['delta_m']:+.2f}%"]
    assert next(iter(view.importance)) == "config/lr"
    assert view.pareto is not None and list(view.pareto.columns) == ["a", "b"]
    assert view.pareto["b"].tolist() == trials["val/b/r2"].tolist()  # the primary metric


def test_no_trials_no_sweep_sections():
    view = sweep_view(None, ["a"], {"a": "binary"}, FinalConfig())
    assert view.top is None and view.importance == {} and view.pareto is None


def test_the_example_sweep_table_fits_ten_columns_with_methods_and_their_options():
    trials, types = _example_trials()
    assert len(trials.columns) > 40  # what the table replaces: a column per sampled value
    view = sweep_view(trials, list(types), types, FinalConfig())
    top = view.top
    assert top is not None and len(top) == 10 and len(top.columns) <= 10
    # The 10 best by validation Δm, best first; a trial the scheduler stopped says so.
    best = trials.sort_values("objective", ascending=False).head(10)
    stopped = best["status"] == "stopped"
    ids = [f"{t} (stopped)" if s else t for t, s in zip(best["trial_id"], stopped, strict=True)]
    assert top["trial"].tolist() == ids and stopped.any()
    assert top["Δm (val)"].tolist() == [f"{100 * v:+.2f}%" for v in best["delta_m"]]
    # One column per knob, never per sampled value (no `weighting.static.weights.party`).
    assert not [c for c in top.columns if "." in c or "/" in c]
    # A method and its options in one cell, wherever the knob is shown.
    cells = {k: v for row in top.to_dict("records") for k, v in _knob_cells(row).items()}
    weighting = [v for k, v in cells.items() if k.startswith("weighting@")]
    assert weighting and all(
        re.fullmatch(r"uncertainty|dwa\(T=\d\.\d{1,2}\)|static\(w: (\w+=[\d.]+(, )?){5}\)", v)
        for v in weighting
    ), weighting
    sharing = {v for k, v in cells.items() if k.startswith("sharing@")}
    assert sharing and sharing <= {"hard", "mmoe(experts=2)", "mmoe(experts=4)"}
    freezing = {v for k, v in cells.items() if k.startswith("freezing@")}
    assert "warm_start(unfreeze_after=null)" in freezing  # sampled null, not "not applied"
    # Small numbers in the 1e-4 style, others to 3 significant digits.
    assert all(re.fullmatch(r"\d(\.\d{1,2})?e-\d", v) for v in _knob("lr", top))
    assert all(re.fullmatch(r"0\.\d{1,3}|0\.0+\d{1,3}|0", v) for v in _knob("dropout", top))
    assert "balanced" in " ".join(_knob("class_weighting", top))  # five tasks, one cell


def test_a_knob_alike_in_every_trial_shown_is_named_once_not_a_column():
    def one_trunk(config: dict[str, Any]) -> None:
        config["trunk"] = "[256]"

    trials, types = _example_trials(edit=one_trunk)
    view = sweep_view(trials, list(types), types, FinalConfig())
    assert view.top is not None
    assert "trunk" not in view.top.columns and "trunk=" not in " ".join(
        _knob("other knobs", view.top)
    )
    assert "The same in every trial shown: trunk [256]." in view.top_note
    assert "trials.parquet" in view.top_note


def test_the_markdown_and_html_reports_show_the_short_table(tmp_path: Path):
    trials, types = _example_trials()
    view = sweep_view(trials, list(types), types, FinalConfig())
    fns = [lambda idx: 0.5] * 2
    inputs = ReportInputs(
        comparison=compare(
            [Scored("t", "accuracy", True, fns, fns)], 20, lambda m, s: 0.0, samples=20
        ),
        reference={},
        runs=[],
        curves=pd.DataFrame(columns=["task", "metric", "kind", "seed", "epoch", "value"]),
        top_trials=view.top,
        top_trials_note=view.top_note,
    )
    paths = render(inputs, tmp_path)
    md = paths["markdown"].read_text().split("## Sweep: top 10 trials\n\n", 1)[1]
    note, table = md.split("\n\n")[:2]
    assert note == view.top_note
    header = table.splitlines()[0]
    assert header.startswith("| trial | Δm (val) |") and header.count(" | ") + 1 <= 10
    assert len(table.splitlines()) == 12  # header, rule, 10 trials
    page = paths["html"].read_text().split("<h2>Sweep: top 10 trials</h2>", 1)[1]
    html_table = page[page.index("<table") : page.index("</table>")]
    assert 2 <= html_table.count("<th>") <= 10
    assert html_table.count("<tr") == 11  # header row and 10 trials
    assert "dwa(T=" in html_table or "static(w: " in html_table


def _knob(name: str, top: pd.DataFrame) -> list[str]:
    """The cells of knob `name` in the table: its column, or its part of `other knobs`."""
    if name in top.columns:
        return [str(v) for v in top[name] if v]
    if "other knobs" in top.columns and name != "other knobs":
        found = [re.search(rf"(?:^|; ){name}=(.+?)(?=; \w+=|$)", v) for v in top["other knobs"]]
        return [m.group(1) for m in found if m]
    return [str(v) for v in top.get(name, [])]


def _knob_cells(row: dict[str, str]) -> dict[str, str]:
    """`{knob@trial: cell}` of one row, from its own columns and its `other knobs`."""
    out = {
        f"{k}@{row['trial']}": v
        for k, v in row.items()
        if k not in ("trial", "Δm (val)", "other knobs") and v
    }
    for part in re.split(r"; (?=\w+=)", row.get("other knobs", "")):
        if "=" in part:
            k, v = part.split("=", 1)
            out[f"{k}@{row['trial']}"] = v
    return out
