"""Peak memory of each data stage and of `multitune train` on a table of precomputed vectors.

Generates N rows (default 1,000,000) with one D-wide float32 vector column (default 384, as a
sentence or audio embedding) and two tasks in a temporary folder, then runs the stages as DVC
does (`python pipeline/<stage>.py`, then `multitune train`, 2 epochs), each in its own process,
and then the baselines (one trial per task) and a sweep of 2 trials side by side, on Ray.
For each: wall time and peak resident memory above the import baseline (a process that only
imports the project's packages with torch, pandas and pyarrow), in units of the feature
matrix (N x D x 4 bytes); and the machine's memory in use at its peak above what it used
before the step (MemTotal - MemAvailable, sampled every 0.2 s): what counts for Ray's steps,
whose trials run in other processes and share the features through the object store. Then
the disk space of `data/`.

The peak is the kernel's high-water mark of that process (`wait4`'s `ru_maxrss`; the table
is generated in a child process, so that this one stays small). Run:
``python benchmarks/memory.py`` (``--rows``, ``--dim``, ``--keep`` to keep the folder,
``--no-ray`` to stop after `multitune train`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BATCH = 100_000
IMPORTS = "import torch, pandas, pyarrow, multitune.data, multitune.embed, multitune.training"


def write_table(path: Path, rows: int, dim: int) -> None:
    """The generated table, written batch by batch (labels depend on the vectors)."""
    rng = np.random.default_rng(0)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("vec", pa.list_(pa.float32(), dim)),
            ("genre", pa.string()),
            ("explicit", pa.string()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, BATCH):
            n = min(BATCH, rows - start)
            x = rng.normal(size=(n, dim)).astype(np.float32)
            genre = np.array(list("abcd"))[np.digitize(x[:, 0] + x[:, 1], [-1, 0, 1])]
            explicit = np.where(x[:, 2] > 0.5, "yes", "no")
            vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
            ids = pa.array([f"r{i}" for i in range(start, start + n)])
            writer.write_batch(
                pa.record_batch([ids, vec, pa.array(genre), pa.array(explicit)], schema=schema)
            )


def params(source: Path) -> dict:
    """A params.yaml for the generated table."""
    return {
        "data": {
            "source": str(source),
            "id_column": "id",
            "modalities": {"vec": {"column": "vec", "encoder": {"name": "precomputed"}}},
        },
        "tasks": [
            {"name": "genre", "type": "classification", "column": "genre"},
            {"name": "explicit", "type": "binary", "column": "explicit"},
        ],
        "train": {"epochs": 2, "patience": 2, "device": "cpu"},
        "baselines": {"num_samples": 1, "scheduler": {"name": "none"}},
        "sweep": {
            "num_samples": 2,
            "epochs": 2,
            "scheduler": {"name": "none"},
            "resources": {"cpu": 1, "gpu": 0},
            "space": {"lr": {"dist": "loguniform", "low": 3e-4, "high": 3e-3}},
        },
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "memory"},
    }


def machine_used() -> int:
    """Bytes of memory in use on the machine (MemTotal - MemAvailable)."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


def measured(argv: list[str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the process and peak machine memory above its level at the
    start (bytes) of one command, which must succeed."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    before, peak, done = machine_used(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], machine_used() - before)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-3000:])
            raise SystemExit(f"{' '.join(argv)} failed (exit {os.waitstatus_to_exitcode(status)})")
    return wall, usage.ru_maxrss * 1024, peak[0]  # Linux reports KiB


def disk_usage(directory: Path) -> int:
    """Bytes of the files under `directory`."""
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def main() -> None:
    """Generate the table, run and measure each step, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-ray", action="store_true", help="skip the baselines and sweep")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        write_table(args.generate, args.rows, args.dim)
        return
    work = Path(tempfile.mkdtemp(prefix="multitune-memory-"))
    try:
        source = work / "input" / "table.parquet"
        source.parent.mkdir()
        # Generated in a child process: a child's peak RSS counts the parent's memory at the
        # fork, so the parent stays small.
        gen = [sys.executable, __file__, "--generate", str(source), "--rows", str(args.rows)]
        measured([*gen, "--dim", str(args.dim)], work)
        (work / "params.yaml").write_text(yaml.safe_dump(params(source), sort_keys=False))
        matrix = args.rows * args.dim * 4
        _, base, _ = measured([sys.executable, "-c", IMPORTS], work)
        py = sys.executable
        steps = [
            ("ingest", [py, str(ROOT / "pipeline" / "ingest.py")]),
            ("split", [py, str(ROOT / "pipeline" / "split.py")]),
            ("embed", [py, str(ROOT / "pipeline" / "embed.py")]),
            ("multitune train (2 epochs)", [str(BIN / "multitune"), "train", "--out", "run"]),
        ]
        if not args.no_ray:
            steps += [
                ("baselines (1 trial a task)", [py, str(ROOT / "pipeline" / "baselines.py")]),
                ("sweep (2 trials side by side)", [py, str(ROOT / "pipeline" / "sweep.py")]),
            ]
        print(
            f"{args.rows:,} rows x {args.dim}-d float32: feature matrix "
            f"{matrix / 2**20:,.0f} MiB; import baseline {base / 2**20:,.0f} MiB peak RSS"
        )
        print(
            "| step | wall | peak RSS | above imports, in matrices | machine, in matrices |\n"
            "|---|---|---|---|---|"
        )
        for name, argv in steps:
            wall, peak, machine = measured(argv, work)
            above = (peak - base) / matrix
            print(
                f"| {name} | {wall:.0f} s | {peak / 2**30:.2f} GiB | {above:.1f}x "
                f"| {machine / matrix:.1f}x |",
                flush=True,
            )
        print(
            f"data/: {disk_usage(work / 'data') / 2**20:,.0f} MiB on disk "
            f"(source table {source.stat().st_size / 2**20:,.0f} MiB)"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
