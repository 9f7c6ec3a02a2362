"""The final stage on a tiny project: report vs MLflow, the registered pyfunc, serving, gating."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from multitune.data import load_features, read_dataset, read_splits
from multitune.final import FinalPaths, run_final
from multitune.tracking.pyfunc_members import LinearMember, load_members
from multitune.tracking.registry import Evidence, register
from multitune.training import predict

from .project import MODEL_NAME, write_project

MLFLOW = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("final")
    params = write_project(root)
    outcome = run_final(params, FinalPaths.under(root))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return {"root": root, "params": params, "outcome": outcome, "uri": uri}


def _test_rows(root: Path) -> pd.DataFrame:
    frame = read_dataset(root / "data" / "dataset.parquet")
    splits = read_splits(root / "data" / "splits.parquet")
    test = set(splits.loc[splits["split"] == "test", "id"])
    return frame[frame["id"].isin(test)].reset_index(drop=True)


def test_report_and_metrics_json_are_the_mlflow_runs(project: dict[str, Any]):
    root, client = project["root"], MlflowClient(project["uri"])
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    runs = metrics["runs"]
    assert len(runs["multi"]) == 2 and len(runs["single"]) == 2 * 5
    md = (root / "reports" / "comparison.md").read_text()
    for task, per_metric in metrics["tasks"].items():
        for metric, row in per_metric.items():
            key = f"test/{task}/{metric}"
            multi = [client.get_run(r).data.metrics[key] for r in runs["multi"].values()]
            single = [
                client.get_run(r).data.metrics[key]
                for k, r in runs["single"].items()
                if k.startswith(f"{task}/")
            ]
            assert row["multi"] == pytest.approx(np.mean(multi), abs=1e-5)
            reference = client.get_run(runs["reference"]).data.metrics[key]
            assert row["logreg"] == pytest.approx(reference, abs=1e-5)
            # The single-task side is the network or the linear model, chosen without test;
            # the network's own value is kept beside it either way.
            assert row["single_network"] == pytest.approx(np.mean(single), abs=1e-5)
            side = reference if row["single_kind"] == "linear" else np.mean(single)
            assert row["single"] == pytest.approx(side, abs=1e-5)
            assert row["ci_low"] <= row["ci_high"]
            assert f"{row['multi']:.4f} ± " in md
    assert "labels" in metrics["groups"]  # the task group's joint accuracy
    for run_id in runs["multi"].values():
        assert run_id in md
    html = (root / "reports" / "comparison.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html.split("<body>")[1]
    assert sorted(p.name for p in (root / "reports" / "curves").iterdir())[0].endswith(".csv")
    kinds = {row["single_kind"] for rows in metrics["tasks"].values() for row in rows.values()}
    assert kinds <= {"network", "linear"}
    stage_run = client.get_run(project["outcome"].run_id)
    assert stage_run.data.metrics["delta_m"] == pytest.approx(metrics["delta_m"], abs=1e-5)


def test_registered_pyfunc_predicts_raw_rows_like_the_in_process_model(project: dict[str, Any]):
    root = project["root"]
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    rows = _test_rows(root)
    spec_cols = model.metadata.get_input_schema().input_names()
    out = model.predict(rows[spec_cols])
    assert len(out) == len(rows)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@champion"))
    feats = {
        m: load_features(root / "data" / "features", m, list(rows["id"]))
        for m in project["params"].data.modalities
    }
    # The champion serves the chosen grouping: each task from its group's saved model.
    expected: dict[str, np.ndarray] = {}
    for member in load_members(local / "artifacts" / "network"):
        if isinstance(member, LinearMember):
            vectors = {m: np.asarray(feats[m]) for m in member.linear.modalities}
            expected[member.linear.task] = member.linear.predict(vectors)
        else:
            out_all = predict(member.network, feats)
            expected |= {t: out_all[t] for t in member.tasks}
    topic = np.stack(out["topic_proba"].to_list())
    np.testing.assert_allclose(topic, expected["topic"], atol=1e-4)
    sentiment = np.stack(out["sentiment_proba"].to_list())[:, 1]
    np.testing.assert_allclose(sentiment, expected["sentiment"], atol=1e-4)
    np.testing.assert_allclose(out["rating"], expected["rating"], rtol=1e-4, atol=1e-4)
    assert set(out["topic"]) <= {"politics", "science", "sports"}
    assert all(isinstance(v, list) for v in out["tags"])
    subset = model.predict(rows[spec_cols], params={"tasks": ["rating", "mood"]})
    assert set(subset.columns) == {"rating", "mood", "mood_proba"}
    single = model.predict(rows[spec_cols], params={"task": "topic"})
    assert list(single.columns) == ["prediction", "probabilities"]
    assert single["prediction"].tolist() == out["topic"].tolist()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (gunicorn/uvicorn workers included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group `pgid` is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_mlflow_models_serve_answers_raw_rows(project: dict[str, Any]):
    root, port = project["root"], _free_port()
    # The server execs `uvicorn` from PATH: the venv's bin, as `make` or an activated venv has.
    path = f"{MLFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": project["uri"], "PATH": path}
    cmd = [
        str(MLFLOW),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL_NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"server did not come up: {err[-2000:]}")
            time.sleep(0.5)
        rows = _test_rows(root).head(3)
        cols = ["text", "num_a", "num_b", "num_c", "audio"]
        records = [
            {c: (v.tolist() if isinstance(v, np.ndarray) else v) for c, v in r.items()}
            for r in rows[cols].to_dict(orient="records")
        ]
        body = json.dumps({"dataframe_records": records, "params": {"task": "topic"}})
        req = urllib.request.Request(
            f"{base}/invocations", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        preds = answer["predictions"]
        assert len(preds) == 3
        assert {p["prediction"] for p in preds} <= {"politics", "science", "sports"}
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in preds)
    finally:
        _stop(proc)
    assert _group_gone(proc.pid, timeout=20), "the server left processes behind"


def test_alias_moves_only_to_a_better_model_and_reruns_register_nothing(project: dict):
    client = MlflowClient(project["uri"])
    source = client.get_model_version_by_alias(MODEL_NAME, "champion")
    uri = f"models:/{MODEL_NAME}/{source.version}"
    name = "gating"

    def gate(accuracy: float, fp: str) -> Any:
        """Register `uri` with this validation accuracy against a baseline of 0.5."""
        baseline = {"t": {"accuracy": 0.5}}
        evidence = Evidence({"t": {"accuracy": accuracy}}, baseline, "h", "improves")
        return register(uri, name, "champion", evidence=evidence, fp=fp, tags={})

    first = gate(0.6, "one")
    assert first.outcome == "alias moved"
    worse = gate(0.55, "two")
    assert worse.outcome == "challenger"
    assert str(client.get_model_version_by_alias(name, "champion").version) == first.version
    assert client.get_model_version(name, worse.version).tags["challenger"] == "true"
    better = gate(0.7, "three")
    assert better.outcome == "alias moved"
    assert str(client.get_model_version_by_alias(name, "champion").version) == better.version
    again = gate(0.7, "three")
    assert again.outcome == "unchanged" and again.version == better.version
    assert len(client.search_model_versions(f"name = '{name}'")) == 3


def test_registered_version_carries_provenance_tags(project: dict[str, Any]):
    client = MlflowClient(project["uri"])
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    tags = version.tags
    for key in ("git_commit", "params_hash", "data_hash", "fingerprint", "val_delta_m", "run_id"):
        assert key in tags
    assert any(k.startswith("test.topic.") for k in tags)
    reg = project["outcome"].registration
    assert reg is not None and reg.version == str(version.version)


def test_the_alias_is_gated_on_validation_delta_m_never_on_test(project: dict[str, Any]):
    client = MlflowClient(project["uri"])
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    stage = client.get_run(project["outcome"].run_id).data.metrics
    gate = float(version.tags["val_delta_m"])
    assert gate == pytest.approx(stage["registered_val_delta_m"], abs=1e-6)
    assert "registered_test_delta_m" in stage  # reported, not used to choose

    def children(kind: str) -> list[Any]:
        return client.search_runs(
            [client.get_run(version.tags["run_id"]).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{project['outcome'].run_id}' "
            f"AND tags.kind = '{kind}'",
        )

    # The version's run: the shipped multi-task seed, or the record of a chosen grouping.
    shipped = "multi" if version.tags["grouping"] == "all in one" else "grouping"
    assert version.tags["run_id"] in {r.info.run_id for r in children(shipped)}
    multi = children("multi")
    for r in multi:  # every final run says whether it converged, and how far it trained
        assert r.data.tags["converged"] in ("true", "false")
        assert r.data.metrics["steps"] >= r.data.metrics["best_step"] > 0


def test_delta_m_of_the_shipped_seed_is_nan_not_a_crash_without_shared_metrics():
    from multitune.final.context import safe_delta_m as _safe_delta_m

    # A task with no labelled val rows has no metrics on either side: it is left out.
    assert _safe_delta_m({"a": {"accuracy": 0.9}, "b": {}}, {"a": {"accuracy": 0.8}, "b": {}}) == (
        pytest.approx(12.5)
    )
    assert math.isnan(_safe_delta_m({"b": {}}, {"b": {}}))


def test_the_report_opens_with_the_cross_fitted_verdict_and_the_gate_reads_it(
    project: dict[str, Any],
):
    root = project["root"]
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    method = metrics["method"]
    data = read_dataset(root / "data" / "dataset.parquet")
    for task, row in method["tasks"].items():
        # every labelled row of the task is scored, not the test split's share
        column = next(t.column for t in project["params"].tasks if t.name == task)
        assert row["rows"] == int(data[column].notna().sum())
        assert row["verdict"] in ("improves", "hurts", "equivalent", "inconclusive")
    assert metrics["overall"] == method["verdict"]
    text = (root / "reports" / "comparison.md").read_text()
    assert text.index("About the method") < text.index("The trained models on the test split")
    client = MlflowClient(project["uri"])
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    if version.tags["grouping"] == "all in one":
        assert version.tags["verdict"] == method["verdict"]
    assert version.tags["method_delta_m"] == f"{method['delta_m']['delta']:.6g}"


def test_the_gate_verdict_reads_no_test_figure():
    """Whatever the test split says, the gate's verdict is the cross-fitted one."""
    from multitune.final.shipping import gate_verdict
    from multitune.report.crossfit import FoldDiffs, compare_method
    from multitune.report.stats import Comparison

    rng = np.random.default_rng(0)
    d = 0.0005 * rng.standard_normal(10)
    dm = FoldDiffs("Δm", "delta_m", True, 100 * d, np.zeros(10), 500, 1.0)
    task = FoldDiffs("a", "auroc", True, 0.7 + d, np.full(10, 0.7), 500, 0.01)
    method = compare_method([task], dm, folds=5, repeats=2)
    assert method.verdict == "equivalent"
    for test_verdict in ("improves", "hurts", "no clear difference"):
        test = Comparison([], -50.0, -60.0, -40.0, test_verdict, 100, 100, 0.95)
        assert gate_verdict(None, method, test) == "equivalent"
    hurts = Comparison([], -50.0, -60.0, -40.0, "hurts", 100, 100, 0.95)
    assert gate_verdict(None, None, hurts) == "hurts"  # cross-fitting off: the old rule
