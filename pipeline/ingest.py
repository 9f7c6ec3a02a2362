"""DVC stage `ingest`: data.source -> data/dataset.parquet + data/tasks.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from multitune.config import load_params
from multitune.console import console, guarded
from multitune.data import write_tasks
from multitune.data.ingest import ingest


@guarded
def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data"))
    args = parser.parse_args()
    result = ingest(load_params(args.params), root=args.params.resolve().parent)
    result.write(args.out / "dataset.parquet")
    write_tasks(args.out / "tasks.json", result.tasks)
    console.print(f"[bold]ingest[/] -> {args.out / 'dataset.parquet'}")
    for line in result.summary():
        console.print(f"  {line}")


if __name__ == "__main__":
    main()
