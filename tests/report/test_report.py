"""The comparison statistics and the rendered report (pure: no MLflow, no training)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multitune.report import (
    ReportInputs,
    RunRecord,
    Scored,
    compare,
    importance,
    metrics_json,
    pareto_mask,
    render,
    study_from_trials,
    summary_text,
    verdict,
    write_curves,
)


def _mean_dm(
    mt: Mapping[str, Mapping[str, float]], st: Mapping[str, Mapping[str, float]]
) -> float:
    rel = [(mt[t][m] - st[t][m]) / st[t][m] for t in mt for m in mt[t]]
    return 100.0 * float(np.mean(rel))


def _accuracy_fns(correct: np.ndarray) -> list:
    """One score fn per seed: accuracy of a (seeds, n) matrix of 0/1 correctness."""
    return [lambda idx, c=row: float(c[idx].mean()) for row in correct]


def _rows(n: int, p_multi: float, p_single: float, seed: int = 0) -> Scored:
    rng = np.random.default_rng(seed)
    multi = (rng.random((3, n)) < p_multi).astype(float)
    single = (rng.random((3, n)) < p_single).astype(float)
    return Scored("t", "accuracy", True, _accuracy_fns(multi), _accuracy_fns(single))


@pytest.mark.parametrize(
    ("low", "high", "hib", "expected"),
    [
        (0.01, 0.2, True, "improves"),
        (-0.2, -0.01, True, "hurts"),
        (-0.1, 0.1, True, "no clear difference"),
        (-0.2, -0.01, False, "improves"),
        (float("nan"), 0.1, True, "no clear difference"),
    ],
)
def test_verdict_is_read_off_the_interval(low: float, high: float, hib: bool, expected: str):
    assert verdict(low, high, hib) == expected


def test_clear_gain_improves_and_equal_models_show_no_clear_difference():
    better = compare([_rows(2000, 0.8, 0.6)], 2000, _mean_dm, samples=300)
    (row,) = better.rows
    assert row.verdict == "improves" and better.verdict == "improves"
    assert row.ci_low < row.delta < row.ci_high
    assert row.delta == pytest.approx(row.multi_mean - row.single_mean)
    assert better.delta_m > 0
    assert better.dm_metrics == [("t", "accuracy")] and better.dm_excluded == []
    assert row.nonfinite == 0 and better.dm_nonfinite == 0

    same = compare([_rows(300, 0.7, 0.7, seed=1)], 300, _mean_dm, samples=300)
    assert same.rows[0].verdict == "no clear difference"
    assert same.rows[0].ci_low < 0 < same.rows[0].ci_high


def test_lower_is_better_metric_flips_the_verdict():
    rng = np.random.default_rng(0)
    err_multi = rng.normal(1.0, 0.1, (3, 500))
    err_single = rng.normal(2.0, 0.1, (3, 500))
    fns = [lambda idx, e=e: float(np.abs(e[idx]).mean()) for e in err_multi]
    fns_s = [lambda idx, e=e: float(np.abs(e[idx]).mean()) for e in err_single]
    result = compare([Scored("r", "mae", False, fns, fns_s)], 500, _mean_dm, samples=200)
    assert result.rows[0].delta < 0 and result.rows[0].verdict == "improves"


def test_importance_from_a_replayed_sweep():
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-4, -1, 40)
    trials = pd.DataFrame(
        {
            "config/lr": lr,
            "config/dropout": rng.uniform(0, 0.5, 40),
            "config/fusion": rng.choice(["concat", "gated"], 40),
            "config/constant": 3,
            "objective": -((np.log10(lr) + 2.5) ** 2) + rng.normal(0, 0.01, 40),
        }
    )
    params = [c for c in trials.columns if c.startswith("config/")]
    study = study_from_trials(trials, params, "objective")
    assert len(study.trials) == 40 and "config/constant" not in study.trials[0].params
    values = importance(study, "fanova")
    assert next(iter(values)) == "config/lr"
    assert importance(study_from_trials(trials.head(1), params, "objective")) == {}


def test_pareto_mask_keeps_the_non_dominated():
    pts = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.2, 0.2], [np.nan, 2]])
    assert pareto_mask(pts).tolist() == [True, True, True, False, False]


def _inputs() -> ReportInputs:
    comp = compare([_rows(400, 0.8, 0.7)], 400, _mean_dm, samples=200)
    curves = pd.DataFrame(
        [
            {"task": "t", "metric": "accuracy", "kind": k, "seed": s, "epoch": e, "value": v}
            for k in ("multi", "single")
            for s in range(3)
            for e, v in enumerate([0.5, 0.6, 0.65])
        ]
    )
    return ReportInputs(
        comparison=comp,
        reference={"t": {"accuracy": 0.71}},
        runs=[
            RunRecord("abc123", "multi", ("t",), 0, 3, 150, 100, True),
            RunRecord("capped9", "single", ("t",), 0, 200, 10000, 10000, False),
        ],
        curves=curves,
        pareto_points=pd.DataFrame({"a": [0.1, 0.5, 0.3], "b": [0.5, 0.1, 0.2]}),
        transfer=pd.DataFrame([[np.nan, 0.02], [-0.01, np.nan]], ["a", "b"], ["a", "b"]),
        transfer_method="pairwise",
        importance={"lr": 0.7, "dropout": 0.3},
        budgets={"sweep trials": 8, "baseline trials per task": 8, "epoch cap": 200},
        reference_chosen={"t": {"model": "logistic", "c": 0.1}},
    )


def test_render_writes_an_offline_html_and_metrics_that_match(tmp_path: Path):
    inputs = _inputs()
    paths = render(inputs, tmp_path)
    page = paths["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", page)
    assert page.count("data:image/png;base64,") == 6
    md = paths["markdown"].read_text()
    figs = re.findall(r"\(figures/(\w+)\.png\)", md)
    assert figs[0] == "forest" and (paths["figures"] / "forest.png").exists()
    row = inputs.comparison.rows[0]
    assert f"{row.multi_mean:.4f} ± {row.multi_std:.4f}" in md
    assert "(figures/bars.png)" in md and (paths["figures"] / "bars.png").exists()
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["tasks"]["t"]["accuracy"]["multi"] == pytest.approx(row.multi_mean, abs=1e-6)
    assert metrics["tasks"]["t"]["accuracy"]["logreg"] == 0.71
    assert metrics["runs"]["multi"] == {"0": "abc123"}
    assert metrics_json(inputs)["verdict"] == inputs.comparison.verdict


def test_the_report_opens_with_the_answer_and_ends_with_the_runs(tmp_path: Path):
    inputs = _inputs()
    paths = render(inputs, tmp_path)
    md = paths["markdown"].read_text()
    assert md.startswith("# Does one multi-task model beat one model per task?\n\n**Overall: ")
    opening = md.split("\n\n")[1]
    c = inputs.comparison
    assert f"Δm = {c.delta_m:+.2f}% (95% CI [{c.delta_m_low:+.2f}%" in opening
    assert "Of 1 task: 1 improves." in opening
    assert md.index(opening) < md.index("| task | metric |")  # the answer before the table
    assert "- **t** (accuracy): improves — multi-task " in md
    headings = re.findall(r"^## (.+)$", md, re.MULTILINE)
    assert headings[0] == "Verdict per task"
    assert headings[-2:] == ["Runs", "Figures"]
    page = paths["html"].read_text()
    for heading in headings:
        assert f"<h2>{heading}</h2>" in page


def test_a_capped_run_is_flagged_not_converged(tmp_path: Path):
    paths = render(_inputs(), tmp_path)
    md = paths["markdown"].read_text()
    assert "1 of 2 final runs did not converge" in md.split("\n\n")[1]
    capped = next(line for line in md.splitlines() if "capped9" in line and "|" in line)
    assert capped.endswith("| 200 | 10000 | 10000 | no — hit its cap while improving |")
    done = next(line for line in md.splitlines() if "abc123" in line and "|" in line)
    assert done.endswith("| 3 | 150 | 100 | yes |")
    assert json.loads(paths["metrics"].read_text())["not_converged"] == ["capped9"]


def test_budgets_linear_settings_and_labelled_transfer_rows(tmp_path: Path):
    paths = render(_inputs(), tmp_path)
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "| sweep trials | 8 |" in md and "| baseline trials per task | 8 |" in md
    assert "<td>baseline trials per task</td>" in page
    assert "| t | logistic | 0.1 |" in md
    assert "| trained with (A) \\ scored (B) | a | b |" in md
    assert "| a |  | 0.02 |" in md and "| b | -0.01 |  |" in md
    assert re.search(r"<td>a</td>\s*<td></td>\s*<td>0.02</td>", page)


def test_below_linear_is_marked_in_the_table_and_metrics(tmp_path: Path):
    rng = np.random.default_rng(3)
    single = (rng.random((3, 500)) < 0.6).astype(float)
    multi = (rng.random((3, 500)) < 0.8).astype(float)
    linear = (rng.random(500) < 0.9).astype(float)
    row = Scored(
        "speaker",
        "macro_f1",
        True,
        _accuracy_fns(multi),
        _accuracy_fns(single),
        reference=lambda idx: float(linear[idx].mean()),
    )
    inputs = _inputs()
    inputs.comparison = compare([row], 500, _mean_dm, samples=200)
    inputs.reference = {}
    paths = render(inputs, tmp_path)
    md = paths["markdown"].read_text()
    assert "**Overall: not trustworthy.**" in md
    assert "- **speaker** (macro_f1): not trustworthy — the single-task network" in md
    assert "⚠ below linear" in md
    metrics = json.loads(paths["metrics"].read_text())
    entry = metrics["tasks"]["speaker"]["macro_f1"]
    assert entry["below_floor"] is True and entry["floor_high"] < 0
    assert entry["logreg"] == pytest.approx(float(linear.mean()), abs=1e-6)
    assert metrics["task_verdicts"] == {"speaker": "not trustworthy"}
    assert (metrics["verdict"], metrics["overall"]) == ("improves", "not trustworthy")


def test_summary_text_is_the_answer_then_the_table():
    text = summary_text(_inputs())
    assert text.startswith("**Overall: improves.**")
    assert "- **t** (accuracy): improves" in text
    assert text.index("- **t**") < text.index("| task | metric |")


def test_curves_csv_average_seeds(tmp_path: Path):
    out = write_curves(_inputs().curves, tmp_path / "curves")
    table = pd.read_csv(out / "t.csv")
    assert list(table.columns) == ["epoch", "multi", "single"]
    assert table["multi"].tolist() == pytest.approx([0.5, 0.6, 0.65])


def test_the_report_states_clusters_adjustment_and_the_chosen_side(tmp_path: Path):
    rng = np.random.default_rng(7)
    n = 600
    linear = (rng.random(n) < 0.8).astype(float)

    def lin(idx: np.ndarray) -> float:
        return float(linear[idx].mean())

    rows = [
        Scored(
            "speaker",
            "accuracy",
            True,
            _accuracy_fns((rng.random((3, n)) < 0.82).astype(float)),
            [lin] * 3,
            reference=lin,
            network=_accuracy_fns((rng.random((3, n)) < 0.6).astype(float)),
            single_kind="linear",
        ),
        _rows(n, 0.8, 0.7, seed=8),
    ]
    inputs = _inputs()
    inputs.comparison = compare(
        rows, n, _mean_dm, samples=200, groups=np.repeat(np.arange(150), 4)
    )
    inputs.reference = {}
    paths = render(inputs, tmp_path)
    md = paths["markdown"].read_text()
    method = md.split("## Method\n\n")[1].split("\n\n")[0]
    assert "150 clusters" in method and "whole clusters" in method
    assert "family-wise" in method and "The family: speaker, t." in method
    assert "| raw 95% CI | family-wise 95% CI |" in md
    speaker = inputs.comparison.rows[0]
    line = next(ln for ln in md.splitlines() if ln.startswith("| speaker |"))
    assert "| linear |" in line and f"| {speaker.network_mean:.4f} ± " in line
    assert f"[{speaker.adj_low:+.4f}, {speaker.adj_high:+.4f}]" in line
    assert "network below linear (diagnostic; linear chosen)" in line
    assert "**Overall: not trustworthy" not in md
    metrics = json.loads(paths["metrics"].read_text())
    entry = metrics["tasks"]["speaker"]["accuracy"]
    assert entry["single_network"] == pytest.approx(speaker.network_mean, abs=1e-6)
    assert entry["single"] == pytest.approx(float(linear.mean()), abs=1e-6)
    assert entry["adjusted_ci"] == pytest.approx([speaker.adj_low, speaker.adj_high], abs=1e-6)
    assert (entry["single_kind"], entry["below_floor"], entry["chosen_below_floor"]) == (
        "linear",
        True,
        False,
    )
    assert metrics["n_groups"] == 150 and metrics["family"] == ["speaker", "t"]
