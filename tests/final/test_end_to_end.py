"""`dvc repro` of a tiny params profile, every stage, in a temporary clone of the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from conftest import synthetic_params, write_synthetic
from synthetic import synthetic_frame, word_tags

from multitune.config import validate_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tiny_profile(source: Path) -> dict:
    raw = synthetic_params(source)
    # The bundled text model (PyTorch backend: no ONNX export in a test) travels with the model;
    # its top layer is fine-tuned from cached token states (model.backbone top_k).
    raw["data"]["modalities"]["text"]["encoder"] = {
        "name": "sentence_transformer",
        "backend": "torch",
        "cache_top_layers": 1,
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
        "transfer": {"method": "pairwise", "epochs": 1},
    }
    raw["registry"] = {"model_name": "e2e", "alias": "champion"}
    raw["task_groups"] = {"labels": ["sentiment", "topic"]}
    return raw


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_dvc_repro_of_a_tiny_profile_in_a_fresh_clone(tmp_path: Path):
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
    rows = [
        {
            "text": "A great goal by the team!",
            "num_a": 1.0,
            "num_b": 0.0,
            "num_c": 0.0,
            "audio": [0.0] * 8,
        }
    ]
    out = model.predict(pd.DataFrame(rows))
    assert out["topic"].iloc[0] in ("politics", "science", "sports")
    assert len(out["keywords"].iloc[0]) == 6  # a label per word of "A great goal by the team!"
    assert model.unwrap_python_model().network.token_modalities == ["text"]  # fine-tuned layers

    second = _run(["dvc", "repro"], clone)
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout + second.stderr
