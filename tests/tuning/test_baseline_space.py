"""The single-task search space: fit for one task, with a linear model tried first."""

from __future__ import annotations

from pathlib import Path

import optuna

from multitune.config import validate_params
from multitune.config.space import Choice, batch_size_choices, with_batch_sizes
from multitune.tuning.baselines import baseline_base, baseline_space
from multitune.tuning.space import suggest
from multitune.tuning.trial import TASK_KEY, TrialSpec, trial_base

from .project import tiny_params


def test_batch_sizes_scale_with_the_run_rows() -> None:
    assert batch_size_choices(900) == [16, 32]  # 900 rows: 28 to 56 steps a pass
    big = batch_size_choices(11_000)
    assert 16 not in big and {64, 128, 256, 512} <= set(big)
    assert batch_size_choices(40) == [16]  # too few rows for 16 steps: the smallest batch


def test_one_batch_size_rule_for_both_sides(tmp_path: Path) -> None:
    raw = tiny_params(tmp_path)
    params = validate_params(raw)
    assert params.sweep.space.batch_size is None  # left out: the rule decides
    cls = next(t for t in params.tasks if t.name == "cls")
    for rows in (40, 900, 11_000):
        single, _ = baseline_space(params, cls, rows, params.baselines)
        multi = with_batch_sizes(params.sweep.space, rows)
        assert single.batch_size == multi.batch_size == Choice(choice=batch_size_choices(rows))

    # A list the user sets is searched as it is, on both sides.
    raw["sweep"]["space"]["batch_size"] = {"choice": [48, 96]}
    explicit = validate_params(raw)
    single, _ = baseline_space(explicit, cls, 900, explicit.baselines)
    multi = with_batch_sizes(explicit.sweep.space, 11_000)
    assert single.batch_size == multi.batch_size == Choice(choice=[48, 96])


def test_each_task_space_has_class_weighting_and_a_linear_option_tried_first(
    tmp_path: Path,
) -> None:
    raw = tiny_params(tmp_path)
    raw["sweep"]["space"]["fusion"] = {"choice": ["gated", "concat"]}
    raw["sweep"]["space"]["trunk"] = {"choice": [[16], [16, 8]]}
    params = validate_params(raw)
    cls = next(t for t in params.tasks if t.name == "cls")
    reg = next(t for t in params.tasks if t.name == "reg")
    space, points = baseline_space(params, cls, 900, params.baselines)
    assert space.class_weighting == Choice(choice=["none", "balanced"])
    assert space.batch_size == Choice(choice=[16, 32])
    assert space.trunk is not None and [] in space.trunk.choice  # type: ignore[union-attr]
    assert space.weighting is None and space.sampling is None  # multi-task knobs are gone
    reg_space, _ = baseline_space(params, reg, 900, params.baselines)
    assert reg_space.class_weighting is None  # nothing to weigh in a regression

    # The first points of the task's search are the linear model, with either weighting.
    assert [p["class_weighting"] for p in points] == ["none", "balanced"]
    point = points[1]
    study = optuna.create_study()
    study.enqueue_trial(point)
    trial = study.ask()
    suggest(space, trial, ["cls"])
    spec = TrialSpec(
        base=baseline_base(params, "hard"),
        space=params.sweep.space,
        tasks=["bin", "cls", "reg"],
        task_spaces={"cls": space},
    )
    linear = spec.params({**trial.params, TASK_KEY: "cls"})
    assert linear.model.encoder.layers == 0
    assert linear.model.sharing.hidden == []
    assert linear.model.fusion.name == "concat"
    assert [t.name for t in linear.tasks] == ["cls"]
    assert linear.train.class_weighting == "balanced"
    _, reg_points = baseline_space(params, reg, 900, params.baselines)
    assert len(reg_points) == 1 and "class_weighting" not in reg_points[0]

    # A per-task setting of the base names only the baseline's own task.
    raw["train"]["class_weighting"] = {"bin": "balanced", "cls": "balanced"}
    per_task = validate_params(raw)
    spec = TrialSpec(
        base=baseline_base(per_task, "hard"),
        space=per_task.sweep.space,
        tasks=["bin", "cls", "reg"],
        task_spaces={"cls": space.model_copy(update={"class_weighting": None})},
    )
    assert spec.params({TASK_KEY: "cls", **trial.params}).train.class_weighting == {
        "cls": "balanced"
    }

    # Without concat among the fusions a linear model cannot be had: none is offered.
    raw["sweep"]["space"]["fusion"] = {"choice": ["gated", "attention"]}
    no_concat = validate_params(raw)
    space, points = baseline_space(no_concat, cls, 900, no_concat.baselines)
    assert points == [] and space.encoder_layers is None


def test_the_multitask_space_samples_class_weighting_per_categorical_task(
    tmp_path: Path,
) -> None:
    raw = tiny_params(tmp_path)
    raw["sweep"]["space"]["class_weighting"] = {"choice": ["none", "balanced"]}
    params = validate_params(raw)
    spec = TrialSpec(
        base=trial_base(params, None), space=params.sweep.space, tasks=["bin", "cls", "reg"]
    )
    study = optuna.create_study()
    study.enqueue_trial({"class_weighting.bin": "balanced", "class_weighting.cls": "none"})
    trial = study.ask()
    suggest(spec.space, trial, spec.tasks)
    # One choice per classification or binary task, as static loss weights are sampled.
    assert {k for k in trial.params if k.startswith("class_weighting")} == {
        "class_weighting.bin",
        "class_weighting.cls",
    }
    assert spec.params(trial.params).train.class_weighting == {"bin": "balanced", "cls": "none"}

    # The baselines search it once each, for their own task only.
    reg = next(t for t in params.tasks if t.name == "reg")
    cls = next(t for t in params.tasks if t.name == "cls")
    assert baseline_space(params, reg, 900, params.baselines)[0].class_weighting is None
    cls_space, _ = baseline_space(params, cls, 900, params.baselines)
    assert cls_space.class_weighting == Choice(choice=["none", "balanced"])
    assert cls_space.class_weighting_tasks is None
