"""Ray: start a local one or attach to a cluster, and check it can run the trials asked for.

A local Ray listens on 127.0.0.1 only. A cluster address where no Ray answers fails within
seconds, naming the address, instead of `ray.init` waiting on it without end.

Each check fails at once with a message that says what to change, instead of leaving trials
pending forever: GPUs no node has, a trial larger than any node, a SQLite tracking store or a
non-shared `storage_path` with several nodes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray
from ray._private import ray_constants, services
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from multitune.config.tuning import ResourcesConfig
from multitune.errors import UserError

logger = logging.getLogger(__name__)

MIN_OBJECT_STORE = 128 * 1024**2
MAX_OBJECT_STORE = 4 * 1024**3
LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_S = 5.0

_INIT_KWARGS: dict[str, object] = {
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": logging.WARNING,
    "configure_logging": True,
}
# The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers with its own
# SETTINGS frame (frame type, byte 3 of the 9-byte frame header, is 0x4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
_HTTP2_SETTINGS = 0x4


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
    """The cluster to attach to: `sweep.ray_address`, else RAY_ADDRESS, else None (a Ray of
    the stage's own: never one found on the machine, which `auto` names)."""
    return configured or os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def ray_cluster(
    address: str | None, object_store_bytes: int | None = None
) -> Iterator[ClusterInfo]:
    """Attach to `address` or start a local Ray (dashboard off); shut down what was started.

    `address` None (and no RAY_ADDRESS) or "local" starts a Ray of the stage's own that
    listens on 127.0.0.1 only, even where a bare `ray.init()` would join a cluster running
    on the machine (a `ray start --head`, found by its `ray_current_cluster` file); "auto"
    attaches to that cluster. An already initialized Ray (a test's, a notebook's) is used
    as it is.

    Raises:
        UserError: the cluster at `address` cannot be reached, or a local Ray cannot start.
    """
    started = False
    if not ray.is_initialized():
        address = ray_address(address)
        if address is None or address == "local":
            _start_local(object_store_bytes)
        else:
            _attach(address)
        started = True
    try:
        yield describe()
    finally:
        if started:
            ray.shutdown()


def _start_local(object_store_bytes: int | None) -> None:
    """Start a one-node Ray whose every process listens on 127.0.0.1 only.

    Ray's gRPC servers (GCS, raylet, every worker) bind the loopback address when the node
    IP is 127.0.0.1 and the wildcard address otherwise; its agents bind the node IP. But
    `ray.init` rewrites a loopback `_node_ip_address` to the machine's external IP unless
    clusters are off, as they are by default on macOS and Windows to keep firewall prompts
    away (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0). Ray reads that variable once, at import, so
    its constant is switched for the start alone; the processes started get the node IP on
    their command lines and need nothing from the environment. Token auth is untouched.
    """
    kwargs = dict(_INIT_KWARGS)
    if object_store_bytes is not None:
        kwargs["object_store_memory"] = object_store_bytes
    clusters = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # address="local": a Ray of the stage's own, never one already running here (a
        # `ray start --head`, or what a killed stage left behind).
        ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)  # type: ignore[arg-type]
    except (ConnectionError, RuntimeError, ValueError, RayError) as err:
        raise UserError(f"cannot start a local Ray: {_one_line(err)}") from None
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = clusters


def _attach(address: str) -> None:
    """`ray.init(address)`, after a probe that a Ray cluster answers where it will dial.

    Without the probe, `ray.init` waits without end (retrying, silent) for a GCS that is
    not there, or that is some other server.
    """
    source = "RAY_ADDRESS" if address == os.environ.get("RAY_ADDRESS") else "sweep.ray_address"
    client = address.startswith("ray://")
    dialed = address.removeprefix("ray://") if client else _canonical(address)
    target = _host_port(dialed) if dialed else None
    if target is not None:
        problem = _probe(*target)
        if problem:
            via = f", dialed as {dialed}" if dialed != address.removeprefix("ray://") else ""
            port = (
                "its Ray Client port (`--ray-client-server-port`, 10001 by default)"
                if client
                else "its GCS port (`ray start --head --port`, 6379 by default)"
            )
            host = (_host_port(address.removeprefix("ray://")) or target)[0]
            raise UserError(
                f"cannot reach the Ray cluster at {address} (from {source}{via}): {problem}; "
                f"check that `ray start --head` runs on {host} and that {target[1]} is "
                f"{port}, or fix {source}"
            )
    try:
        ray.init(address=address, **_INIT_KWARGS)  # type: ignore[arg-type]
    except (ConnectionError, RuntimeError, ValueError, RayError) as err:
        raise UserError(
            f"cannot attach to the Ray cluster at {address} (from {source}): {_one_line(err)}; "
            "check that this machine is a node of that cluster (`ray start --address`; else "
            "use ray://host:10001), runs its Ray version, and has its token in RAY_AUTH_TOKEN"
        ) from None


def _canonical(address: str) -> str | None:
    """The host:port `ray.init` dials for `address`: "auto" looked up, loopback rewritten."""
    try:
        canonical: str | None = services.canonicalize_bootstrap_address(address)
    except (OSError, ValueError):
        return None  # "auto" with no Ray found, a malformed address: ray.init says so at once
    return canonical


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _probe(host: str, port: int) -> str | None:
    """None when a gRPC server answers at host:port (as Ray's GCS does), else what is wrong.

    A TCP connect alone is not enough: `ray.init` also waits without end on a port where some
    other server listens. So the probe opens an HTTP/2 connection (RFC 9113, section 3.4),
    which every gRPC server answers with a SETTINGS frame. With RAY_USE_TLS on, the GCS
    speaks TLS first and the probe stops at the TCP connect.
    """
    try:
        conn = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    except socket.gaierror:
        return f"unknown host {host}"
    except OSError as err:
        return (err.strerror or str(err)).lower()
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return None
        header = b""
        with contextlib.suppress(OSError):  # a reset or a timeout: no answer, as below
            conn.sendall(_HTTP2_PREFACE)
            while len(header) < 9 and (chunk := conn.recv(9 - len(header))):
                header += chunk
    if len(header) < 9 or header[3] != _HTTP2_SETTINGS:
        return "something listens there but it is not a Ray cluster (no gRPC answer)"
    return None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()).rstrip(".") or type(err).__name__


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
