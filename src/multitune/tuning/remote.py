"""The final stage's trainings as Ray tasks: on the cluster and GPUs the searches use.

`RayTrainings` is a training backend for `multitune.final.runs.fit_all`
(`training_backend`): each job is one Ray task with the resources a search trial of its side
takes (`baselines.resources` for a one-task job, `sweep.resources` otherwise, GPU fractions
included), and the features travel once through the object store, as the trials read them
(`TrainingData.__reduce__`). Every result comes back to the driver, which alone logs to
MLflow. A task lost with its node is retried by Ray elsewhere (`max_retries`): only the
trainings that were running there are redone, and the stage's run keys still let a killed
stage resume without retraining what finished.

The stage picks the backend (`final.backend`, `wants_ray`): `auto` (the default) and `ray`
train on Ray: the cluster `sweep.ray_address` (or RAY_ADDRESS) names, else a local Ray of the
stage's own. `processes` keeps the local process pool. Ray is the default because it was the
faster here too: on 2 cores `benchmarks/final.py` ran the whole stage in 0.44x the process
pool's time (its workers stay warm across the stage's phases, where the pool spawns and
loads torch for each), with the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import ray
import torch

from multitune.config import Params
from multitune.config.tuning import ResourcesConfig
from multitune.training import TrainingData
from multitune.tuning.cluster import check_resources, object_store_size, ray_cluster

RETRIES = 3


def _call(
    fn: Callable[[Any, TrainingData], Any], job: Any, data: TrainingData, threads: int
) -> tuple[Any, str]:
    torch.set_num_threads(max(1, threads))
    return fn(job, data), ray.util.get_node_ip_address()


@dataclass
class RayTrainings:
    """Runs `fn(job, data)` as Ray tasks (module doc); `__call__` yields results as they
    finish, each tagged with the node that trained it (`with_node`)."""

    fn: Callable[[Any, TrainingData], Any]
    resources: Callable[[Any], ResourcesConfig]
    with_node: Callable[[Any, str], Any] = lambda result, node: result
    threads: int | None = None
    slots: int = 1
    _refs: dict[int, Any] = field(default_factory=dict)

    def _data_ref(self, data: TrainingData) -> Any:
        key = id(data)
        if key not in self._refs:
            self._refs[key] = (ray.put(data.to("cpu")), data)  # keep `data` alive: ids stay
        return self._refs[key][0]

    def __call__(self, jobs: Sequence[Any], data: TrainingData) -> Iterator[tuple[Any, Any]]:
        remote = ray.remote(_call)
        ref = self._data_ref(data)
        pending: dict[Any, Any] = {}
        for job in jobs:
            res = self.resources(job)
            task = remote.options(
                num_cpus=res.cpu, num_gpus=res.gpu, max_retries=RETRIES, retry_exceptions=False
            )
            threads = self.threads if self.threads is not None else max(1, int(res.cpu))
            pending[task.remote(self.fn, job, ref, threads)] = job
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for d in done:
                    job = pending.pop(d)
                    result, node = ray.get(d)
                    yield job, self.with_node(result, node)
        finally:
            for d in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(d)


BackendName = Literal["auto", "processes", "ray"]


def wants_ray(choice: BackendName, params: Params) -> bool:
    """Whether the final stage trains on Ray: auto and ray do (module doc), processes not."""
    return choice != "processes"


@contextlib.contextmanager
def ray_trainings(
    params: Params,
    data: TrainingData,
    fn: Callable[[Any, TrainingData], Any],
    one_task: Callable[[Any], bool],
    with_node: Callable[[Any, str], Any],
) -> Iterator[RayTrainings]:
    """Attach to (or start) the Ray the searches use, for the block, and a backend on it.

    Raises:
        UserError: the cluster cannot be reached, or no node can host one training.
    """
    store = object_store_size(data.nbytes, params.sweep.object_store_mb)
    with ray_cluster(params.sweep.ray_address, store) as cluster:
        check_resources(cluster, params.baselines.resources, "baselines")
        check_resources(cluster, params.sweep.resources, "sweep")

        def resources(job: Any) -> ResourcesConfig:
            return params.baselines.resources if one_task(job) else params.sweep.resources

        slots = max(1, cluster.slots(params.sweep.resources))
        yield RayTrainings(fn, resources, with_node, params.final.threads, slots)
