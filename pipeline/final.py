"""DVC stage `final`: retrain the best configs over seeds, write reports/, register the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from multitune.config import load_params
from multitune.console import console, guarded
from multitune.final import FinalPaths, run_final


@guarded
def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    paths = FinalPaths.under(args.params.resolve().parent)
    outcome = run_final(load_params(args.params), paths)
    console.print(f"[bold]final[/] -> {paths.reports / 'comparison.html'}")
    console.print(outcome.summary, markup=False, soft_wrap=True)
    reg = outcome.registration
    if reg is not None:
        console.print(
            f"registry: {reg.name} v{reg.version} ({reg.outcome}); "
            f"{reg.alias} -> v{reg.holder_version}",
            markup=False,
        )


if __name__ == "__main__":
    main()
