"""Backups of Tune's experiment state, so a driver killed mid-write still resumes.

Tune snapshots its experiment state (trial list, searcher) by copying files into the storage
path, in place: a driver killed during the copy leaves a truncated file that cannot be
restored. While the sweep runs, a callback keeps a last known-good copy of each state file
beside it (`<name>.bak`, replaced atomically); before resuming, a truncated file is put back
from its backup.

Tune also deletes a trial's checkpoints beyond `num_to_keep` as new ones arrive, and records
that in its next snapshot a moment later: a driver killed in between leaves a snapshot that
points at a deleted checkpoint, and Tune refuses to restore that trial. Before resuming, such
a checkpoint is put back from the newest checkpoint left in its trial directory.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

PATTERNS = ("experiment_state-*.json", "searcher-state-*.pkl", "tuner.pkl")
SUFFIX = ".bak"


def _complete(path: Path) -> bool:
    """Whether a state file parses (our own trusted experiment directory)."""
    try:
        data = path.read_bytes()
        if path.name.removesuffix(SUFFIX).endswith(".json"):
            json.loads(data)
        else:
            pickle.loads(data)  # the experiment's own state, as Tune itself loads it
    except Exception:
        return False
    return bool(data)


def back_up(experiment: Path) -> None:
    """Copy each complete state file to `<name>.bak` (atomically)."""
    for pattern in PATTERNS:
        for path in experiment.glob(pattern):
            if _complete(path):
                tmp = path.with_name(path.name + ".tmp-bak")
                shutil.copyfile(path, tmp)
                os.replace(tmp, path.with_name(path.name + SUFFIX))


def restore_checkpoints(experiment: Path) -> list[str]:
    """Put back checkpoints that the saved state points at but Tune already deleted.

    Each is replaced by a copy of the newest checkpoint in its trial's directory, so the
    trial continues from its latest epoch instead of failing every retry.

    Returns:
        The ids of the trials repaired.
    """
    repaired = []
    for trial in tune.ExperimentAnalysis(str(experiment)).trials:
        checkpoint = trial.checkpoint
        if trial.status == Trial.TERMINATED or checkpoint is None:
            continue
        missing = Path(checkpoint.path)
        if missing.exists():
            continue
        newer = sorted(missing.parent.glob("checkpoint_*"))
        if not newer:
            continue  # nothing to continue from: Tune reports the trial's error
        shutil.copytree(newer[-1], missing)
        repaired.append(trial.trial_id)
        logger.warning(
            "trial %s: checkpoint %s was deleted before Tune saved its state; continuing from %s",
            trial.trial_id,
            missing.name,
            newer[-1].name,
        )
    return repaired


def restore_backups(experiment: Path) -> list[str]:
    """Put back state files that are missing or truncated from their backups.

    Returns:
        The names of the files restored.
    """
    restored = []
    for backup in experiment.glob(f"*{SUFFIX}"):
        original = backup.with_name(backup.name.removesuffix(SUFFIX))
        if (not original.exists() or not _complete(original)) and _complete(backup):
            shutil.copyfile(backup, original)
            restored.append(original.name)
    if restored:
        logger.warning("restored truncated Tune state from backups: %s", ", ".join(restored))
    return restored


class StateBackups(tune.Callback):
    """Keeps `back_up` current while the experiment runs (every `every_s` seconds)."""

    def __init__(self, experiment: str, every_s: float = 2.0) -> None:
        self.experiment = experiment
        self.every_s = every_s
        self._last = 0.0

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Back up, at most every `every_s` seconds."""
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            back_up(Path(self.experiment))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """A last backup."""
        back_up(Path(self.experiment))
