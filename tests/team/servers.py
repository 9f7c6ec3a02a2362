"""Real servers for the team-scale tests: PostgreSQL, `multitune server`, a Ray cluster.

Each one binds a loopback address, is stopped by the PID the test started (and the PIDs of
its descendants, recorded while it ran), and is checked to leave no process behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

MULTITUNE = str(Path(sys.executable).with_name("multitune"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at `host` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen[bytes], tracked: set[int], sig: int = signal.SIGTERM) -> list[int]:
    """Stop `proc` by its PID, then whatever of `tracked` is left; return the leftovers.

    A polite signal first, SIGKILL after 20 s; the leftovers (descendants still alive after
    their parent stopped) are killed by PID too, and returned so the test can fail on them.
    """
    tracked = tracked | descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in tracked) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in tracked if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers (any HTTP status); fail if `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.3)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if isinstance(found, list):
        return found[-1] if found else None
    return found


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields a `postgresql://` URI.

    Root may not run postgres: as root the cluster belongs to `nobody`. The server is the
    postmaster started here (no pg_ctl), stopped by its PID with a fast shutdown.
    """
    initdb, server = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or server is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`)")
    as_root = os.geteuid() == 0
    user = {"user": "nobody", "group": "nogroup", "extra_groups": []} if as_root else {}
    home = Path(tempfile.mkdtemp(prefix="multitune-pg-"))
    if as_root:
        shutil.chown(home, "nobody", "nogroup")
    data = home / "data"
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=home,
        **user,  # type: ignore[arg-type]
    )
    port = free_port()
    proc = subprocess.Popen(
        [server, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=(home / "postgres.log").open("wb"),
        cwd=home,
        start_new_session=True,
        **user,  # type: ignore[arg-type]
    )
    tracked: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, (home / "postgres.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        createdb = _pg_bin("createdb") or "createdb"
        subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
        )
        tracked = descendants(proc.pid)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        left = stop(proc, tracked, signal.SIGINT)  # SIGINT: postgres' fast shutdown
        shutil.rmtree(home, ignore_errors=True)
        assert not left, f"PostgreSQL left processes {left}"


@contextlib.contextmanager
def mlflow_server(
    root: Path,
    backend: str,
    *,
    auth: bool = False,
    env: Mapping[str, str] | None = None,
    command: str = "server",
    args: tuple[str, ...] = (),
) -> Iterator[str]:
    """`multitune server` (or `ui`) on 127.0.0.1 in `root`; yields its URL."""
    port = free_port()
    argv = [MULTITUNE, command, "--port", str(port)]
    if command == "server":
        argv += ["--backend-store-uri", backend, "--workers", "1"]
        argv += ["--auth"] if auth else []
    argv += list(args)
    log = root / f"{command}-{port}.log"
    proc = subprocess.Popen(
        argv,
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    tracked: set[int] = set()
    try:
        try:
            wait_http(url + "/health", 90, proc)
        except (RuntimeError, TimeoutError) as err:
            raise AssertionError(f"{err}\n{log.read_text()[-3000:]}") from None
        tracked = descendants(proc.pid)
        yield url
    finally:
        left = stop(proc, tracked)
        assert not left, f"multitune {command} left processes {left}"
        with contextlib.suppress(urllib.error.URLError, OSError, TimeoutError):
            urllib.request.urlopen(url + "/health", timeout=2)
            raise AssertionError(f"{url} still answers after the server stopped")


RAY = str(Path(sys.executable).with_name("ray"))
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


class RayCluster:
    """A Ray cluster on loopback: the head's and the worker's `ray start --block` processes.

    Attributes:
        address: The head's GCS address (`sweep.ray_address`).
        env: The environment every client needs (token auth on, telemetry off).
        head: The head's `ray start` process.
        worker: The worker's `ray start` process (None for a head alone).
    """

    def __init__(self, address: str, env: dict[str, str]) -> None:
        self.address = address
        self.env = env
        self.head: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.tracked: set[int] = set()

    def kill_worker(self) -> list[int]:
        """SIGKILL the worker node: its `ray start` and every process below it, by PID."""
        assert self.worker is not None
        pids = sorted(descendants(self.worker.pid) | {self.worker.pid})
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait()
        return pids


def _ray_node_argv(ip: str, temp_dir: Path) -> list[str]:
    ports = [free_port(ip) for _ in range(4)]
    return [
        RAY,
        "start",
        "--block",
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        "--num-gpus=0",
        f"--memory={768 * 1024**2}",
        f"--object-store-memory={96 * 1024**2}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={ports[0]}",
        f"--metrics-export-port={ports[1]}",
        f"--runtime-env-agent-port={ports[2]}",
        f"--dashboard-agent-grpc-port={ports[3]}",
    ]


@contextlib.contextmanager
def ray_cluster(log_dir: Path, workers: int = 1) -> Iterator[RayCluster]:
    """Head on 127.0.0.2 and (`workers=1`) a worker on 127.0.0.3, 1 CPU each, token auth on.

    The token is made here and handed over in `RAY_AUTH_TOKEN` (nothing written to ~/.ray).
    Node-death detection is shortened so a killed node is noticed within seconds. Ray's temp
    dir is `$RAY_TMPDIR/ray`, with `RAY_TMPDIR` in `env`: a process with that environment
    finds the head as one finds a `ray start --head` of a workstation in /tmp/ray (its
    `ray_current_cluster` file), yet no other process on the machine does.
    """
    if shutil.which(RAY) is None and not Path(RAY).exists():
        pytest.skip("the `ray` command is not installed")
    root = Path(tempfile.mkdtemp(prefix="mtray-"))  # short: Ray's unix sockets live here
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": str(root),
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    temp = root / "ray"
    port = free_port(HEAD_IP)
    cluster = RayCluster(f"{HEAD_IP}:{port}", env)
    try:
        head_argv = [*_ray_node_argv(HEAD_IP, temp), "--head", f"--port={port}"]
        head_argv.append("--include-dashboard=false")
        cluster.head = subprocess.Popen(
            head_argv,
            env=env,
            stdout=(log_dir / "ray-head.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HEAD_IP, port), 1):
                break
            assert cluster.head.poll() is None, (log_dir / "ray-head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        if workers:
            cluster.worker = subprocess.Popen(
                [*_ray_node_argv(WORKER_IP, temp), f"--address={cluster.address}"],
                env=env,
                stdout=(log_dir / "ray-worker.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_nodes = (
            "import ray, time\n"
            f"ray.init(address={cluster.address!r}, log_to_driver=False)\n"
            "deadline = time.monotonic() + 90\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {1 + bool(workers)}:\n"
            "    assert time.monotonic() < deadline, 'the worker did not join'\n"
            "    time.sleep(0.5)\n"
        )
        subprocess.run([sys.executable, "-c", wait_nodes], env=env, check=True, timeout=150)
        if cluster.worker is not None:
            assert cluster.worker.poll() is None, (log_dir / "ray-worker.log").read_text()[-3000:]
        cluster.tracked = descendants(cluster.head.pid)
        if cluster.worker is not None:
            cluster.tracked |= descendants(cluster.worker.pid)
        yield cluster
    finally:
        left: list[int] = []
        for proc in (cluster.worker, cluster.head):
            if proc is not None:
                left += stop(proc, cluster.tracked if proc is cluster.head else set())
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"the Ray cluster left processes {left}"
