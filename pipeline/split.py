"""DVC stage `split`: data/dataset.parquet -> data/splits.parquet (id, split)."""

from __future__ import annotations

import argparse
from pathlib import Path

from multitune.config import load_params
from multitune.console import console, guarded
from multitune.data import write_parquet
from multitune.data.split import split_file


@guarded
def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args()
    result = split_file(args.data / "dataset.parquet", load_params(args.params))
    write_parquet(args.data / "splits.parquet", result.frame)
    console.print(f"[bold]split[/] -> {args.data / 'splits.parquet'}")
    for line in result.summary():
        console.print(f"  {line}")


if __name__ == "__main__":
    main()
