"""Phase `ship`: the model the stage registers (all in one, or one routing each task to its
group's network) and the verdict the registry's gate vetoes on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multitune.final.context import Chosen, Stage, safe_delta_m
from multitune.final.grouping import (
    ALL_IN_ONE,
    GroupingResult,
    merged,
)
from multitune.final.grouping import KIND as GROUP_KIND
from multitune.final.protocol import (
    Trained,
)
from multitune.final.publish import publish, version_description
from multitune.final.runs import (
    mean_metrics,
)
from multitune.final.scoring import SeedRun
from multitune.report import (
    Comparison,
    overall_verdict,
    task_verdicts,
)
from multitune.report.crossfit import MethodComparison
from multitune.tracking import (
    params_hash,
)
from multitune.tracking.gate import Verdict
from multitune.tracking.pyfunc import GroupMember, stage_grouped
from multitune.training.metrics import objective


@dataclass(frozen=True)
class Shipped:
    run: SeedRun
    val_dm: float
    test_dm: float
    verdict: str


def ship(
    stage: Stage,
    chosen_sides: Chosen,
    trained: Trained,
    comparison: Comparison,
    grouping: GroupingResult | None,
    method: MethodComparison | None = None,
) -> tuple[Shipped, Any | None]:
    """Ship the chosen grouping: all in one (the multi-task seed with the best validation
    objective), or a model routing each task to its group's network (`_grouped`). The
    registry's gate ranks on validation and vetoes on the cross-fitted verdict: the test
    split never chooses (without cross-fitting, the test verdict still vetoes)."""
    params, names, multi = stage.params, stage.names, trained.multi
    if grouping is None or grouping.chosen.name == ALL_IN_ONE:
        scores = [objective(r.val_metrics, stage.types, trained.baseline_val) for r in multi]
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
        chosen, model_dir = multi[best], stage.model_dir("multi", None, multi[best].seed)
        measured, label = comparison, "all in one"
    else:
        chosen, model_dir = _grouped(stage, chosen_sides, trained, grouping)
        verified = grouping.chosen_verified
        measured = verified.test if verified is not None else comparison
        label = grouping.chosen.label
    val_dm = safe_delta_m(chosen.val_metrics, trained.baseline_val)
    single_test = {t: mean_metrics(trained.single[t], t, "test") for t in names}
    test_dm = safe_delta_m(chosen.test_metrics, single_test)
    word = gate_verdict(grouping, method, measured)
    not_converged = [r.run_id for r in trained.all_runs() if r.converged is False]
    stage.run.log_metrics(
        {
            "delta_m": comparison.delta_m,
            "delta_m_ci_low": comparison.delta_m_low,
            "delta_m_ci_high": comparison.delta_m_high,
            "registered_val_delta_m": val_dm,
            "registered_test_delta_m": test_dm,
            "not_converged_runs": len(not_converged),
        }
    )
    shipped = Shipped(chosen, val_dm, test_dm, word)
    if not params.final.register_model:
        return shipped, None
    registration = publish(
        params,
        stage.paths,
        model_dir,
        chosen,
        baseline_val=trained.baseline_val,
        verdict=word,
        phash=params_hash(params),
        dhash=stage.dhash,
        tags={
            **stage.tags,
            "grouping": label,
            "test_delta_m": f"{test_dm:.6g}",
            "delta_m": f"{measured.delta_m:.6g}",
            "delta_m_ci": f"[{measured.delta_m_low:.6g}, {measured.delta_m_high:.6g}]",
            **(
                {
                    "method_delta_m": f"{method.delta_m.delta:.6g}",
                    "method_delta_m_ci": f"[{method.delta_m.low:.6g}, {method.delta_m.high:.6g}]",
                }
                if method is not None
                else {}
            ),
        },
        description=version_description(
            chosen, val_dm, test_dm, word, measured, stage.dhash, stage.tags, grouping=label
        ),
    )
    return shipped, registration


def gate_verdict(
    grouping: GroupingResult | None, method: MethodComparison | None, test: Comparison
) -> Verdict:
    """The verdict the registry's gate vetoes on: the cross-fitted one (of the shipped
    grouping against each alone, or of all in one), never a test-split figure. Each alone
    ships the single-task sides themselves ("no clear difference"). Only with cross-fitting
    off does the test split's verdict stand in (`test`), as it did before cross-fitting."""
    verified = grouping.chosen_verified if grouping is not None else None
    if grouping is not None and verified is None:
        return "no clear difference"
    if verified is not None and verified.method is not None:
        return verified.method.verdict
    if method is not None:
        return method.verdict
    word, _ = overall_verdict(test, task_verdicts(test))
    return word


def _grouped(
    stage: Stage, chosen: Chosen, trained: Trained, grouping: GroupingResult
) -> tuple[SeedRun, Path]:
    """The grouping's served model: per group, the seed with the best validation objective
    of its network (a one-task group: its single-task side, the linear fit where chosen).

    Returns:
        A record of the composed model (its validation metrics are what the gate scores; it
        is logged on a `grouping` child run) and the grouped model's directory.
    """
    members, parts = [], []
    for g in grouping.chosen.groups:
        types = {t: stage.types[t] for t in g}
        if len(g) == 1 and trained.sides[g[0]].side == "linear" and chosen.reference:
            source = chosen.reference.save(g[0], stage.tmp / "linear" / g[0])
            members.append(GroupMember(g, "linear", source))
            parts.append(trained.single[g[0]][0])
            continue
        runs, kind = (
            (trained.network[g[0]], "single")
            if len(g) == 1
            else (grouping.group_runs[g], GROUP_KIND)
        )
        baseline = trained.baseline_val if len(g) > 1 else None
        scores = [objective(r.val_metrics, types, baseline) for r in runs]
        best = runs[int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0]
        members.append(GroupMember(g, "network", stage.model_dir(kind, g, best.seed)))
        parts.append(best)
    name = f"grouping-{'-'.join('+'.join(g) for g in grouping.chosen.groups)}"
    run_id = stage.ledger.child(
        name,
        name,
        {**stage.tags, "kind": "grouping", "grouping": grouping.chosen.label},
        lambda handle: handle.log_params({"groups": [list(g) for g in grouping.chosen.groups]}),
    )
    composed = merged(
        list(zip(grouping.chosen.groups, parts, strict=True)),
        run_id=run_id,
        seed=parts[0].seed,
    )
    return composed, stage_grouped(stage.tmp / "grouped-model", members)
