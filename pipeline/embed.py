"""DVC stage `embed`: dataset + splits -> data/features/<modality>.parquet + meta.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from multitune.config import load_params
from multitune.console import console, guarded
from multitune.data import read_splits
from multitune.embed.stage import embed


@guarded
def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    args = parser.parse_args()
    params = load_params(args.params)
    meta = embed(
        args.data / "dataset.parquet",
        read_splits(args.data / "splits.parquet"),
        params.data,
        args.data / "features",
    )
    console.print(f"[bold]embed[/] -> {args.data / 'features'}")
    for name, info in meta.items():
        console.print(f"  {name}: {info['encoder']}, dim {info['dim']}")


if __name__ == "__main__":
    main()
