"""What a stage script's output must not hold: other libraries' lines (`multitune.logs`)."""

from __future__ import annotations

NOISE = (
    "Loading weights",  # transformers, once per model loaded
    "mlflow",  # "INFO mlflow.store.db.utils: Creating initial MLflow database tables..."
    "database tables",
    "alembic",
    "Token authentication is enabled",  # Ray, for the stage's own loopback cluster
    "operation took",  # Tune's "The `callbacks.on_step_end` operation took 1.065 s"
    "Traceback",
)


def noise(stderr: str) -> list[str]:
    """The lines of `stderr` from other libraries."""
    return [line for line in stderr.splitlines() if any(n in line for n in NOISE)]
