"""Ray: start a local one or attach to a cluster, and check it can run the trials asked for.

Each check fails at once with a message that says what to change, instead of leaving trials
pending forever: GPUs no node has, a trial larger than any node, a SQLite tracking store or a
non-shared `storage_path` with several nodes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from multitune.config.tuning import ResourcesConfig
from multitune.errors import UserError

logger = logging.getLogger(__name__)

MIN_OBJECT_STORE = 128 * 1024**2
MAX_OBJECT_STORE = 4 * 1024**3


@dataclass(frozen=True)
class NodeInfo:
    """One alive node's resources."""

    node_id: str
    address: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ClusterInfo:
    """The Ray cluster the search runs on."""

    nodes: list[NodeInfo]
    address: str | None

    @property
    def multi_node(self) -> bool:
        """Whether trials may run on another machine than the driver."""
        return len(self.nodes) > 1

    @property
    def gpus(self) -> float:
        """GPUs over all nodes."""
        return sum(n.gpus for n in self.nodes)

    def slots(self, resources: ResourcesConfig) -> int:
        """How many trials fit side by side, node by node."""
        total = 0
        for node in self.nodes:
            fit = math.floor(node.cpus / resources.cpu + 1e-9)
            if resources.gpu > 0:
                fit = min(fit, math.floor(node.gpus / resources.gpu + 1e-9))
            total += fit
        return total


def ray_address(configured: str | None) -> str | None:
    """The cluster to attach to: `sweep.ray_address`, else RAY_ADDRESS, else None (local)."""
    return configured or os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def ray_cluster(
    address: str | None, object_store_bytes: int | None = None
) -> Iterator[ClusterInfo]:
    """Attach to `address` or start a local Ray (dashboard off); shut down what was started.

    An already initialized Ray (a test's, a notebook's) is used as it is.

    Raises:
        UserError: the cluster at `address` cannot be reached.
    """
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, object] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if address:
            kwargs["address"] = address
        elif object_store_bytes is not None:
            kwargs["object_store_memory"] = object_store_bytes
        try:
            ray.init(**kwargs)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise UserError(f"cannot attach to the Ray cluster at {address!r}: {err}") from None
        started = True
    try:
        yield describe()
    finally:
        if started:
            ray.shutdown()


def describe() -> ClusterInfo:
    """The alive nodes of the connected Ray cluster."""
    nodes = [
        NodeInfo(
            node_id=n["NodeID"],
            address=n.get("NodeManagerAddress", "?"),
            cpus=float(n["Resources"].get("CPU", 0.0)),
            gpus=float(n["Resources"].get("GPU", 0.0)),
        )
        for n in ray.nodes()
        if n.get("Alive")
    ]
    return ClusterInfo(nodes=nodes, address=ray.get_runtime_context().gcs_address)


def object_store_size(data_bytes: int, configured_mb: int | None) -> int:
    """Object store of a local Ray: configured, else room for the features a few times."""
    if configured_mb is not None:
        return configured_mb * 1024**2
    return int(min(MAX_OBJECT_STORE, max(MIN_OBJECT_STORE, 4 * data_bytes)))


def check_resources(cluster: ClusterInfo, resources: ResourcesConfig, key: str) -> None:
    """Fail at once when no node can host one trial.

    Raises:
        UserError: GPUs asked for on a cluster without (enough), or more CPUs than a node has.
    """
    if resources.gpu > 0 and cluster.gpus == 0:
        raise UserError(
            f"{key}.resources.gpu is {resources.gpu:g} but no node of the Ray cluster has a GPU "
            f"({len(cluster.nodes)} node(s), {sum(n.cpus for n in cluster.nodes):g} CPUs); set "
            f"{key}.resources.gpu: 0 to train on CPUs, or attach to a cluster with GPUs"
        )
    if resources.gpu > 0 and max(n.gpus for n in cluster.nodes) < resources.gpu:
        raise UserError(
            f"{key}.resources.gpu is {resources.gpu:g} but no node has that many GPUs (most "
            f"on one node: {max(n.gpus for n in cluster.nodes):g}); lower it (fractions share "
            "a GPU)"
        )
    if max(n.cpus for n in cluster.nodes) < resources.cpu:
        raise UserError(
            f"{key}.resources.cpu is {resources.cpu:g} but no node has that many CPUs (most on "
            f"one node: {max(n.cpus for n in cluster.nodes):g}); lower it"
        )


def check_multi_node(cluster: ClusterInfo, tracking_uri: str, storage_path: str) -> None:
    """With several nodes: a tracking server, and experiment storage every node sees.

    Raises:
        UserError: a SQLite tracking URI, or a `storage_path` some node cannot see.
    """
    if not cluster.multi_node:
        return
    if tracking_uri.startswith("sqlite:"):
        raise UserError(
            f"the Ray cluster has {len(cluster.nodes)} nodes but mlflow.tracking_uri is a local "
            f"SQLite file ({tracking_uri}), which only this machine sees; run an MLflow server "
            "(`mlflow server --backend-store-uri sqlite:///mlflow.db --host 0.0.0.0`) and set "
            "mlflow.tracking_uri to its http:// URI"
        )
    if "://" in storage_path:
        return  # s3://, gs://, ...: every node reaches it the same way
    blind = _nodes_not_seeing(cluster, Path(storage_path))
    if blind:
        raise UserError(
            f"sweep.storage_path {storage_path} is not shared: node(s) "
            f"{', '.join(blind)} cannot see it. With several nodes, Tune keeps experiment "
            "state and checkpoints there and trials resume on any node: use a directory "
            "mounted at the same path on every node (NFS) or a URI such as s3://bucket/path"
        )


def _nodes_not_seeing(cluster: ClusterInfo, directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".multitune-probe-{uuid.uuid4().hex}"
    probe.write_text("probe")
    try:

        @ray.remote(num_cpus=0)
        def sees(path: str) -> bool:
            return Path(path).exists()

        refs = {
            node.address: sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
            ).remote(str(probe))
            for node in cluster.nodes
        }
        return [address for address, ref in refs.items() if not ray.get(ref, timeout=60)]
    finally:
        probe.unlink(missing_ok=True)
