"""The registry's gate on a real MLflow store: like-for-like Δm, verdicts, data changes, tags."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel

from multitune import tracking
from multitune.config import MlflowConfig, RegistryConfig
from multitune.errors import UserError
from multitune.tracking.gate import Evidence, Holder, decide, val_metrics_of
from multitune.tracking.registry import register
from multitune.tracking.registry_lock import lock_name, registry_lock

ALIAS = "champion"
DATA = "data-hash-1"
_names = itertools.count()


class Doubler(PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] * 2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One store with one logged model; each test registers it under a name of its own."""
    root = tmp_path_factory.mktemp("registry")
    tracker = tracking.connect(MlflowConfig(experiment="registry"), root)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            python_model=Doubler(), name="model", pip_requirements=["pandas"]
        )
    yield {"uri": info.model_uri, "client": MlflowClient(tracker.uri)}
    mlflow.set_tracking_uri(None)


@pytest.fixture
def name() -> str:
    return f"gate-{next(_names)}"


def evidence(
    val: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]],
    verdict: Any = "improves",
    data: str = DATA,
) -> Evidence:
    return Evidence(val_metrics=val, baseline_val=baseline, eval_data_hash=data, verdict=verdict)


def reg(store: dict[str, Any], name: str, fp: str, ev: Evidence, **kw: Any) -> Any:
    return register(store["uri"], name, ALIAS, evidence=ev, fp=fp, tags={"run_id": fp}, **kw)


def champion(store: dict[str, Any], name: str) -> str | None:
    try:
        return str(store["client"].get_model_version_by_alias(name, ALIAS).version)
    except mlflow.exceptions.MlflowException:
        return None


def tags(store: dict[str, Any], name: str, version: str) -> dict[str, str]:
    return dict(store["client"].get_model_version(name, version).tags)


# Run 1 had weak baselines; run 2's are stronger. v1's own Δm (+28.3%) is far above v2's own
# (+1.2%), yet v2 is the better model on every absolute validation metric.
WEAK = {"a": {"accuracy": 0.60}, "b": {"mae": 2.0}}
STRONG = {"a": {"accuracy": 0.74}, "b": {"mae": 1.0}}
V1_VAL = {"a": {"accuracy": 0.70}, "b": {"mae": 1.2}}
V2_VAL = {"a": {"accuracy": 0.75}, "b": {"mae": 0.99}}


def test_a_rerun_with_stronger_baselines_gives_the_alias_to_the_better_model(
    store: dict[str, Any], name: str
) -> None:
    first = reg(store, name, "run1", evidence(V1_VAL, WEAK))
    assert first.outcome == "alias moved"
    assert first.delta_m == pytest.approx(100 * ((0.70 - 0.60) / 0.60 + (2.0 - 1.2) / 2.0) / 2)
    second = reg(store, name, "run2", evidence(V2_VAL, STRONG))
    # Against run 2's baselines: v1 scores ((0.70-0.74)/0.74 + -(1.2-1.0)/1.0)/2 < 0 and v2
    # scores ((0.75-0.74)/0.74 + (1.0-0.99)/1.0)/2 > 0; the old gate kept v1 (+28.3% > +1.2%).
    assert first.delta_m > second.delta_m
    assert second.outcome == "alias moved"
    assert champion(store, name) == second.version
    expected_old = 100 * ((0.70 - 0.74) / 0.74 - (1.2 - 1.0) / 1.0) / 2
    assert second.previous_version == first.version
    assert second.previous_delta_m == pytest.approx(expected_old)
    gate = tags(store, name, second.version)["gate"]
    assert gate.startswith(f"beat v{first.version} on val Δm against this run's baselines")
    assert f"{second.delta_m:+.2f}% vs {expected_old:+.2f}%" in gate


def test_a_worse_model_against_the_same_baselines_stays_a_challenger(
    store: dict[str, Any], name: str
) -> None:
    holder = reg(store, name, "run1", evidence(V2_VAL, STRONG))
    # Measured against weaker baselines, its own Δm is the higher one; the model is worse.
    worse = reg(store, name, "run2", evidence(V1_VAL, WEAK))
    assert worse.delta_m > holder.delta_m
    assert worse.outcome == "challenger"
    assert champion(store, name) == holder.version == worse.holder_version
    t = tags(store, name, worse.version)
    assert t["challenger"] == "true"
    assert t["gate"].startswith(f"kept v{holder.version}: val Δm against this run's baselines")


def test_a_hurts_verdict_does_not_take_the_alias_unless_allowed(
    store: dict[str, Any], name: str
) -> None:
    lost = reg(store, name, "run1", evidence(V1_VAL, WEAK, verdict="hurts"))
    assert lost.outcome == "challenger" and lost.holder_version is None
    assert champion(store, name) is None
    assert (
        tags(store, name, lost.version)["gate"]
        == f"verdict hurts: not eligible; {ALIAS} stays unset"
    )
    held = reg(store, name, "run2", evidence(V1_VAL, WEAK))
    assert held.outcome == "alias moved"
    # Better on validation, but its own verdict is "hurts": it does not take a held alias.
    better = reg(store, name, "run3", evidence(V2_VAL, WEAK, verdict="hurts"))
    assert better.outcome == "challenger"
    assert champion(store, name) == held.version
    assert tags(store, name, better.version)["gate"] == (
        f"verdict hurts: not eligible; v{held.version} keeps {ALIAS}"
    )
    allowed = reg(store, name, "run4", evidence(V2_VAL, WEAK, verdict="hurts"), allow_hurts=True)
    assert allowed.outcome == "alias moved"
    assert "allowed by registry.allow_hurts" in tags(store, name, allowed.version)["gate"]
    assert RegistryConfig().allow_hurts is False


def test_not_trustworthy_is_eligible_and_says_so(store: dict[str, Any], name: str) -> None:
    got = reg(store, name, "run1", evidence(V1_VAL, WEAK, verdict="not trustworthy"))
    assert got.outcome == "alias moved"
    t = tags(store, name, got.version)
    assert t["verdict"] == "not trustworthy"
    assert "verdict not trustworthy" in t["gate"]


def test_changed_data_makes_the_holder_incomparable_and_an_eligible_version_takes_over(
    store: dict[str, Any], name: str
) -> None:
    holder = reg(store, name, "run1", evidence(V2_VAL, STRONG, data="old"))
    # Worse on every metric than the holder's stored ones, but measured on other rows.
    new = reg(store, name, "run2", evidence(V1_VAL, STRONG, data="new"))
    assert new.outcome == "alias moved" and champion(store, name) == new.version
    assert new.previous_delta_m is None
    gate = tags(store, name, new.version)["gate"]
    assert gate.startswith(f"data changed since v{holder.version} (eval data old -> new)")
    # Not eligible: the holder from other data keeps the alias.
    hurt = reg(store, name, "run3", evidence(V2_VAL, STRONG, verdict="hurts", data="newer"))
    assert hurt.outcome == "challenger" and champion(store, name) == new.version


def test_a_holder_without_validation_metrics_is_not_comparable(
    store: dict[str, Any], name: str
) -> None:
    # A version from before the gate compared like with like: only its own Δm, a high one.
    old = mlflow.register_model(store["uri"], name, tags={"val_delta_m": "50.0"})
    store["client"].set_registered_model_alias(name, ALIAS, old.version)
    new = reg(store, name, "run1", evidence(V1_VAL, WEAK))
    assert new.outcome == "alias moved"
    assert "no eval data hash" in tags(store, name, new.version)["gate"]


def test_no_finite_delta_m_is_not_eligible(store: dict[str, Any], name: str) -> None:
    # No metric shared with the baselines (e.g. no validation labels): no Δm to gate on.
    got = reg(store, name, "run1", evidence({"a": {}}, {"a": {}}))
    assert got.outcome == "challenger" and champion(store, name) is None
    assert got.delta_m is not None and math.isnan(got.delta_m)
    assert tags(store, name, got.version)["gate"].startswith("no finite val Δm")


def test_version_tags_carry_what_the_next_gate_reads(store: dict[str, Any], name: str) -> None:
    v_val = {"a": {"accuracy": 1 / 3}, "b.c": {"mae": 0.1 + 0.2}}
    got = reg(store, name, "run1", evidence(v_val, {"a": {"accuracy": 0.3}, "b.c": {"mae": 0.5}}))
    t = tags(store, name, got.version)
    assert val_metrics_of(t) == v_val  # exact, dotted task names included
    assert t["eval_data_hash"] == DATA
    assert t["verdict"] == "improves"
    assert t["fingerprint"] == "run1" and t["run_id"] == "run1"
    assert float(t["val_delta_m"]) == got.delta_m
    assert t["gate"] == got.gate and got.gate.startswith(f"took {ALIAS}, held by no version")


def test_an_unchanged_fingerprint_registers_nothing(store: dict[str, Any], name: str) -> None:
    first = reg(store, name, "same", evidence(V1_VAL, WEAK))
    again = reg(store, name, "same", evidence(V2_VAL, STRONG))
    assert again.outcome == "unchanged" and again.version == first.version
    assert again.holder_version == first.version
    assert len(store["client"].search_model_versions(f"name = '{name}'")) == 1


def test_an_identical_model_does_not_move_the_alias() -> None:
    holder = Holder.from_tags("4", {"val.a.accuracy": repr(0.7), "eval_data_hash": DATA})
    d = decide(evidence({"a": {"accuracy": 0.7}}, WEAK), holder, alias=ALIAS)
    assert not d.takes and d.line.startswith("kept v4")


def test_a_holder_missing_a_metric_the_new_delta_m_uses_is_not_comparable() -> None:
    holder = Holder.from_tags("2", {"val.a.accuracy": "0.99", "eval_data_hash": DATA})
    d = decide(evidence(V1_VAL, WEAK), holder, alias=ALIAS)
    assert d.takes and d.line.startswith("v2 lacks val metric(s) b.mae")


def test_an_unknown_verdict_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        evidence(V1_VAL, WEAK, verdict="better")


def test_a_better_version_untags_the_holder_it_displaces(store: dict[str, Any], name: str) -> None:
    first = reg(store, name, "run1", evidence(V1_VAL, STRONG))
    second = reg(store, name, "run2", evidence(V2_VAL, STRONG))
    assert second.outcome == "alias moved" and second.previous_version == first.version
    t = tags(store, name, first.version)
    assert t["challenger"] == "true"
    assert t["gate"] == f"{first.gate}; lost {ALIAS} to v{second.version}"
    assert "challenger" not in tags(store, name, second.version)


def _hold_lock(store: dict[str, Any], name: str) -> str:
    """A lock model as a registration killed mid-way leaves it."""
    lock = lock_name(name)
    held = {"owner": "alice", "host": "box", "pid": "4242", "time": "then", "token": "dead"}
    store["client"].create_registered_model(lock, tags=held)
    return lock


def _locks(store: dict[str, Any], name: str) -> list[str]:
    found = store["client"].search_registered_models(f"name LIKE '{name}.lock%'")
    return [m.name for m in found]


def test_a_failed_registration_releases_the_registry_lock(
    store: dict[str, Any], name: str
) -> None:
    reg(store, name, "run1", evidence(V1_VAL, WEAK))
    assert _locks(store, name) == []
    with pytest.raises(mlflow.exceptions.MlflowException):
        bad = evidence(V2_VAL, WEAK)
        register("runs:/no-such-run/model", name, ALIAS, evidence=bad, fp="x", tags={})
    assert _locks(store, name) == []
    assert reg(store, name, "run3", evidence(V2_VAL, WEAK)).outcome == "alias moved"


def test_a_held_lock_times_out_with_a_message_naming_the_fix(
    store: dict[str, Any], name: str
) -> None:
    lock = _hold_lock(store, name)
    with pytest.raises(UserError) as err:
        reg(store, name, "run1", evidence(V1_VAL, WEAK), lock_wait_s=0.3)
    message = str(err.value)
    assert "\n" not in message
    assert f"registry lock '{lock}'" in message and "alice@box pid 4242" in message
    assert f"delete_registered_model('{lock}')" in message
    assert store["client"].search_model_versions(f"name = '{name}'") == []
    assert _locks(store, name) == [lock]  # somebody else's: left alone
    # A lock holds no version: what lists versions never sees it.
    assert not any(v.name == lock for v in store["client"].search_model_versions())


def test_an_unchanged_fingerprint_does_not_wait_for_the_lock(
    store: dict[str, Any], name: str
) -> None:
    first = reg(store, name, "same", evidence(V1_VAL, WEAK))
    _hold_lock(store, name)
    again = reg(store, name, "same", evidence(V1_VAL, WEAK), lock_wait_s=0.01)
    assert again.outcome == "unchanged" and again.version == first.version


def test_a_stale_lock_is_broken_with_a_warning(
    store: dict[str, Any], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    _hold_lock(store, name)
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="multitune.tracking.registry_lock"):
        got = reg(store, name, "run1", evidence(V1_VAL, WEAK), lock_stale_s=0.2)
    assert got.outcome == "alias moved"
    assert "breaking the registry lock" in caplog.text and "alice@box pid 4242" in caplog.text
    assert _locks(store, name) == []


def test_waiters_on_one_dead_lock_break_it_once_and_take_turns(
    store: dict[str, Any], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    _hold_lock(store, name)
    time.sleep(0.6)
    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with registry_lock(store["client"], name, wait_s=20, stale_s=0.5):
            began = time.monotonic()
            time.sleep(0.05)
            spans.append((began, time.monotonic()))

    with caplog.at_level(logging.WARNING, logger="multitune.tracking.registry_lock"):
        threads = [threading.Thread(target=hold) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(spans) == 4
    spans.sort()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    assert caplog.text.count("breaking the registry lock") == 1
    assert _locks(store, name) == []
