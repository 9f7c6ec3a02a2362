"""What every run is tagged with: stage, git commit, and hashes of its params and data."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

STAGE = "stage"
TRIAL_ID = "trial_id"
TASK = "task"
GIT_COMMIT = "git_commit"
PARAMS_HASH = "params_hash"
DATA_HASH = "data_hash"
ERROR = "error"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_PARENT = "mlflow.parentRunId"


def git_commit(project_root: str | Path) -> str:
    """The checked-out commit, with `-dirty` when tracked files changed; `unknown` outside git."""
    try:
        head = _git(project_root, "rev-parse", "HEAD")
        dirty = _git(project_root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _git(project_root: str | Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project_root, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def params_hash(params: BaseModel | Mapping[str, Any]) -> str:
    """A short stable hash of a params object (or mapping), independent of key order."""
    data = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hash(paths: Iterable[str | Path]) -> str:
    """A short hash of the content of files and directories (recursively, in name order).

    Missing paths hash as absent, so the hash still says "not the same data".
    """
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(str(file.relative_to(root.parent)).encode())
            if not file.exists():
                digest.update(b"<missing>")
                continue
            with file.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def flatten(mapping: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level: `{"a": {"b": 1}}` -> `{"a.b": 1}`. Lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, sep, name))
        else:
            flat[name] = value
    return flat
