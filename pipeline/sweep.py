"""DVC stage `sweep`: the multi-task search -> results/sweep/trials.parquet and best.yaml."""

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
    parser.add_argument("--baselines", type=Path, default=Path("results/baselines"))
    parser.add_argument("--out", type=Path, default=Path("results/sweep"))
    args = parser.parse_args()
    params = load_params(args.params)
    from multitune.tuning import run_sweep

    outcome = run_sweep(
        params,
        data_dir=args.data,
        baselines_dir=args.baselines,
        out_dir=args.out,
        project_root=args.params.parent,
    )
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.statuses.items()))
    resumed = " (resumed)" if outcome.resumed else ""
    console.print(
        f"[bold]sweep[/] {outcome.trials} trials{resumed} ({counts}); best {outcome.best_trial}: "
        f"validation Delta-m {100 * outcome.best_delta_m:+.2f}% -> {args.out}/"
    )


if __name__ == "__main__":
    main()
