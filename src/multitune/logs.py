"""What a stage prints: the project's own lines, and other libraries' only when asked.

Every entry point (`multitune.console.guarded`) calls `configure` first. Unless
`MULTITUNE_LOG_LEVEL` is set, other libraries' chatter is left out of the stage's log:

* Hugging Face progress bars (transformers' "Loading weights: 100%|…| 103/103" for each
  model loaded, hub downloads);
* MLflow's INFO lines ("Creating initial MLflow database tables…", "Updating database
  tables", alembic's migrations), and what it prints when a model is registered
  (`multitune.tracking.registry` says that in its own line);
* the traceback MLflow logs at ERROR for a database error it then raises (a full disk's
  "database or disk is full"): the stage reports that exception itself, in one line when it
  is a fault a user meets (`multitune.console.guarded`), with its traceback otherwise;
* Ray's "Token authentication is enabled for this Ray cluster…". Ray says it only of a
  cluster on this machine: the stage's own loopback Ray (`sweep.ray_address: null`), or one
  that `auto` found. Token authentication stays on, as Ray's default;
* Tune's "The `callbacks.on_step_end` operation took 1.065 s, which may be a performance
  bottleneck": only a step of Tune's loop that takes a minute is said.

The project's own lines (progress, verdicts, warnings) and the libraries' other warnings
and errors stay. `MULTITUNE_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR` silences none of the above
and sets the level of the loggers, the project's and the libraries' (progress bars show at
DEBUG and INFO; Ray's driver logger is set to WARNING by `ray.init`, see
`multitune.tuning.cluster`). A setting is made through environment variables where a
library reads one (`QUIET_ENV`, `level_env`), and only where the user has not set it: one
can be set alone, and the stage's worker processes (the process pool, a local Ray) inherit
them.
"""

from __future__ import annotations

import logging
import os
import sys

from multitune.errors import UserError

ENV = "MULTITUNE_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMAT = "%(levelname)s %(name)s: %(message)s"

QUIET_ENV: dict[str, str] = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # read by huggingface_hub and transformers
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # MLflow's own loggers (alembic follows)
    "TUNE_WARN_THRESHOLD_S": "60",  # Tune's "operation took … s" warning
}
"""The environment of a quiet stage (and of the processes it starts)."""

_MLFLOW_RAISES = "mlflow.store.db.utils"
"""MLflow's logger that logs a database error at ERROR, traceback and all, then raises it."""
_RAY_TOKEN = "ray._private.authentication.authentication_token_setup"
_RAY_TOKEN_ENABLED = "Token authentication is enabled for this Ray cluster"


def level() -> str | None:
    """The level `MULTITUNE_LOG_LEVEL` asks for (upper case), or None: a quiet stage.

    Raises:
        UserError: it is set to something that is not a level.
    """
    value = os.environ.get(ENV, "").strip().upper()
    if not value:
        return None
    if value not in LEVELS:
        raise UserError(
            f"{ENV}: {os.environ[ENV]!r} is not a log level; set {', '.join(LEVELS)}, or "
            "unset it for the stage's own lines only"
        )
    return value


def quiet() -> bool:
    """Whether other libraries' chatter is left out (`MULTITUNE_LOG_LEVEL` unset or not a
    level: only an entry point refuses a wrong value)."""
    try:
        return level() is None
    except UserError:
        return True


def level_env(value: str) -> dict[str, str]:
    """The environment of a stage run at log level `value`."""
    env = {"MLFLOW_LOGGING_LEVEL": value, "TRANSFORMERS_VERBOSITY": value.lower()}
    if value not in ("DEBUG", "INFO"):
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    return env


def configure() -> None:
    """Set up the process's logging as the module docstring says (called by `guarded`).

    Raises:
        UserError: `MULTITUNE_LOG_LEVEL` is not a log level.
    """
    value = level()
    for key, setting in (QUIET_ENV if value is None else level_env(value)).items():
        os.environ.setdefault(key, setting)
    logging.basicConfig(level=value or logging.WARNING, format=FORMAT)
    _imported_already(value)
    if value is None:
        _add_filter(_MLFLOW_RAISES, _Raised())
        _add_filter(_RAY_TOKEN, _OwnRayToken())


def _imported_already(value: str | None) -> None:
    """The settings above for libraries that the entry point imported before `configure`
    ran: they read their environment variables at import."""
    if "mlflow" in sys.modules:
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    if value is not None:
        for name in ("ray", "transformers", "sentence_transformers"):
            if name in sys.modules:
                logging.getLogger(name).setLevel(value)
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1":
        # Only those imported already: importing them here would cost the start-up it spares.
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()


def _add_filter(name: str, new: logging.Filter) -> None:
    """Add `new` to logger `name`, once (`configure` may run again in one process)."""
    log = logging.getLogger(name)
    if not any(type(f) is type(new) for f in log.filters):
        log.addFilter(new)


class _Raised(logging.Filter):
    """Drops MLflow's records of an exception that it raises right after logging it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


class _OwnRayToken(logging.Filter):
    """Drops Ray's note that it enabled token authentication for a cluster on this machine."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_RAY_TOKEN_ENABLED)
