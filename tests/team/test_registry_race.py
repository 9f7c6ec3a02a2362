"""Two final stages registering against one MLflow server at the same instant.

Two long-lived worker processes each log a tiny model, then run the rounds: in each, both
are told the same start instant, sleep until it and call `register` together on a fresh
registered model (some rounds with an alias holder already in place). Whatever order the
registry lock lets them in, the result must be the one a serial run of the gate gives: the
alias on the better model (or on the holder when neither beats it), exactly one version not
tagged `challenger`, and every `gate` line naming the holder it was compared against.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import mlflow
import pytest
from mlflow import MlflowClient

from multitune.tracking.gate import Evidence, Holder, decide
from multitune.tracking.registry import CHALLENGER, GATE, register

from .servers import mlflow_server

ROUNDS = 24
ALIAS = "champion"
DATA = "race-data"
BASELINE = {"t": {"accuracy": 0.5}}
ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

WORKER = """
import json, sys, time

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from multitune.tracking.registry import Evidence, register


class Doubler(PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return model_input["x"] * 2


mlflow.set_experiment("race")
with mlflow.start_run():
    info = mlflow.pyfunc.log_model(
        python_model=Doubler(), name="model", pip_requirements=["pandas"]
    )
print("READY " + json.dumps({"uri": info.model_uri}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    evidence = Evidence(job["val"], job["baseline"], job["data"], "improves")
    time.sleep(max(0.0, job["start_at"] - time.time()))
    began = time.time()
    got = register(
        info.model_uri, job["name"], job["alias"], evidence=evidence, fp=job["fp"], tags={}
    )
    done = {"version": got.version, "began": began, "ended": time.time()}
    print("RESULT " + json.dumps(done), flush=True)
"""


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    log: Path

    def read(self, prefix: str) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith(prefix + " "):
                return dict(json.loads(line[len(prefix) + 1 :]))
        raise AssertionError(f"a worker exited:\n{self.log.read_text()[-3000:]}")

    def send(self, job: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("race")
    with mlflow_server(root, "sqlite:///race.db") as url:
        yield url


@pytest.fixture(scope="module")
def workers(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    root = tmp_path_factory.mktemp("workers")
    script = root / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, **ENV, "MLFLOW_TRACKING_URI": server}
    started: list[Worker] = []
    try:
        for i in range(2):
            log = root / f"worker-{i}.log"
            proc = subprocess.Popen(
                [sys.executable, str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
                env=env,
                cwd=root,
            )
            started.append(Worker(proc, log))
        yield started
    finally:
        for worker in started:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()


def _evidence(accuracy: float) -> Evidence:
    return Evidence({"t": {"accuracy": accuracy}}, BASELINE, DATA, "improves")


def _problems(
    client: MlflowClient, name: str, accuracy: dict[str, float], holder: str | None
) -> list[str]:
    """How the store disagrees with a serial run of the gate in version order ([] if not)."""
    problems: list[str] = []
    tags = {v.version: dict(v.tags) for v in client.search_model_versions(f"name = '{name}'")}
    new = sorted((v for v in accuracy if v != holder), key=int)
    if len(new) != 2 or set(tags) != set(accuracy):
        return [f"versions {sorted(tags)}, expected {sorted(accuracy)}"]
    best = max(accuracy, key=lambda v: (accuracy[v], v == holder))
    try:
        alias = str(client.get_model_version_by_alias(name, ALIAS).version)
    except mlflow.exceptions.MlflowException:
        alias = None
    if alias != best:
        problems.append(f"alias on v{alias}, the better model is v{best}")
    claimants = sorted(v for v, t in tags.items() if t.get(CHALLENGER) != "true")
    if claimants != [best]:
        problems.append(f"versions not tagged challenger: {claimants}, expected [{best}]")
    # The gate applied one registration at a time, in the order the versions were created.
    current = holder
    for version in new:
        was = current
        prior = (
            Holder.from_tags(was, {"val.t.accuracy": repr(accuracy[was]), "eval_data_hash": DATA})
            if was is not None
            else None
        )
        decision = decide(_evidence(accuracy[version]), prior, alias=ALIAS)
        gate = tags[version].get(GATE, "")
        if not gate.startswith(decision.line):
            problems.append(f"v{version} gate {gate!r}, serially {decision.line!r}")
        if decision.takes:
            current = version
            if was is not None and f"lost {ALIAS} to v{version}" not in tags[was].get(GATE, ""):
                problems.append(f"v{was} lost {ALIAS} to v{version}, its gate does not say so")
    return problems


@pytest.mark.slow
def test_concurrent_registrations_leave_the_alias_on_the_better_model(
    server: str, workers: list[Worker]
) -> None:
    uris = [w.read("READY")["uri"] for w in workers]
    mlflow.set_tracking_uri(server)
    client = MlflowClient(server)
    rng = random.Random(22)
    failed: dict[int, list[str]] = {}
    overlapped = 0
    try:
        for round_ in range(ROUNDS):
            name = f"race-{round_}"
            better, worse = 0.8 + rng.uniform(0, 0.05), 0.6 + rng.uniform(0, 0.05)
            accuracy: dict[str, float] = {}
            holder = None
            # A third of the rounds start empty, a third with a holder neither beats, a third
            # with one only the better model beats.
            held = (None, 0.9, 0.7)[round_ % 3]
            if held is not None:
                got = register(uris[0], name, ALIAS, evidence=_evidence(held), fp="h", tags={})
                holder = got.version
                accuracy[holder] = held
            first_better = rng.random() < 0.5
            start_at = time.time() + 0.3
            for i, worker in enumerate(workers):
                acc = better if (i == 0) == first_better else worse
                worker.send(
                    {
                        "name": name,
                        "alias": ALIAS,
                        "val": _evidence(acc).val_metrics,
                        "baseline": BASELINE,
                        "data": DATA,
                        "fp": f"w{i}",
                        "start_at": start_at,
                    }
                )
                accuracy[f"w{i}"] = acc
            results = [worker.read("RESULT") for worker in workers]
            for i, result in enumerate(results):
                accuracy[result["version"]] = accuracy.pop(f"w{i}")
            # Both calls in flight at once: the round raced.
            overlapped += max(r["began"] for r in results) < min(r["ended"] for r in results)
            problems = _problems(client, name, accuracy, holder)
            if problems:
                failed[round_] = problems
        leftover = [m.name for m in client.search_registered_models() if ".lock" in m.name]
    finally:
        mlflow.set_tracking_uri(None)
    assert overlapped >= ROUNDS // 2, f"only {overlapped} of {ROUNDS} rounds raced"
    report = "\n".join(f"round {r}: {'; '.join(p)}" for r, p in failed.items())
    assert not failed, f"{len(failed)} of {ROUNDS} rounds went wrong:\n{report}"
    assert not leftover, f"lock models left behind: {leftover}"
