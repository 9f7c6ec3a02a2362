"""DVC stage `baselines`: features + splits -> results/baselines/ (a tuned model per task)."""

from __future__ import annotations

import argparse
from pathlib import Path

from multitune.config import load_params
from multitune.console import console, guarded


@guarded
def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("results/baselines"))
    args = parser.parse_args()
    params = load_params(args.params)
    from multitune.tuning import run_baselines

    outcome = run_baselines(
        params, data_dir=args.data, out_dir=args.out, project_root=args.params.parent
    )
    resumed = " (resumed)" if outcome.resumed else ""
    console.print(f"[bold]baselines[/] {outcome.trials} trials{resumed} -> {args.out}/")
    for task, value in outcome.best.items():
        console.print(f"  {task}: best validation {value:.4f}")


if __name__ == "__main__":
    main()
