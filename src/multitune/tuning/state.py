"""Backups of Tune's experiment state, so a driver killed mid-write still resumes.

Tune snapshots its experiment state (trial list, searcher) by copying files into the storage
path, in place: a driver killed during the copy leaves a truncated file that cannot be
restored. While the sweep runs, a callback keeps a last known-good copy of each state file
beside it (`<name>.bak`, replaced atomically); before resuming, a truncated file is put back
from its backup.

Trials save their checkpoints to storage as they report; Tune records them, and deletes
those beyond `num_to_keep`, in its next snapshot a moment later: a driver killed in between
leaves a snapshot that points at an older checkpoint than the trial's newest (a trial that
has finished since included), or at a deleted one, which Tune refuses to restore. Before
resuming, the checkpoint pointed at is replaced by the newest complete one in its trial
directory (`restore_checkpoints`).
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

from multitune.tuning.trainable import read_checkpoint

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
    """Point each unfinished trial of the saved state at its newest checkpoint on disk.

    Trials save checkpoints to storage themselves as they report; Tune records them in its
    state snapshot later (every few seconds). After a killed driver, a trial's newest
    checkpoint can be newer than the one the snapshot points at (a trial that finished
    since: its final report's, see `multitune.tuning.trainable`), or the one pointed at can
    be gone (deleted beyond `num_to_keep` before the next snapshot, and Tune would refuse to
    restore the trial). Either way the checkpoint pointed at is replaced by a copy of the
    newest complete one, so the trial continues from its latest epoch, or reports its
    result again without training.

    Returns:
        The ids of the trials repaired.
    """
    repaired = []
    for trial in tune.ExperimentAnalysis(str(experiment)).trials:
        checkpoint = trial.checkpoint
        if trial.status == Trial.TERMINATED or checkpoint is None:
            continue
        pointed = Path(checkpoint.path)
        newest = next(
            (c for c in sorted(pointed.parent.glob("checkpoint_*"), reverse=True) if _usable(c)),
            None,
        )
        if newest is None or (pointed.exists() and newest.name <= pointed.name):
            continue  # nothing newer to continue from (none at all: Tune reports the error)
        if pointed.exists():
            logger.warning(
                "trial %s: continuing from %s, saved after Tune's last snapshot of %s",
                trial.trial_id,
                newest.name,
                pointed.name,
            )
            shutil.rmtree(pointed)
        else:
            logger.warning(
                "trial %s: checkpoint %s was deleted before Tune saved its state; "
                "continuing from %s",
                trial.trial_id,
                pointed.name,
                newest.name,
            )
        shutil.copytree(newest, pointed)
        repaired.append(trial.trial_id)
    return repaired


def _usable(checkpoint: Path) -> bool:
    """Whether a trial's checkpoint was written whole (a kill can stop it half-copied)."""
    try:
        read_checkpoint(checkpoint)
    except Exception:  # truncated or missing files: not one to continue from
        return False
    return True


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
