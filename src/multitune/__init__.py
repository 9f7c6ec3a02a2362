"""multitune: does one multi-task model beat one model per task? Measured, in one command."""

from __future__ import annotations

from multitune._env import apply_defaults

# Telemetry off and the bundled encoder offline for every process that imports the package
# (the CLI, DVC stage scripts, Ray workers), without the user exporting anything. These are
# environment defaults only: a user's own setting wins.
apply_defaults()

__version__ = "0.1.0"
