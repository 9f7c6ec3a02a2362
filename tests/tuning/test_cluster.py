"""`ray_cluster`: a local Ray that only this machine can reach; a missing cluster fails fast.

Each check runs `ray_cluster` in a fresh Python process: the local-Ray check needs a Ray of
its own (not a test's shared `ray.init`), and a regression to a hanging `ray.init` ends at
the subprocess timeout instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("psutil")

# Starts the local Ray, runs tasks so that workers exist, then lists the listening TCP
# sockets of the driver and of every process below it (GCS, raylet, agents, workers).
_LISTENERS = """
import json, os, psutil, ray
from multitune.tuning.cluster import ray_cluster

@ray.remote
def pid():
    return os.getpid()

with ray_cluster(None, 128 * 1024**2) as cluster:
    workers = set(ray.get([pid.remote() for _ in range(4)]))
    driver = psutil.Process()
    listeners = []
    for proc in [driver, *driver.children(recursive=True)]:
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    listeners.append([proc.pid, name, conn.laddr.ip, conn.laddr.port])
        except psutil.Error:
            pass
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    print("RESULT " + json.dumps({
        "listeners": listeners,
        "workers": sorted(workers),
        "nodes": [n.address for n in cluster.nodes],
        "gcs": cluster.address,
        "token_auth": is_token_auth_enabled(),
    }))
"""

_ATTACH = """
import sys, time
from multitune.errors import UserError
from multitune.tuning.cluster import ray_cluster

start = time.monotonic()
try:
    with ray_cluster(sys.argv[1]):
        print("ATTACHED")
except UserError as err:
    print(f"USERERROR {time.monotonic() - start:.2f} {err}")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", **extra}


def _attach(address: str, **env: str) -> tuple[float, str]:
    """Seconds `ray_cluster(address)` took to fail, and its message (one line)."""
    proc = subprocess.run(
        [sys.executable, "-c", _ATTACH, address],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = [line for line in proc.stdout.splitlines() if line.startswith("USERERROR ")]
    assert out, f"no UserError for {address!r}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    _, seconds, message = out[0].split(" ", 2)
    return float(seconds), message


def _is_loopback_v4(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, gRPC's dual-stack socket
    return str(address) == "127.0.0.1"


def test_the_local_ray_listens_on_127_0_0_1_only() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _LISTENERS],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[0].removeprefix("RESULT "))
    listeners = result["listeners"]
    names = {name for _, name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners
    assert set(result["workers"]) & {pid for pid, _, _, _ in listeners}, listeners
    offenders = [
        f"{name} (pid {pid}) on {f'[{ip}]' if ':' in ip else ip}:{port}"
        for pid, name, ip, port in listeners
        if not _is_loopback_v4(ip)
    ]
    assert not offenders, "listening beyond 127.0.0.1: " + "; ".join(offenders)
    assert result["nodes"] == ["127.0.0.1"]
    assert result["gcs"].startswith("127.0.0.1:")
    assert result["token_auth"], "token authentication must stay on"


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_cluster_fails_fast_naming_the_address(address: str) -> None:
    seconds, message = _attach(address)
    assert seconds < 30
    assert address in message
    assert "sweep.ray_address" in message
    assert "ray start --head" in message


def test_an_unreachable_ray_address_from_the_environment_says_so() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _ATTACH.replace("sys.argv[1]", "None")],
        env={**_env(), "RAY_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert "USERERROR" in proc.stdout, proc.stderr[-3000:]
    assert "127.0.0.1:1" in proc.stdout
    assert "RAY_ADDRESS" in proc.stdout


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.2 that accepts connections and never answers: not Ray.

    Not 127.0.0.1: Ray dials a 127.0.0.1 address on the machine's external IP instead.
    """
    server = socket.create_server(("127.0.0.2", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_a_port_where_something_else_listens_fails_fast() -> None:
    with _silent_server() as port:
        start = time.monotonic()
        seconds, message = _attach(f"127.0.0.2:{port}")
        assert time.monotonic() - start < 30
    assert seconds < 30
    assert f"127.0.0.2:{port}" in message
    assert "not a Ray" in message
