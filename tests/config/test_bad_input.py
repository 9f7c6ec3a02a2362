"""Bad input, widened: every recent params key refuses a wrong value in one line that names
the key and the fix.

`CASES` is the table of CONTRIBUTING.md's "Bad input: the cases refused"; a test holds the two
together. After adding a case, print the table with
`.venv/bin/python tests/config/test_bad_input.py` and paste it there.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from multitune.config import validate_params
from multitune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Bad input: the cases refused"
_CUT = " Valid keys here:"  # the table leaves out the list of keys, which grows with the schema


@dataclass(frozen=True)
class Case:
    """One wrong value written into the shipped params.yaml.

    Attributes:
        key: The key set to `value`; the message must name it.
        value: The wrong value, as YAML would load it.
        fix: Part of the message that says how to fix it.
        also: Other keys set with it (a contradiction between keys).
    """

    key: str
    value: Any
    fix: str
    also: dict[str, Any] = field(default_factory=dict)


TOGETHER = "final.grouping.together"
TEXT = "data.modalities.text.encoder"
CASES: list[Case] = [
    # Budgets.
    Case("train.epochs", 0, "greater than or equal to 1"),
    Case("train.epochs", "1e3", "write it as a whole number: 1000"),
    Case("train.epoch_steps", "auto", "or null (one pass over the run's labelled train rows)"),
    Case("train.patience", 0, "greater than or equal to 1"),
    Case("train.batch_size", 0, "greater than or equal to 1"),
    Case("baselines.num_samples", 0, "greater than or equal to 1"),
    Case("baselines.epochs", -1, "or equal to 1"),
    Case("sweep.num_samples", None, "valid integer (got null)"),
    Case("sweep.epochs", 0, "greater than or equal to 1"),
    Case("sweep.checkpoint_every", 0, "greater than or equal to 1"),
    Case("sweep.max_failures", -1, "greater than or equal to 0"),
    Case("sweep.scheduler.grace_period", 0, "greater than or equal to 1"),
    Case("sweep.scheduler.reduction_factor", 1, "greater than 1"),
    Case("sweep.num_sample", 8, "did you mean 'num_samples'?"),
    Case("final.seeds", 0, "greater than or equal to 1"),
    Case("final.transfer.epochs", 0, "greater than or equal to 1"),
    # Class weighting.
    Case("train.class_weighting", "balancd", "expected none or balanced"),
    Case("train.class_weighting", {"speakr": "balanced"}, "did you mean 'speaker'?"),
    Case(
        "train.class_weighting",
        {"rating": "balanced"},
        "regression task, which has no classes to weigh",
        also={"tasks[5]": {"name": "rating", "type": "regression", "column": "rating"}},
    ),
    Case("baselines.class_weighting", "balanced", "set train.class_weighting: balanced"),
    Case(
        "sweep.space.class_weighting",
        {"choice": ["none", "balancd"]},
        "did you mean 'balanced'?",
    ),
    Case(
        "sweep.space.class_weighting",
        {"choice": ["none", {"speakr": "balanced"}]},
        "did you mean 'speaker'?",
    ),
    Case("tasks[2].class_weights", "balance", "did you mean 'balanced'?"),
    Case("tasks[2].class_weights", {"Alice": -1.0}, "a weight is a number >= 0"),
    Case("tasks[2].class_weights", {"Alice": 0, "Bob": 0}, "give some class a weight > 0"),
    Case(
        "tasks[2].class_weights",
        {"Carol": 2.0},
        "weigh some of Alice, Bob",
        also={"tasks[2].classes": ["Alice", "Bob"]},
    ),
    Case("tasks[2].class_weights", {0: 2.0}, "write '0' in quotes"),
    Case("tasks[0].pos_weight", -1.0, "expected a number > 0"),
    Case("tasks[0].pos_weight", "balance", "did you mean 'balanced'?"),
    Case("tasks[0].class_weights", "balanced", "weighs its positives with pos_weight"),
    # Standardization.
    Case("model.standardize", "none", "expected true or false"),
    Case("model.standardize", "auto", "expected true or false"),
    Case("model.standardise", True, "did you mean 'standardize'?"),
    Case("train.standardize", True, "it is model.standardize"),
    Case(
        "sweep.space.standardize",
        {"choice": [True, False]},
        "not searched: set model.standardize",
    ),
    # Folds (cross-validation of small tasks).
    Case("final.selection.folds", 2, "greater than or equal to 3"),
    Case("final.selection.folds", 50, "less than or equal to 20"),
    Case("final.selection.folds", "five", "valid integer"),
    Case("final.selection.finalists", 6, "less than or equal to 5"),
    Case("final.selection.max_val_rows", -1, "greater than or equal to 0"),
    Case("final.selection.enabled", "sometimes", "expected true or false"),
    Case("final.selection.fold", 5, "did you mean 'folds'?"),
    Case("final.folds", 5, "it is final.crossfit.folds"),
    Case("final.crossfit.folds", 1, "greater than or equal to 2"),
    Case("final.crossfit.repeats", 0, "greater than or equal to 1"),
    Case("final.crossfit.margin", -0.01, "greater than or equal to 0"),
    Case("final.margin", 0.01, "it is final.crossfit.margin"),
    Case("final.selection", 5, "expected a mapping of its keys (enabled, max_val_rows"),
    # Groupings.
    Case("final.grouping.method", "tags", "did you mean 'tag'?"),
    Case("final.grouping.candidates", 0, "greater than or equal to 1"),
    Case("final.grouping.every", 0, "greater than or equal to 1"),
    Case("final.grouping.lookahead_lr", 0, "greater than 0"),
    Case("final.grouping.max_exhaustive", 11, "less than or equal to 10"),
    Case("final.grouping.togther", [], "did you mean 'together'?"),
    Case(TOGETHER, ["speaker", "party"], "write [[speaker, party]]"),
    Case(TOGETHER, [["speakr", "party"]], "did you mean 'speaker'?"),
    Case(TOGETHER, [["speaker"]], "must list two or more tasks"),
    Case("final.grouping.apart", [["speaker", "party", "debate"]], "two different tasks"),
    Case(
        "final.grouping.apart",
        [["party", "speaker"]],
        "drop it from one of them",
        also={TOGETHER: [["speaker", "party"]]},
    ),
    Case(
        "final.grouping.apart",
        [["speaker", "debate"]],
        "joined through final.grouping.together ([speaker, party], [party, debate])",
        also={TOGETHER: [["speaker", "party"], ["party", "debate"]]},
    ),
    Case(
        "final.grouping.apart",
        [["speaker", "debate"]],
        "set final.grouping.method: tag, or drop apart",
        also={"final.grouping.method": "none"},
    ),
    # The text encoder's windows: refused before any encoding, not by ONNX Runtime mid-stage.
    Case(f"{TEXT}.window", 1024, "set it to 512 or less"),
    Case(f"{TEXT}.stride", 64, "has no effect", also={f"{TEXT}.window": 64}),
]


def shipped() -> dict[str, Any]:
    """The shipped params.yaml, loaded."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    return raw


def with_case(raw: dict[str, Any], case: Case) -> dict[str, Any]:
    """A copy of `raw` with the case's keys set (`also` first)."""
    out = copy.deepcopy(raw)
    for key, value in [*case.also.items(), (case.key, case.value)]:
        parts: list[str | int] = [
            int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", key)
        ]
        node: Any = out
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        last = parts[-1]
        if isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return out


def message(case: Case, raw: dict[str, Any] | None = None) -> str:
    """What the loader says about the case (as the stages print it, less `error: `)."""
    with pytest.raises(ConfigError) as info:
        validate_params(with_case(shipped() if raw is None else raw, case))
    return str(info.value)


def _flow(value: Any) -> str:
    """A value as one line of YAML, as a user would write it."""
    dumped = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return dumped.strip().removesuffix("\n...")


def table_rows(case: Case, said: str) -> list[str]:
    """The case's CONTRIBUTING.md cells: key, wrong value, what the user sees."""
    wrong = _flow(case.value) + "".join(f" with {k}: {_flow(v)}" for k, v in case.also.items())
    shown = said.split(_CUT)[0] + (" …" if _CUT in said else "")
    return [f"`{cell.replace('|', chr(92) + '|')}`" for cell in (case.key, wrong, shown)]


def markdown_table() -> str:
    """The table as CONTRIBUTING.md holds it."""
    raw = shipped()
    lines = ["| key | wrong value | what the user sees |", "| --- | --- | --- |"]
    lines += ["| " + " | ".join(table_rows(c, message(c, raw))) + " |" for c in CASES]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return shipped()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.key}={c.value!r}")
def test_a_wrong_value_is_one_line_naming_the_key_and_the_fix(
    raw: dict[str, Any], case: Case
) -> None:
    said = message(case, raw)
    assert "\n" not in said, said
    assert said.startswith("params.yaml: "), said
    assert case.key in said, f"{case.key!r} not named in {said!r}"
    assert case.fix in said, f"{case.fix!r} not in {said!r}"


def test_contributing_lists_every_case_as_it_is_printed(raw: dict[str, Any]) -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert f"{len(CASES)} cases, tested in tests/config/test_bad_input.py" in section
    expected = ["| " + " | ".join(table_rows(c, message(c, raw))) + " |" for c in CASES]
    assert rows == expected, "CONTRIBUTING.md is stale: paste `python " + __file__ + "`"


@pytest.mark.parametrize(
    ("stage", "fix"),
    [
        # Refused before the split stage reads any data, not by the final stage hours later.
        ("split", "joined through final.grouping.together"),
        # Refused before the embed stage encodes (or exports an ONNX model to data/.cache).
        ("embed", "set it to 512 or less"),
    ],
)
def test_a_stage_prints_one_line_and_exits_non_zero(
    tmp_path: Path, raw: dict[str, Any], stage: str, fix: str
) -> None:
    (case,) = [c for c in CASES if c.fix.startswith(fix)]
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(with_case(raw, case), sort_keys=False))
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline" / f"{stage}.py"), "--params", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line == f"error: {bad}: {message(case, raw).removeprefix('params.yaml: ')}"
    assert not (tmp_path / "data").exists()


if __name__ == "__main__":
    print(markdown_table())
