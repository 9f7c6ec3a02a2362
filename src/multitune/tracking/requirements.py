"""The served model's pip requirements: what loading it and predicting actually imports.

MLflow's own inference (`mlflow.models.infer_pip_requirements`) loads the model in a fresh
interpreter and maps the imported modules to distributions, then prunes every distribution
another one requires. Here that pruning would keep only `multitune` (installed from source,
not on PyPI), whose dependencies are the whole pipeline (Ray, DVC, Optuna...). So the model
carries multitune's code (MLflow `code_paths`) instead, and its requirements are the
distributions a fresh interpreter imports to load the model and predict the input example,
each pinned to the version installed here:

* without a local version label (`torch==2.13.0`, not `2.13.0+cpu`): pip then picks the
  build that fits the serving host, CPU or CUDA;
* without torch's CUDA runtime packages, which the torch build pip picks brings itself;
* unpruned: every imported distribution keeps its pin, a lock of the serving code path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pandas as pd
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from multitune.errors import UserError

_CAPTURE_TIMEOUT_S = 600
# Installed from this source tree (carried as code), part of every environment, or brought by
# the torch build that pip chooses for the host.
_EXCLUDED = {"multitune", "setuptools", "pip", "wheel"}
_EXCLUDED_PREFIXES = ("nvidia-", "triton", "cuda-")
_ALWAYS = ("mlflow",)  # the pyfunc loader itself, with its scoring server


def served_requirements(
    artifacts: Mapping[str, str], example: pd.DataFrame, workdir: Path
) -> list[str]:
    """Pinned requirements of the served model (see the module docstring).

    Args:
        artifacts: The model's staged artifacts (`stage_artifacts`).
        example: Raw input rows to predict once, so lazily imported modules count too.
        workdir: A scratch directory (the example is written there).

    Returns:
        `name==version` lines, sorted by name.

    Raises:
        UserError: the model does not load or predict in a fresh interpreter.
    """
    example_file = workdir / "requirements-example.parquet"
    example.to_parquet(example_file)
    argv = [sys.executable, "-m", "multitune.tracking._imports", json.dumps(dict(artifacts))]
    argv.append(str(example_file))
    done = subprocess.run(
        argv,
        cwd=workdir,
        env={**os.environ, "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=_CAPTURE_TIMEOUT_S,
        check=False,
    )
    example_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise UserError(
            "the served model does not load in a fresh Python process, so its requirements "
            f"cannot be found: {done.stderr.strip().splitlines()[-1:]}"
        )
    return pins(json.loads(done.stdout.strip().splitlines()[-1]))


def pins(modules: Iterable[str]) -> list[str]:
    """`name==version` of the installed distributions that provide top-level `modules`."""
    providers = packages_distributions()
    names = {canonicalize_name(d) for m in modules for d in providers.get(m, ())}
    names |= {canonicalize_name(n) for n in _ALWAYS}
    kept = sorted(n for n in names if n not in _EXCLUDED and not n.startswith(_EXCLUDED_PREFIXES))
    out = []
    for name in kept:
        try:
            out.append(f"{name}=={_public(version(name))}")
        except PackageNotFoundError:
            continue
    return out


def _public(installed: str) -> str:
    """The version without its local label (`2.13.0+cpu` -> `2.13.0`)."""
    try:
        return Version(installed).public
    except InvalidVersion:
        return installed.split("+", 1)[0]
