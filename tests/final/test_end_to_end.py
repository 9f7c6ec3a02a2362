"""`dvc repro` of a tiny params profile, every stage, in a temporary clone of the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import synthetic_params, write_synthetic
from mlflow import MlflowClient
from synthetic import synthetic_frame, word_tags

from multitune.config import validate_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WINDOW = 12
# Three windows of WINDOW tokens (10 of text each, the default stride of 3 shared).
THREE_WINDOWS = (
    "The senate votes on the budget while the team scores a great goal in the lab and in Paris"
)


def _tiny_profile(source: Path) -> dict:
    raw = synthetic_params(source)
    # The bundled text model (PyTorch backend: no ONNX export in a test) travels with the model;
    # its top layer is fine-tuned from cached token states (model.backbone top_k).
    raw["data"]["modalities"]["text"]["encoder"] = {
        "name": "sentence_transformer",
        "backend": "torch",
        "cache_top_layers": 1,
        # A window of 12 tokens: the synthetic sentences of 13 to 15 span two windows (read
        # through overlapping windows by the token task, truncated for the sequence tasks).
        "window": WINDOW,
    }
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in ("sentiment", "topic", "rating")]
    raw["tasks"].append({"name": "keywords", "type": "token_classification", "column": "words"})
    raw["model"] = {
        "encoder": {"hidden": 16, "dropout": 0.0},
        "sharing": {"hidden": [16]},
        "backbone": {"name": "top_k", "layers": 1},
    }
    raw["train"] = {
        "epochs": 2,
        "epoch_steps": None,
        "batch_size": 64,
        "patience": 2,
        "device": "cpu",
    }
    raw["baselines"] = {"num_samples": 1, "epochs": 2, "scheduler": {"name": "none"}}
    raw["sweep"] = {
        "num_samples": 2,
        "epochs": 2,
        "scheduler": {"name": "none"},
        "search": {"seed": 0, "n_startup_trials": 1},
        "space": {
            "lr": {"dist": "loguniform", "low": 1e-3, "high": 1e-2},
            "backbone": {"name": "top_k", "layers": 1, "unfreeze_after": {"choice": [0, 1]}},
        },
    }
    raw["final"] = {
        "seeds": 2,
        "bootstrap_samples": 100,
        # Transfer runs are the final stage's own (tests/final/test_stage.py): none here.
        "transfer": {"method": "none"},
        # The smallest cross-fit (2 folds, once): what is tested is its plumbing.
        "crossfit": {"folds": 2, "repeats": 1},
    }
    # A tiny budget's multi-task model may well "hurt": these tests serve it whatever its
    # verdict (tests/tracking covers the gate's refusal).
    raw["registry"] = {"model_name": "e2e", "alias": "champion", "allow_hurts": True}
    raw["task_groups"] = {"labels": ["sentiment", "topic"]}
    return raw


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def repro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the repository with the tiny profile, after one `dvc repro`."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    frame = synthetic_frame()
    frame["words"] = word_tags(frame["text"])  # a token task: topic and mood words tagged
    source = write_synthetic(clone / "input", frame)
    # Every section written out in full: dvc.yaml names params keys that must exist in the file.
    full = validate_params(_tiny_profile(source)).model_dump(mode="json")
    (clone / "params.yaml").write_text(yaml.safe_dump(full, sort_keys=False))

    first = _run(["dvc", "repro"], clone)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return clone


EXAMPLE_ROWS = [
    {
        "text": "A great goal by the team!",
        "num_a": 1.0,
        "num_b": 0.0,
        "num_c": 0.0,
        "audio": [0.0] * 8,
    },
    {
        "text": "The senate votes on the budget today.",
        "num_a": 0.0,
        "num_b": 1.0,
        "num_c": -0.5,
        "audio": [0.1] * 8,
    },
]


@pytest.mark.slow
def test_dvc_repro_of_a_tiny_profile_in_a_fresh_clone(repro: Path, tmp_path: Path):
    clone = repro
    metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"sentiment", "topic", "rating", "keywords"}
    assert metrics["verdict"] in ("improves", "hurts", "no clear difference")
    assert "data:image/png;base64," in (clone / "reports" / "comparison.html").read_text()

    shown = _run(["dvc", "metrics", "show", "--json"], clone)
    assert shown.returncode == 0 and "delta_m" in shown.stdout
    plots = _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], clone)
    assert plots.returncode == 0, plots.stderr
    page = (tmp_path / "plots" / "index.html").read_text()
    assert not re.search(r"""<script[^>]*\bsrc\s*=\s*["']?https?:""", page)

    mlflow.set_tracking_uri(f"sqlite:///{clone / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/e2e@champion")
    out = model.predict(pd.DataFrame(EXAMPLE_ROWS[:1]))
    assert out["topic"].iloc[0] in ("politics", "science", "sports")
    assert len(out["keywords"].iloc[0]) == 6  # a label per word of "A great goal by the team!"
    # A text three windows long: a label for every word, none lost past the first window.
    long = pd.DataFrame([EXAMPLE_ROWS[1] | {"text": THREE_WINDOWS}])
    assert _windows([THREE_WINDOWS]) == [3]
    assert len(model.predict(long)["keywords"].iloc[0]) == len(THREE_WINDOWS.split())
    served = model.unwrap_python_model()
    # The network answering the token task runs its fine-tuned layers on the text (whether
    # the chosen grouping serves one network or several).
    (keywords,) = [m for m in served.members if "keywords" in m.tasks]
    assert keywords.network.token_modalities == ["text"]

    second = _run(["dvc", "repro"], clone)
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout + second.stderr


def _windows(texts: Sequence[str]) -> list[int]:
    """How many windows of the encoder each text is read through."""
    from multitune.embed.sentence_transformer import default_model_path, load_model
    from multitune.embed.windows import windows

    model = load_model(default_model_path())  # once: loading it per text took 25 s
    model.max_seq_length = WINDOW
    return [len(windows(model, [text]).input_ids) for text in texts]


@pytest.mark.slow
def test_the_token_metrics_score_every_word_of_the_test_split(repro: Path):
    """Sentences longer than the window are read through overlapping windows: the test
    metrics count every word of every labelled test row, and the embed stage said how many
    texts exceeded the window."""
    metrics = json.loads((repro / "reports" / "metrics.json").read_text())
    dataset = pd.read_parquet(repro / "data" / "dataset.parquet")
    splits = pd.read_parquet(repro / "data" / "splits.parquet")
    test = dataset[dataset["id"].isin(splits.loc[splits["split"] == "test", "id"])]
    words = int(test["words"].dropna().map(len).sum())
    assert metrics["scored_words"] == {"keywords": words}
    meta = json.loads((repro / "data" / "features" / "meta.json").read_text())["text"]
    over = sum(n > 1 for n in _windows(list(dataset["text"])))
    assert (
        over > 0 and meta["texts_over_window"] == over == meta["token_cache"]["texts_over_window"]
    )


@pytest.mark.slow
def test_the_registry_links_the_model_to_its_run_data_and_report(repro: Path):
    client = MlflowClient(f"sqlite:///{repro / 'mlflow.db'}")
    version = client.get_model_version_by_alias("e2e", "champion")
    # Logged on the multi-task run that trained it (or on the record of the chosen grouping,
    # whose trained runs are its stage's children), which names the data it trained on.
    run = client.get_run(version.run_id)
    assert run.data.tags["kind"] in ("multi", "grouping") and run.data.tags["stage"] == "final"
    if run.data.tags["kind"] == "grouping":
        parent = run.data.tags["mlflow.parentRunId"]
        (run,) = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent}' AND tags.kind = 'multi'",
            max_results=1,
        )
    lock = yaml.safe_load((repro / "dvc.lock").read_text())
    dvc_md5 = {o["path"]: o["md5"] for o in lock["stages"]["split"]["outs"]}
    dvc_md5.update({o["path"]: o["md5"] for o in lock["stages"]["ingest"]["outs"]})
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["table-test", "table-train", "table-val"]
    for d in inputs.values():
        tags = {t.key: t.value for t in d.tags}
        assert d.dataset.digest == dvc_md5["data/dataset.parquet"]
        assert tags["split_file_md5"] == dvc_md5["data/splits.parquet"]
        assert int(tags["rows"]) > 0
    # The best epoch's scores under their own keys: the `val/...` curve is per epoch.
    assert any(k.startswith("best_val/") for k in run.data.metrics)
    assert any(k.startswith("val/") for k in run.data.metrics)
    # The version says what it is; the stage's run carries the report and the sweep's outputs.
    assert "verdict" in version.description.lower() and version.run_id in version.description
    for key in ("verdict", "delta_m", "delta_m_ci", "val_delta_m", "data_hash", "git_commit"):
        assert version.tags.get(key), key
    final = client.get_run(run.data.tags["mlflow.parentRunId"])
    listed = {a.path for a in client.list_artifacts(final.info.run_id, "reports")}
    assert {"reports/comparison.html", "reports/comparison.md"} <= listed
    swept = {a.path for a in client.list_artifacts(final.info.run_id, "sweep")}
    assert swept == {"sweep/trials.parquet", "sweep/best.yaml"}


@pytest.mark.slow
def test_the_champion_predicts_in_a_fresh_venv_built_from_its_requirements(
    repro: Path, tmp_path: Path
):
    uri = f"sqlite:///{repro / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    local = Path(
        mlflow.artifacts.download_artifacts("models:/e2e@champion", dst_path=str(tmp_path / "m"))
    )
    requirements = (local / "requirements.txt").read_text().split()
    assert not [r for r in requirements if "+" in r or r.startswith("multitune")], requirements
    assert "torch==2.13.0" in requirements
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # --no-compile: pip's byte-compiling of every installed file took 84 of its 141 s here;
    # the few modules the model imports compile on first import instead.
    install = subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "-r",
            str(local / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(EXAMPLE_ROWS))
    script = (
        "import json, sys, importlib.metadata as md, pandas as pd, mlflow.pyfunc\n"
        "assert 'multitune' not in {d.metadata['Name'] for d in md.distributions()}\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "out = model.predict(pd.DataFrame(json.load(open(sys.argv[2]))))\n"
        "print(out.to_json(orient='records'))\n"
    )
    # A bare environment: no PYTHONPATH, run outside the repository, only the venv on PATH.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    served = subprocess.run(
        [str(py), "-c", script, str(local), str(rows)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    fresh = pd.DataFrame(json.loads(served.stdout.strip().splitlines()[-1]))
    here = mlflow.pyfunc.load_model(str(local)).predict(pd.DataFrame(EXAMPLE_ROWS))
    for task in ("sentiment", "topic", "keywords"):
        assert fresh[task].tolist() == list(here[task]), task
    for column in ("sentiment_proba", "topic_proba"):
        assert np.allclose(np.stack(fresh[column]), np.stack(here[column]), atol=1e-5)
    assert np.allclose(fresh["rating"], here["rating"], atol=1e-5)


def _run_count(db: Path) -> int:
    client = MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(experiments, max_results=50_000))


@pytest.mark.slow
def test_a_temp_experiment_keeps_its_runs_in_the_workspace_store(repro: Path):
    clone = repro
    git = ["git", "-c", "user.name=multitune", "-c", "user.email=ci@localhost"]
    subprocess.run([*git, "add", "-A", "input", "params.yaml", "dvc.lock"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny profile"], cwd=clone, check=True)
    before = _run_count(clone / "mlflow.db")
    versions = len(MlflowClient(f"sqlite:///{clone / 'mlflow.db'}").search_model_versions())

    exp = _run(
        [
            "dvc",
            "exp",
            "run",
            "--temp",
            "-S",
            "sweep.num_samples=3",  # from 2: the search grows by one trial
            "-S",
            "final.seeds=1",
            "-S",
            "final.transfer.method=none",
            "-S",
            "final.crossfit.enabled=false",
            "-S",
            "final.grouping.method=none",
        ],
        clone,
    )
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    # The stages reran in DVC's temporary copy; their runs and the new model version are in
    # the workspace's store, not in the vanished copy's.
    printed = exp.stdout + exp.stderr
    # The searches grew in the workspace's ray_results, not in the vanished copy: the sweep
    # trained one more trial, the baselines (1 per task, whatever the sweep's) none.
    assert "sweep growing the search: 1 more trial on top of the 2 kept" in printed, printed
    assert "baselines growing" not in printed and "baselines 4 trials (resumed)" in printed
    assert list((clone / "ray_results").glob("sweep-*+1"))
    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    assert _run_count(clone / "mlflow.db") > before
    assert len(client.search_model_versions()) == versions + 1
    assert not list((clone / ".dvc" / "tmp").rglob("mlflow.db"))
