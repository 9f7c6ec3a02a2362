"""Render the report: comparison.md (+ PNG figures), a self-contained comparison.html, and
metrics.json. Everything is written atomically; the HTML embeds its figures as base64 PNG and
loads nothing from the network."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from multitune.io import atomic_path
from multitune.report import figures, grouping, method
from multitune.report.content import (
    ReportInputs,
    delta_m_statement,
    method_text,
    metrics_json,
    opening_paragraph,
    verdict_lines,
)
from multitune.report.tables import (
    NOT_CONVERGED,
    comparison_frame,
    key_value_frame,
    reference_frame,
    runs_frame,
    transfer_frame,
)
from multitune.report.verdicts import task_verdicts

TITLE = "Does one multi-task model beat one model per task?"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of `frame` (cells as strings, `|` escaped)."""

    def cell(v: object) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


def summary_text(inputs: ReportInputs) -> str:
    """The answer as the final stage prints it: the opening paragraph, one line per task and
    group, and the comparison table."""
    verdicts = task_verdicts(inputs.comparison)
    first = []
    if inputs.method is not None:
        first = [
            method.opening(inputs.method, inputs.method_train_rows),
            markdown_table(method.frame(inputs.method)),
            "The trained models on the test split (bootstrap; describes the shipped models only):",
        ]
    return "\n\n".join(
        [
            *first,
            opening_paragraph(inputs, verdicts),
            verdict_lines(verdicts),
            markdown_table(comparison_frame(inputs)),
        ]
    )


def _figures(inputs: ReportInputs) -> dict[str, tuple[str, bytes]]:
    """Figure file stem -> (caption, PNG bytes), only for the parts that have data."""
    out: dict[str, tuple[str, bytes]] = {}
    c = inputs.comparison
    family = [r for r in c.rows if r.in_family]
    if family:
        pct = f"{round(c.confidence * 100):d}%"
        out["forest"] = (
            f"Multi - single per task and group (right of zero: multi-task better); thick: raw "
            f"{pct} interval, thin: family-wise {pct} interval over {len(family)} verdicts "
            "(the verdict's)",
            figures.forest(family, c.confidence),
        )
    task_rows = list(c.rows)
    out["bars"] = ("Test scores, single- vs multi-task", figures.bars(task_rows, inputs.reference))
    if not inputs.curves.empty:
        out["curves"] = ("Validation curves of the final runs", figures.curves(inputs.curves))
    if inputs.importance:
        out["importance"] = (
            f"Hyperparameter importance ({inputs.importance_evaluator}) over the sweep's trials",
            figures.importance_bars(inputs.importance, inputs.importance_evaluator),
        )
    if inputs.pareto_points is not None and inputs.pareto_points.shape[1] >= 2:
        out["pareto"] = (
            "Trade-off between tasks: sweep trials and their Pareto front (val scores)",
            figures.pareto(inputs.pareto_points),
        )
    if inputs.grouping is not None:
        out["affinity"] = (
            "Task affinity (TAG lookahead): how a step on task A (row) moves task B's loss "
            "(positive: helps)",
            figures.heatmap(inputs.grouping.affinity, "affinity (lookahead)"),
        )
    if inputs.transfer is not None and not inputs.transfer.empty:
        out["transfer"] = (
            f"Task transfer ({inputs.transfer_method}): change in task B's val score when "
            "trained with task A instead of alone",
            figures.heatmap(inputs.transfer, f"transfer ({inputs.transfer_method})"),
        )
    return out


@dataclass(frozen=True)
class _Section:
    """One part of the report, shared by markdown and HTML: no heading when `title` is ""."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None


def _sections(inputs: ReportInputs) -> list[_Section]:
    """The report in reading order: the answer first, the details after, the runs last."""
    c = inputs.comparison
    verdicts = task_verdicts(c)
    sections = [
        *_method_sections(inputs),
        _Section(
            "The trained models on the test split" if inputs.method is not None else "",
            _test_split_lead(inputs) + opening_paragraph(inputs, verdicts),
        ),
        _Section("Verdict per task", verdict_lines(verdicts)),
        _Section("Comparison table", "", comparison_frame(inputs)),
        _Section("How Δm is computed", delta_m_statement(c)),
        _Section("Method", method_text(inputs)),
        _budgets(inputs),
    ]
    if inputs.reference_chosen:
        text = "Chosen per task on the validation split, then scored once on test."
        sections.append(
            _Section(
                "Linear reference: chosen settings", text, reference_frame(inputs.reference_chosen)
            )
        )
    if inputs.top_trials is not None and not inputs.top_trials.empty:
        top = inputs.top_trials
        sections.append(_Section(f"Sweep: top {len(top)} trials", inputs.top_trials_note, top))
    if inputs.transfer is not None and not inputs.transfer.empty:
        text = (
            f"Method: {inputs.transfer_method}. Row A, column B: B's val score trained with A "
            "minus B's val score trained alone (same config, one seed)."
        )
        sections.append(_Section("Task transfer", text, transfer_frame(inputs.transfer)))
    if inputs.grouping is not None:
        g = inputs.grouping
        sections += [
            _Section("Which tasks to train together", grouping.text(g)),
            _Section("", "Candidates:", grouping.candidates_frame(g)),
            _Section(
                "",
                "Test score per task and candidate (primary metric; family-wise interval of "
                "the difference from each alone):",
                grouping.per_task_frame(g),
            ),
            _Section("", "Affinity matrix:", grouping.affinity_frame(g)),
        ]
    if inputs.meta:
        sections.append(_Section("Provenance", "", key_value_frame(inputs.meta)))
    text = (
        "Every number above comes from these MLflow runs. Converged: yes when validation "
        f'stopped improving before the cap; "{NOT_CONVERGED}" when it did not.'
    )
    sections.append(_Section("Runs", text, runs_frame(inputs.runs)))
    return sections


def _method_sections(inputs: ReportInputs) -> list[_Section]:
    """The verdict about the method first (cross-fitted), when measured."""
    m = inputs.method
    if m is None:
        return []
    lead = method.opening(m, inputs.method_train_rows)
    if inputs.winner_val_delta_m is not None:
        lead += (
            f" The chosen multi-task config's validation Δm, on the split it was chosen and "
            f"stopped on, is {inputs.winner_val_delta_m:+.2f}%; cross-fitted it is "
            f"{m.delta_m.delta:+.2f}% (the gap is the winner's curse)."
        )
    return [
        _Section("", lead),
        _Section(
            "Verdict about the method, per task (cross-fitted)",
            "Every labelled row is scored; the interval is the corrected resampled t over the "
            "folds, family-wise over the tasks; 'rows needed' is for an inconclusive verdict.",
            method.frame(m),
        ),
        _Section("How the cross-fitted verdict is reached", method.method_text(m)),
    ]


def _test_split_lead(inputs: ReportInputs) -> str:
    if inputs.method is None:
        return ""
    return (
        "Bootstrap over the test split's rows and the seeds: how the models trained once and "
        "shipped do on the test split. Not evidence about the method; nothing is decided on "
        "it. "
    )


def _budgets(inputs: ReportInputs) -> _Section:
    if not inputs.budgets:
        return _Section("Search budgets", "Not recorded for this run.")
    text = "The search effort of the multi-task sweep and of each single-task baseline."
    return _Section("Search budgets", text, key_value_frame(inputs.budgets))


def render(inputs: ReportInputs, out_dir: Path) -> dict[str, Path]:
    """Write comparison.md, figures/*.png, comparison.html and metrics.json under `out_dir`.

    Returns:
        Output name -> path.
    """
    out_dir = Path(out_dir)
    figs = _figures(inputs)
    sections = _sections(inputs)
    paths = {
        "markdown": out_dir / "comparison.md",
        "html": out_dir / "comparison.html",
        "figures": out_dir / "figures",
        "metrics": out_dir / "metrics.json",
    }
    with atomic_path(paths["figures"]) as tmp:
        tmp.mkdir()
        for stem, (_, png) in figs.items():
            (tmp / f"{stem}.png").write_bytes(png)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(_markdown(sections, figs))
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(_html(sections, figs))
    with atomic_path(paths["metrics"]) as tmp:
        tmp.write_text(json.dumps(metrics_json(inputs), indent=2) + "\n")
    return paths


def _markdown(sections: list[_Section], figs: dict[str, tuple[str, bytes]]) -> str:
    parts = [f"# {TITLE}", ""]
    for section in sections:
        if section.title:
            parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        if section.table is not None:
            table = section.table
            parts += [markdown_table(table.astype(object).where(table.notna(), "")), ""]
    if figs:
        parts += ["## Figures", ""]
        for stem, (caption, _) in figs.items():
            parts += [f"![{caption}](figures/{stem}.png)", "", f"*{caption}*", ""]
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3} img{max-width:100%} figcaption{font-size:13px;color:#555}
code{background:#f5f5f5}
"""


def _html(sections: list[_Section], figs: dict[str, tuple[str, bytes]]) -> str:
    body: list[str] = [f"<h1>{html.escape(TITLE)}</h1>"]
    for section in sections:
        if section.title:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [_block_html(block) for block in section.text.split("\n\n") if block]
        if section.table is not None:
            body.append(section.table.to_html(index=False, border=0, escape=True, na_rep=""))
    if figs:
        body.append("<h2>Figures</h2>")
    for stem, (caption, png) in figs.items():
        data = base64.b64encode(png).decode("ascii")
        body.append(
            f'<figure id="{stem}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>multitune comparison</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _block_html(block: str) -> str:
    """One markdown block of our own prose: a table, a `- ` list or a paragraph."""
    if block.startswith("|"):
        return _md_table_to_html(block)
    if block.startswith("- "):
        items = "".join(f"<li>{_inline(ln[2:])}</li>" for ln in block.splitlines())
        return f"<ul>{items}</ul>"
    return f"<p>{_inline(block)}</p>"


def _inline(text: str) -> str:
    out = html.escape(text)
    # **bold** and `code` only: the text is ours.
    while "**" in out:
        out = out.replace("**", "<b>", 1).replace("**", "</b>", 1)
    while "`" in out:
        out = out.replace("`", "<code>", 1).replace("`", "</code>", 1)
    return out


def _md_table_to_html(block: str) -> str:
    lines = [ln for ln in block.splitlines() if ln.strip()]
    rows = [[c.strip().replace("\\|", "|") for c in ln.strip("|").split(" | ")] for ln in lines]
    head, body = rows[0], rows[2:]
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
