"""Driver-side Tune callbacks: one MLflow child run per trial, and terminal progress.

Trials never write to MLflow themselves: the driver logs what they report. One writer keeps
a SQLite store free of lock contention however many trials run at once, and a trial killed
mid-epoch still gets its run ended (FAILED, with the error) by the driver.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from multitune import tracking
from multitune.console import console
from multitune.errors import UserError
from multitune.tracking.tags import PARAMS_HASH, TASK, TRIAL_ID
from multitune.tuning.trial import TASK_KEY, TrialSpec

logger = logging.getLogger(__name__)

_EPOCH_SKIP = {"epoch", "final", "epochs_run", "best_epoch"}


class TrialRuns(tune.Callback):
    """Logs each trial as a child run of the stage's parent run.

    A trial's run is found again by its `trial_id` tag when a sweep resumes, so each trial
    has exactly one run however often the driver restarts.
    """

    def __init__(
        self,
        tracker: tracking.Tracking,
        parent_run_id: str,
        tags: dict[str, str],
        spec: TrialSpec,
        name_prefix: str = "trial",
    ) -> None:
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.tags = dict(tags)
        self.spec = spec
        self.name_prefix = name_prefix
        self._runs: dict[str, tracking.RunHandle] = {}
        self._nodes: dict[str, str] = {}

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Forget cached runs (a restored experiment looks them up again)."""
        self._runs, self._nodes = {}, {}

    def _run(self, trial: Trial) -> tracking.RunHandle:
        run = self._runs.get(trial.trial_id)
        if run is not None:
            return run
        found = tracking.find_child(
            self.parent_run_id, TRIAL_ID, trial.trial_id, tracking=self.tracker
        )
        if found is not None:
            run = tracking.reopen(found.run_id, tracking=self.tracker)
        else:
            run = self._start(trial)
        self._runs[trial.trial_id] = run
        return run

    def _start(self, trial: Trial) -> tracking.RunHandle:
        try:
            params: Any = self.spec.params(trial.config)
        except UserError:  # the trial itself fails on this and says why
            params = dict(trial.config)
        tags = {
            **self.tags,
            TRIAL_ID: trial.trial_id,
            PARAMS_HASH: tracking.params_hash(params),
        }
        if TASK_KEY in trial.config:
            tags[TASK] = str(trial.config[TASK_KEY])
        name = f"{self.name_prefix}_{trial.trial_id}"
        run = tracking.start_child(self.parent_run_id, name, tags, tracking=self.tracker)
        run.log_params(params)
        return run

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Open (or reopen) the trial's run."""
        self._run(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        """Log an epoch's metrics at step=epoch; the final report as `final/...` metrics."""
        run = self._run(trial)
        metrics = {k: v for k, v in result.items() if "/" in k or k in ("objective", "delta_m")}
        if result.get("final"):
            final = {f"final/{k}": v for k, v in metrics.items()}
            final["epochs_run"] = result.get("epochs_run", 0)
            final["best_epoch"] = result.get("best_epoch", 0)
            run.log_metrics(final)
        else:
            step = int(result.get("epoch", 0))
            run.log_metrics({k: v for k, v in metrics.items() if k not in _EPOCH_SKIP}, step)
        node = result.get("node_ip")
        if node and self._nodes.get(trial.trial_id) != node:
            run.set_tags({"node": node})
            self._nodes[trial.trial_id] = node

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """End the run FINISHED (also when the scheduler stopped the trial early)."""
        self._run(trial).end("FINISHED")

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Note the retry; the run stays open and continues from the checkpoint."""
        self._run(trial).set_tags({"retries": trial.num_failures})

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """End the run FAILED with the trial's error."""
        self._run(trial).end("FAILED", error=trial_error(trial))


def trial_error(trial: Trial) -> str:
    """The last lines of a failed trial's error (what raised, and where)."""
    text = ""
    if trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text(errors="replace")
    else:
        error = trial.get_error()
        text = str(error) if error else "unknown error"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-12:])


class Progress(tune.Callback):
    """A status line a person can follow: trials done/running/pending, best so far."""

    def __init__(self, label: str, total: int, metric: str, shown: str, every_s: float = 15.0):
        self.label = label
        self.total = total
        self.metric = metric
        self.shown = shown
        self.every_s = every_s
        self._last = 0.0
        self._shown: tuple[int, ...] = ()

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Start the clock."""
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = ()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Print when the counts change, or every `every_s` seconds."""
        counts = _counts(trials, self.total)
        now = time.monotonic()
        if counts != self._shown or now - self._last >= self.every_s:
            self._print(trials, counts)
            self._shown, self._last = counts, now

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """The final line, unless the last one already says it."""
        counts = _counts(trials, self.total)
        if counts != self._shown:
            self._print(trials, counts)

    def _print(self, trials: list[Trial], counts: tuple[int, ...]) -> None:
        done, running, pending, failed = counts
        best = self._best(trials)
        elapsed = time.monotonic() - getattr(self, "_start", time.monotonic())
        text = (
            f"[bold]{self.label}[/] {done}/{self.total} done, {running} running, "
            f"{pending} pending" + (f", [red]{failed} failed[/]" if failed else "")
        )
        if best is not None and self.shown:
            text += f" | best {self.shown} {best[0]:+.4f} ({best[1]})"
        console.print(f"{text} | {elapsed:.0f}s", soft_wrap=True)

    def _best(self, trials: list[Trial]) -> tuple[float, str] | None:
        scored = [
            (float(t.last_result[self.metric]), t.trial_id)
            for t in trials
            if t.last_result and isinstance(t.last_result.get(self.metric), int | float)
        ]
        if not scored:
            return None
        return max(scored)


def _counts(trials: list[Trial], total: int) -> tuple[int, int, int, int]:
    done = sum(t.status == Trial.TERMINATED for t in trials)
    failed = sum(t.status == Trial.ERROR for t in trials)
    running = sum(t.status == Trial.RUNNING for t in trials)
    pending = max(0, total - done - failed - running)
    return done, running, pending, failed
