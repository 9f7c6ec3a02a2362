"""The Dockerfile installs exactly what the Makefile installs (no Docker engine needed).

The image runs `make install` on the files it copied first; these tests rebuild that
build context on disk (COPY sources filtered by .dockerignore), ask make what it would run
there (`make -n install`) and compare with the repository checkout.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative, posix) out of the build context."""
    patterns = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def _stage_install_context(dest: Path) -> None:
    """Copy what the Dockerfile's COPY lines before `RUN make install` bring in."""
    for keyword, args in _instructions():
        if keyword == "RUN" and "make install" in args:
            return
        if keyword != "COPY":
            continue
        *sources, target = args.split()
        for source in sources:
            src = ROOT / source.rstrip("/")
            into = dest / target if target not in ("./", ".") else dest
            if src.is_dir():
                for file in src.rglob("*"):
                    rel = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not _ignored(rel):
                        out = into / file.relative_to(src) if target != "./" else dest / rel
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, out)
            else:
                assert not _ignored(source), f".dockerignore drops {source}, which is COPY'd"
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, into / src.name)
    raise AssertionError("the Dockerfile never runs `make install`")


def _make_plan(directory: Path) -> list[str]:
    """The commands `make install` would run in `directory` (fresh: no .venv yet)."""
    done = subprocess.run(
        ["make", "-n", "install", "PYTHON=python3"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.replace(str(directory), "<root>") for line in done.stdout.splitlines()]


def test_the_image_installs_with_the_makefiles_own_recipe() -> None:
    runs = [args for keyword, args in _instructions() if keyword == "RUN"]
    installs = [r for r in runs if "pip" in r or "make install" in r]
    assert installs == ["make install"], "install Python packages only through `make install`"
    assert not any(re.search(r"==|torch", r) for r in runs), "no version pins of its own"
    args = dict(a.partition("=")[::2] for k, a in _instructions() if k == "ARG")
    assert args["TORCH"] == "cpu", "CPU by default"
    env = " ".join(a for k, a in _instructions() if k == "ENV")
    assert "download.pytorch.org/whl/${TORCH}" in env, "TORCH selects the torch build's index"
    assert ("CMD", '["dvc", "repro"]') in _instructions()


def test_the_image_and_the_makefile_install_the_same_pinned_set(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    image, checkout = tmp_path / "image", tmp_path / "checkout"
    _stage_install_context(image)
    for name in ("Makefile", "pyproject.toml", "requirements/lock.txt"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, checkout / name)
        assert (image / name).read_bytes() == (ROOT / name).read_bytes(), name
    plan = _make_plan(image)
    assert plan == _make_plan(checkout)
    pip = [line for line in plan if "pip install" in line]
    assert any("-c requirements/lock.txt" in line and ".[dev]" in line for line in pip), pip
    assert (image / "src/multitune/__init__.py").is_file(), "the editable install needs src/"


@pytest.mark.parametrize(
    "path",
    [
        "data/dataset.parquet",
        "results/sweep/trials.parquet",
        "reports/comparison.md",
        "mlflow.db",
        "mlartifacts/1/x",
        "ray_results/s/x",
        ".venv/bin/python",
        ".dvc/cache/ab",
        ".git/HEAD",
        "src/multitune/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_data_results_and_stores_out(path: str) -> None:
    assert _ignored(path)


@pytest.mark.parametrize(
    "path", ["src/multitune/cli.py", "requirements/lock.txt", "dvc.yaml", ".dvc/config"]
)
def test_dockerignore_keeps_the_code_and_pins(path: str) -> None:
    assert not _ignored(path)
