"""Process-wide environment defaults: no telemetry, no hub downloads."""

from __future__ import annotations

import os

DEFAULTS: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_defaults() -> None:
    """Set each default that the user has not set themselves."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
