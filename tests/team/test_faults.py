"""Faults as users meet them, with real processes: the tracking server killed mid-stage and
restarted, and a disk that fills up while a stage writes its outputs.

Each fault must end the stage in one line that names what failed and the fix (no
traceback), leave nothing half-written, and lose nothing a rerun needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from disks import small_tmpfs
from final.project import write_project
from synthetic import run_data_stages, synthetic_params, write_synthetic

from multitune.config import validate_params

from .servers import MULTITUNE, alive, descendants, free_port, stop, wait_http

PIPELINE = Path(__file__).parents[2] / "pipeline"
RESUMED = "finished run(s) are read back, not retrained"
FAIL_WITHIN_S = 30


def _env() -> dict[str, str]:
    """The stage's environment: MLflow's HTTP retries left to multitune's defaults."""
    env = dict(os.environ)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        env.pop(key, None)
    env.pop("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", None)
    return env


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


class RestartableServer:
    """`multitune server` on a fixed port and SQLite store, that can be killed outright
    (SIGKILL, every process of it) and started again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "server.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tracked: set[int] = set()
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        store = ["--backend-store-uri", f"sqlite:///{self.db}"]
        self.proc = subprocess.Popen(
            [MULTITUNE, "server", "--port", str(self.port), "--workers", "1", *store],
            cwd=self.root,  # artifacts: <root>/mlartifacts
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(self.url + "/health", 90, self.proc)
        except (RuntimeError, TimeoutError) as err:
            raise AssertionError(f"{err}\n{log.read_text()[-3000:]}") from None
        self.tracked = descendants(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the server: `multitune server`, the `mlflow server` below it and its
        workers (each in its process group), by PID."""
        assert self.proc is not None
        pids = {self.proc.pid} | self.tracked | descendants(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], "the killed server left processes"

    def close(self) -> list[int]:
        return stop(self.proc, self.tracked) if self.proc is not None else []


@contextlib.contextmanager
def restartable_server(root: Path) -> Iterator[RestartableServer]:
    server = RestartableServer(root)
    try:
        yield server
    finally:
        left = server.close()
        assert not left, f"multitune server left processes {left}"


def _runs(db: Path) -> list[dict[str, Any]]:
    """Every run of the server's store, with its status, end time and tags (plain SQL, so
    the store is read as the server left it; a write the kill cut short is rolled back, as
    the restarted server would)."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
        rows = con.execute("SELECT run_uuid, status, end_time FROM runs").fetchall()
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run_id, {})[key] = value
    return [{"id": r, "status": s, "end": e, "tags": tags.get(r, {})} for r, s, e in rows]


def _finished(db: Path) -> dict[str, dict[str, Any]]:
    """The FINISHED runs of the final stage's jobs (they carry a `run_key`), by key."""
    if not db.exists():
        return {}
    try:
        runs = _runs(db)
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):  # the server has not made its tables yet
            return {}
        raise
    return {
        r["tags"]["run_key"]: r
        for r in runs
        if r["status"] == "FINISHED" and "run_key" in r["tags"]
    }


@pytest.mark.slow
def test_a_tracking_server_killed_mid_stage_fails_it_in_one_line_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    # One worker in the local pool: runs train and log one after another in the stage's
    # process, so the kill lands between logged runs (and no Ray or pool pads the wall time);
    # only the phases that train and log (no cross-fit, no grouping: tested elsewhere).
    write_project(
        project,
        transfer={"method": "none"},
        selection={"folds": 3},
        workers=1,
        backend="processes",
        crossfit={"enabled": False},
        grouping={"method": "none"},
    )
    params = project / "params.yaml"
    server_root = tmp_path / "server"
    server_root.mkdir()
    argv = [sys.executable, str(PIPELINE / "final.py"), "--params", str(params)]

    with restartable_server(server_root) as server:
        raw = yaml.safe_load(params.read_text())
        raw["mlflow"]["tracking_uri"] = server.url
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        server.start()

        stderr = tmp_path / "first.stderr"
        with stderr.open("wb") as err:
            first = subprocess.Popen(
                argv, env=_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )
        try:
            deadline = time.monotonic() + 180
            while len(_finished(server.db)) < 3:
                assert first.poll() is None, stderr.read_text()[-3000:]
                assert time.monotonic() < deadline, "the stage logged too slowly to interrupt"
                time.sleep(0.05)
            server.kill()
            killed = time.monotonic()
            first.wait(timeout=120)
            failed_after = time.monotonic() - killed
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
        said = stderr.read_text()
        assert first.returncode != 0, said[-3000:]
        assert failed_after < FAIL_WITHIN_S, f"failed {failed_after:.0f} s after the kill"
        last = _last_line(said)
        assert last.startswith("error: ") and server.url in last, said[-3000:]
        assert "stopped answering" in last and "rerun" in last
        assert "Traceback" not in said, said[-3000:]
        before = _finished(server.db)
        assert before, "no run finished before the kill"

        server.start()  # the same port and store
        started = time.monotonic()
        second = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
        rerun_s = time.monotonic() - started
        assert second.returncode == 0, second.stderr[-3000:]
        assert RESUMED in second.stderr

    runs = _runs(server.db)
    assert not [r for r in runs if r["status"] == "RUNNING"], "a run was left RUNNING"
    keys = Counter(
        r["tags"]["run_key"] for r in runs if r["status"] == "FINISHED" and "run_key" in r["tags"]
    )
    assert set(keys.values()) == {1}, "a job has more than one FINISHED run"
    after = _finished(server.db)
    for key, run in before.items():  # finished before the kill: read back, not retrained
        assert (after[key]["id"], after[key]["end"]) == (run["id"], run["end"])
    stages = [r for r in runs if r["tags"].get("mlflow.runName") == "final"]
    assert [r["status"] for r in stages] == ["FINISHED"]  # the one attempt, resumed
    print(
        f"tracking server killed after {len(before)} finished runs: the stage failed "
        f"{failed_after:.1f} s later with {last!r}; after a restart the rerun finished in "
        f"{rerun_s:.0f} s, trained {len(after) - len(before)}, retrained 0"
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards; skips where mounting is not allowed."""
    with small_tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones included) by relative path -> its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)) + "/": "" for p in root.rglob("*") if p.is_dir()}


def _fill(disk: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of `disk`."""
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - leave
    with filler.open("wb") as out:
        out.write(b"\0" * max(size, 0))
    return filler


@pytest.mark.slow
def test_a_full_disk_while_embedding_keeps_the_previous_features_and_says_so(
    tmp_path: Path, small_disk: Path
) -> None:
    params = validate_params(synthetic_params(write_synthetic(tmp_path / "input")))
    project = small_disk / "project"
    data = project / "data"
    run_data_stages(params, data)  # the previous outputs, features/ included, on the disk
    (project / "params.yaml").write_text(
        yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    )
    features = sum(p.stat().st_size for p in (data / "features").rglob("*") if p.is_file())
    before = _tree(data)
    # Room for a third of a new features/ beside the old one: the write fails part way.
    filler = _fill(small_disk, leave=features // 3)
    argv = [sys.executable, str(PIPELINE / "embed.py"), "--params", "params.yaml"]

    started = time.monotonic()
    done = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started

    assert done.returncode != 0
    last = _last_line(done.stderr)
    assert last == (
        "error: no space left on device writing data/features: free some space and rerun"
    ), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # The previous outputs byte for byte, and nothing beside them (no `.features.*` copy).
    assert _tree(data) == before

    filler.unlink()  # space freed: the same command now succeeds
    again = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p.name for p in data.iterdir() if p.name.startswith(".")]
    print(f"full disk while embedding: {last!r} after {seconds:.1f} s; rerun after freeing: ok")
