"""Render the report: comparison.md (+ PNG figures), a self-contained comparison.html, and
metrics.json. Everything is written atomically; the HTML embeds its figures as base64 PNG and
loads nothing from the network."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from multitune.io import atomic_path
from multitune.report import figures
from multitune.report.content import ReportInputs, comparison_frame, metrics_json


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
    """The comparison table plus the Δm line, as the report prints it."""
    c = inputs.comparison
    pct = round(c.confidence * 100)
    dm = (
        f"**Δm = {c.delta_m:+.2f}%** ({pct}% CI [{c.delta_m_low:+.2f}%, {c.delta_m_high:+.2f}%])"
        f" → overall: **{c.verdict}**"
    )
    return markdown_table(comparison_frame(inputs)) + "\n\n" + dm


def _figures(inputs: ReportInputs) -> dict[str, tuple[str, bytes]]:
    """Figure file stem -> (caption, PNG bytes), only for the parts that have data."""
    out: dict[str, tuple[str, bytes]] = {}
    task_rows = list(inputs.comparison.rows)
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
    if inputs.transfer is not None and not inputs.transfer.empty:
        out["transfer"] = (
            f"Task transfer ({inputs.transfer_method}): change in task B's val score when "
            "trained with task A instead of alone",
            figures.heatmap(inputs.transfer, f"transfer ({inputs.transfer_method})"),
        )
    return out


def _sections(inputs: ReportInputs) -> list[tuple[str, str, pd.DataFrame | None]]:
    """(title, markdown-ish text, optional table) sections shared by md and html."""
    c = inputs.comparison
    meta = inputs.meta
    pct = round(c.confidence * 100)
    intro = (
        f"Test split: {c.n_test} rows, never seen by the baselines or the sweep. "
        f"Mean ± std over seeds; delta = multi - single; {pct}% intervals by "
        f"{c.method}, {c.bootstrap_samples} resamples. A verdict is read off the interval: "
        "improves / hurts when it excludes zero, otherwise no clear difference. Δm is the "
        "mean relative change over every task metric, sign-corrected so that positive means "
        "multi-task is better. `logreg` is a scikit-learn logistic regression (ridge for "
        "regression tasks) on the same features and split."
    )
    sections: list[tuple[str, str, pd.DataFrame | None]] = [
        ("Comparison", intro + "\n\n" + summary_text(inputs), None)
    ]
    runs = pd.DataFrame(
        [
            {
                "kind": r.kind,
                "tasks": ", ".join(r.tasks),
                "seed": r.seed,
                "run id": r.run_id,
                "epochs": r.epochs_run,
            }
            for r in inputs.runs
        ]
    ).astype({"seed": "Int64", "epochs": "Int64"})
    sections.append(("Runs", "Every number above comes from these MLflow runs.", runs))
    if inputs.top_trials is not None and not inputs.top_trials.empty:
        sections.append(
            (f"Sweep: top {len(inputs.top_trials)} trials", "", inputs.top_trials.round(4))
        )
    if inputs.transfer is not None and not inputs.transfer.empty:
        sections.append(
            (
                "Task transfer",
                f"Method: {inputs.transfer_method}. Row A, column B: B's val score trained "
                "with A minus B's val score trained alone (same config, one seed).",
                inputs.transfer.round(4),
            )
        )
    if meta:
        prov = pd.DataFrame({"key": list(meta), "value": [str(v) for v in meta.values()]})
        sections.append(("Provenance", "", prov))
    return sections


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


def _markdown(
    sections: list[tuple[str, str, pd.DataFrame | None]], figs: dict[str, tuple[str, bytes]]
) -> str:
    parts = ["# Multi-task vs single-task: measured comparison", ""]
    for title, text, table in sections:
        parts += [f"## {title}", ""]
        if text:
            parts += [text, ""]
        if table is not None:
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


def _html(
    sections: list[tuple[str, str, pd.DataFrame | None]], figs: dict[str, tuple[str, bytes]]
) -> str:
    body: list[str] = ["<h1>Multi-task vs single-task: measured comparison</h1>"]
    for title, text, table in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for block in text.split("\n\n") if text else []:
            if block.startswith("|"):
                body.append(_md_table_to_html(block))
            else:
                body.append(f"<p>{_inline(block)}</p>")
        if table is not None:
            body.append(table.to_html(index=False, border=0, escape=True, na_rep=""))
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
