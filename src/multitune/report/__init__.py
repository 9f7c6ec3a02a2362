"""The comparison report: statistics, figures, markdown/HTML and dvc metrics/plots files.

Pure: pandas, numpy, matplotlib and optuna only. The final stage measures; this package
turns measurements into a report and never sees MLflow.
"""

from __future__ import annotations

from multitune.report.content import ReportInputs, RunRecord, metrics_json
from multitune.report.importance import importance, study_from_trials, top_trials
from multitune.report.pareto import pareto_mask
from multitune.report.plots import curves_wide, write_curves
from multitune.report.render import markdown_table, render, summary_text
from multitune.report.stats import (
    Comparison,
    RowResult,
    Scored,
    compare,
    dm_pairs_from,
    verdict,
)
from multitune.report.tables import comparison_frame
from multitune.report.verdicts import TaskVerdict, overall_verdict, task_verdicts

__all__ = [
    "Comparison",
    "ReportInputs",
    "RowResult",
    "RunRecord",
    "Scored",
    "TaskVerdict",
    "compare",
    "comparison_frame",
    "curves_wide",
    "dm_pairs_from",
    "importance",
    "markdown_table",
    "metrics_json",
    "overall_verdict",
    "pareto_mask",
    "render",
    "study_from_trials",
    "summary_text",
    "task_verdicts",
    "top_trials",
    "verdict",
    "write_curves",
]
