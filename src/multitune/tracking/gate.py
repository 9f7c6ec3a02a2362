"""The registry's gate: does a new version take the serving alias from its holder?

Pure (no MLflow): `multitune.tracking.registry` reads the holder's tags and writes the new
version's. The rule compares like with like: both versions are scored against the single-task
validation metrics of the run registering the new one, the holder from its stored absolute
validation metrics (tags `val.<task>.<metric>`), and only when both were measured on the same
rows (tag `eval_data_hash`: dataset, splits, task definitions).

The rule, in order:

1. Eligibility. A version whose overall verdict is "hurts" never takes the alias, unless
   `registry.allow_hurts` says so; nor does one without a finite validation Δm. A verdict of
   "not trustworthy" is eligible: it says a single-task baseline is below the linear floor
   (the baseline is broken, not the model), and the `gate` tag says so. The verdict only
   vetoes; it never ranks, and nothing is ranked on test.
2. Nobody holds the alias: an eligible version takes it.
3. The holder's validation metrics are not comparable (its `eval_data_hash` differs: the data
   changed; or it lacks the tag or any metric the new Δm uses): an eligible version takes the
   alias, since the holder was never measured on the rows the project now uses.
4. Otherwise the new version takes the alias when its validation Δm against this run's
   baselines is strictly higher than the holder's against the same baselines (a non-finite
   holder score loses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

DELTA_M = "val_delta_m"
"""The version's validation Δm in percent against the baselines of the run that registered it.
Reported, never compared across versions: another run's baselines differ (see `decide`)."""
VAL_PREFIX = "val."
"""Tags `val.<task>.<metric>`: the version's absolute validation metrics, what the gate
rescores a holder from."""
EVAL_DATA_HASH = "eval_data_hash"
VERDICT = "verdict"
GATE = "gate"

Verdict = Literal[
    "improves", "equivalent", "inconclusive", "no clear difference", "hurts", "not trustworthy"
]
VERDICTS: tuple[str, ...] = get_args(Verdict)
Metrics = Mapping[str, Mapping[str, float]]
"""Task -> metric -> value."""


@dataclass(frozen=True)
class Evidence:
    """What the gate weighs for a new version, all measured by the run registering it.

    Attributes:
        val_metrics: The model's validation metrics.
        baseline_val: This run's single-task validation metrics: the baseline that both the
            new version and the alias's holder are scored against.
        eval_data_hash: A hash of the rows and labels the validation metrics were measured
            on (dataset, splits, task definitions); equal hashes make two versions'
            metrics comparable.
        verdict: The comparison's overall verdict word.
    """

    val_metrics: Metrics
    baseline_val: Metrics
    eval_data_hash: str
    verdict: Verdict

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")


@dataclass(frozen=True)
class Holder:
    """The alias's current holder, as its tags describe it."""

    version: str
    val_metrics: dict[str, dict[str, float]]
    eval_data_hash: str | None

    @classmethod
    def from_tags(cls, version: str, tags: Mapping[str, str]) -> Holder:
        """Read a registered version's gate tags."""
        return cls(str(version), val_metrics_of(tags), tags.get(EVAL_DATA_HASH) or None)


@dataclass(frozen=True)
class Decision:
    """The gate's answer: whether the new version takes the alias, and why (one line)."""

    takes: bool
    line: str
    delta_m: float
    holder_delta_m: float | None = None


def val_metric_tags(metrics: Metrics) -> dict[str, str]:
    """`val.<task>.<metric>` tags, exact (`repr`) so a rescored holder loses no precision."""
    return {
        f"{VAL_PREFIX}{task}.{metric}": repr(float(value))
        for task, values in metrics.items()
        for metric, value in values.items()
    }


def val_metrics_of(tags: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The validation metrics stored in a version's tags (see `val_metric_tags`)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in tags.items():
        if not key.startswith(VAL_PREFIX):
            continue
        # Metric names hold no dot; a task name may.
        task, _, metric = key[len(VAL_PREFIX) :].rpartition(".")
        if not task or not metric:
            continue
        try:
            out.setdefault(task, {})[metric] = float(value)
        except ValueError:
            continue
    return out


def _scored(metrics: Metrics, baseline: Metrics) -> dict[str, list[str]]:
    """The (task, metric)s a Δm of `metrics` against `baseline` uses: those both report (a
    task without validation labels has no metrics and is left out, as in the final stage)."""
    keys = {
        task: [m for m in values if m in baseline.get(task, {})]
        for task, values in metrics.items()
    }
    return {task: ms for task, ms in keys.items() if ms}


def _delta_m_percent(metrics: Metrics, baseline: Metrics, keys: Mapping[str, list[str]]) -> float:
    """Δm (percent) over `keys` only; NaN when there is none to measure."""
    # Imported here: the training package pulls in torch, which the registry otherwise needs not.
    from multitune.training.metrics import delta_m

    if not keys:
        return math.nan
    mt = {t: {m: metrics[t][m] for m in ms} for t, ms in keys.items()}
    st = {t: {m: baseline[t][m] for m in ms} for t, ms in keys.items()}
    try:
        return 100.0 * delta_m(mt, st)
    except ValueError:
        return math.nan


def _not_comparable(evidence: Evidence, holder: Holder, keys: Mapping[str, list[str]]) -> str:
    """Why the holder's validation metrics cannot be scored like the new ones ("" if they can)."""
    v = f"v{holder.version}"
    if holder.eval_data_hash is None:
        return f"{v} records no eval data hash (registered before like-for-like gating)"
    if holder.eval_data_hash != evidence.eval_data_hash:
        return (
            f"data changed since {v} (eval data {holder.eval_data_hash} -> "
            f"{evidence.eval_data_hash}): its val metrics are not comparable"
        )
    missing = [
        f"{t}.{m}" for t, ms in keys.items() for m in ms if m not in holder.val_metrics.get(t, {})
    ]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        return f"{v} lacks val metric(s) {shown}: not comparable"
    return ""


def decide(
    evidence: Evidence, holder: Holder | None, *, alias: str, allow_hurts: bool = False
) -> Decision:
    """Whether a new version takes `alias` from `holder` (the rule in the module docstring).

    Args:
        evidence: The new version's validation metrics, this run's baselines, data, verdict.
        holder: The alias's current holder (None when nobody holds it).
        alias: The alias (named in the line).
        allow_hurts: Let a version whose verdict is "hurts" take the alias.

    Returns:
        The decision, with both validation Δm (percent) against this run's baselines.
    """
    keys = _scored(evidence.val_metrics, evidence.baseline_val)
    new = _delta_m_percent(evidence.val_metrics, evidence.baseline_val, keys)
    against = "against this run's baselines"
    keeps = f"v{holder.version} keeps {alias}" if holder else f"{alias} stays unset"
    if evidence.verdict == "hurts" and not allow_hurts:
        return Decision(False, f"verdict hurts: not eligible; {keeps}", new)
    if not math.isfinite(new):
        return Decision(False, f"no finite val Δm {against}: not eligible; {keeps}", new)
    note = {
        "hurts": "; verdict hurts, allowed by registry.allow_hurts",
        "not trustworthy": "; verdict not trustworthy (a single-task baseline is below the "
        "linear floor): eligible on val Δm",
    }.get(evidence.verdict, "")
    if holder is None:
        return Decision(
            True, f"took {alias}, held by no version: val Δm {new:+.2f}% {against}{note}", new
        )
    why = _not_comparable(evidence, holder, keys)
    if why:
        return Decision(True, f"{why}; took {alias} (val Δm {new:+.2f}% {against}){note}", new)
    old = _delta_m_percent(holder.val_metrics, evidence.baseline_val, keys)
    v = f"v{holder.version}"
    if not math.isfinite(old):
        line = f"{v}'s val Δm {against} is not finite; took {alias} (val Δm {new:+.2f}%){note}"
        return Decision(True, line, new)
    if new > old:
        return Decision(
            True, f"beat {v} on val Δm {against}: {new:+.2f}% vs {old:+.2f}%{note}", new, old
        )
    return Decision(
        False, f"kept {v}: val Δm {against} {new:+.2f}% vs {v}'s {old:+.2f}%{note}", new, old
    )


def gate_tags(evidence: Evidence, decision: Decision) -> dict[str, str]:
    """The tags the gate reads back from a version, and the line saying what it decided."""
    return {
        **val_metric_tags(evidence.val_metrics),
        DELTA_M: repr(float(decision.delta_m)),
        EVAL_DATA_HASH: evidence.eval_data_hash,
        VERDICT: evidence.verdict,
        GATE: decision.line,
    }
