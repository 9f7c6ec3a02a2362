"""The `multitune` command.

A subcommand imports the training library (torch) or the tracking package (MLflow) when it
runs, not at start-up: `multitune --help` and `multitune schema` need neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multitune.config import Params, load_params
from multitune.console import console, guarded


def _schema(args: argparse.Namespace) -> None:
    json.dump(Params.model_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _train(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    from multitune.training.command import train_command  # start-up time (module doc)

    train_command(params, out=args.out)


def _server(args: argparse.Namespace) -> None:
    from multitune.tracking.server import ServerSpec, serve  # start-up time (module doc)

    spec = ServerSpec(
        backend_store_uri=args.backend_store_uri,
        artifacts_destination=args.artifacts_destination,
        host=args.host,
        port=args.port,
        workers=args.workers,
        auth=args.auth,
        auth_db_uri=args.auth_db_uri,
        default_permission=args.default_permission,
    )
    sys.exit(serve(spec, Path.cwd()))


def _ui(args: argparse.Namespace) -> None:
    # Start-up time (module doc).
    from multitune.tracking import configured_uri, workspace_root
    from multitune.tracking.server import serve, ui_spec

    params = load_params(args.params)
    uri, _ = configured_uri(params.mlflow)  # MLFLOW_TRACKING_URI wins, as for the stages
    spec = ui_spec(uri, host=args.host, port=args.port)
    if spec is None:
        console.print(f"runs are tracked by {uri}: open it in a browser")
        return
    console.print(f"MLflow UI: {spec.url} (Ctrl-C stops it)")
    sys.exit(serve(spec, workspace_root(Path(args.params).resolve().parent)))


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

    p = sub.add_parser("server", help="run an MLflow tracking server (SQLite or PostgreSQL)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    p.add_argument(
        "--backend-store-uri",
        default="sqlite:///mlflow.db",
        help="sqlite:///<file> or postgresql://user@host:port/db (default: %(default)s)",
    )
    p.add_argument(
        "--artifacts-destination",
        default="mlartifacts",
        help="artifact root the server proxies: a directory or s3://... (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument(
        "--auth",
        action="store_true",
        help="MLflow's basic-auth app; admin from MLFLOW_TRACKING_USERNAME/PASSWORD",
    )
    p.add_argument("--auth-db-uri", default=None, help="the auth app's user store")
    p.add_argument(
        "--default-permission",
        default="READ",
        choices=["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"],
        help="what users may do where nobody granted them more (default: %(default)s)",
    )
    p.set_defaults(func=_server)

    p = sub.add_parser("ui", help="open MLflow's UI on the project's tracking store")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    p.set_defaults(func=_ui)
    return parser


@guarded
def main(argv: list[str] | None = None) -> None:
    """Entry point of the `multitune` console script."""
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
