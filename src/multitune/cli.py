"""The `multitune` command."""

from __future__ import annotations

import argparse
import json
import sys

from multitune.console import guarded


def _schema(args: argparse.Namespace) -> None:
    from multitune.config import Params

    json.dump(Params.model_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _train(args: argparse.Namespace) -> None:
    from multitune.config import load_params

    params = load_params(args.params)
    from multitune.training.command import train_command

    train_command(params, out=args.out)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="multitune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schema", help="print the JSON schema of params.yaml")
    p.set_defaults(func=_schema)

    p = sub.add_parser("train", help="train the configuration in params.yaml once")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", required=True, help="directory for metrics.json and the checkpoint")
    p.set_defaults(func=_train)
    return parser


@guarded
def main(argv: list[str] | None = None) -> None:
    """Entry point of the `multitune` console script."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
