"""Driver-side Tune callbacks: one MLflow child run per trial, terminal progress, and how a
trial's user error reaches the user.

Trials never write to MLflow themselves: the driver logs what they report. One writer keeps
a SQLite store free of lock contention however many trials run at once, and a trial killed
mid-epoch still gets its run ended (FAILED, with the error) by the driver.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import cloudpickle, tune
from ray.tune.experiment import Trial
from ray.tune.stopper import Stopper

from multitune import tracking
from multitune.console import console
from multitune.errors import UserError
from multitune.progress import EVERY_S, clock
from multitune.tracking.tags import PARAMS_HASH, TASK, TRIAL_ID
from multitune.tuning.trial import TASK_KEY, TrialSpec

logger = logging.getLogger(__name__)

_EPOCH_SKIP = {"epoch", "final", "epochs_run", "best_epoch"}


class _Callback(tune.Callback):
    """A driver-side callback that starts afresh (`reset`) whenever Tune sets it up: before
    an experiment runs, and again when a resumed one is restored."""

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Called by Tune; see `reset`."""
        self.reset()

    def reset(self) -> None:
        """Forget what an earlier run of the experiment left."""


class TrialRuns(_Callback):
    """Logs each trial as a child run of the stage's parent run.

    A trial's run is found again by its `trial_id` tag when a sweep resumes, so each trial
    has exactly one run however often the driver restarts. A run that had ended FINISHED is
    left as it is: its trial finished after Tune's last state snapshot, and only reports its
    result again (`multitune.tuning.trainable`).
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
        self._finished: set[str] = set()

    def reset(self) -> None:
        """Forget cached runs (a restored experiment looks them up again), and note the
        trials whose runs have ended FINISHED already."""
        self._runs, self._nodes = {}, {}
        self._finished = {
            run.tags[TRIAL_ID]
            for run in tracking.child_runs(self.parent_run_id, tracking=self.tracker)
            if run.status == "FINISHED" and run.tags.get(TRIAL_ID)
        }

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
        if trial.trial_id not in self._finished:
            self._run(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        """Log an epoch's metrics at step=epoch; the final report as `final/...` metrics."""
        if trial.trial_id in self._finished:
            return
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
        if trial.trial_id not in self._finished:
            self._run(trial).end("FINISHED")

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Note the retry; the run stays open and continues from the checkpoint."""
        if trial.trial_id not in self._finished:
            self._run(trial).set_tags({"retries": trial.num_failures})

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """End the run FAILED with the trial's error."""
        if trial.trial_id not in self._finished:
            self._run(trial).end("FAILED", error=trial_error(trial))


def trial_error(trial: Trial) -> str:
    """A failed trial's error: a `UserError`'s message in one line; else the last lines of
    the traceback (what raised, and where)."""
    user = user_error(trial)
    if user is not None:
        return one_line(str(user))
    text = ""
    if trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text(errors="replace")
    else:
        error = trial.get_error()
        text = str(error) if error else "unknown error"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-12:])


def user_error(trial: Trial) -> UserError | None:
    """The `UserError` (params, data) a trial failed with, if that is what it failed with."""
    try:
        local = trial.pickled_error_file  # during the search: not yet synced to storage
        if local and Path(local).exists():
            with open(local, "rb") as f:
                error = cloudpickle.load(f)
        else:
            error = trial.get_pickled_error()
    except Exception:  # unreadable: the text error file still tells
        logger.debug("no pickled error for trial %s", trial, exc_info=True)
        return None
    return _user_cause(error)


def _user_cause(error: BaseException | None) -> UserError | None:
    cause = getattr(error, "cause", error)  # Ray wraps a trial's exception in a RayTaskError
    return cause if isinstance(cause, UserError) else None


def one_line(text: str) -> str:
    """A message of several lines (`ConfigError`'s list of problems) as one."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {'; '.join(lines[1:])}"
    return "; ".join(lines)


class TrialErrors(_Callback, Stopper):
    """How a trial's `UserError` reaches the user: one line, not a Ray traceback.

    * A trial whose sampled values do not validate (`TrialSpec.config_error`) fails without
      retries, which would fail alike, and stops the search (this object is also the
      experiment's stopper): the space needs a fix, not the trial. The driver then raises
      one `UserError` naming the knobs (`multitune.tuning.session.StageSession.search`).
    * Another `UserError` (a setting at odds with the data) is printed as one line when the
      trial has failed for good; it is retried like a crash.

    Ray's own report of these errors is silenced by `quiet_user_errors`; crashes keep their
    traceback.
    """

    def __init__(self, spec: TrialSpec, label: str) -> None:
        self.spec = spec
        self.label = label
        self.invalid: dict[str, str] = {}
        self.stopped = False

    def reset(self) -> None:
        """Start (or restart, on resume) with no invalid trial seen."""
        self.invalid, self.stopped = {}, False

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Spare a trial with invalid sampled values its retries."""
        problem = self.spec.config_error(trial.config)
        if problem is not None:
            self.invalid[trial.trial_id] = problem
            trial.max_failures = 0  # its first failure is final

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Stop the search on invalid sampled values; print any other user error."""
        if trial.trial_id in self.invalid:
            self.stopped = True
            return
        user = user_error(trial)
        if user is not None:
            console.print(
                f"[bold]{self.label}[/] trial {trial.trial_id} [red]failed:[/] "
                f"{one_line(str(user))}",
                soft_wrap=True,
            )

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Trials are not stopped one by one here."""
        return False

    def stop_all(self) -> bool:
        """Stop the search once a trial's sampled values did not validate."""
        return self.stopped


class _QuietUserErrors(logging.Filter):
    """Drops Ray's reports of trials failed by a `UserError` (a traceback per failure, the
    same for a failure left unread by a stopped search, and the closing list of unfinished
    trials when all of them failed so), and its warning that trials have no metrics when
    they never started (a stopped search's pending trials)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _user_cause(record.exc_info[1]) is not None:
            return False
        text = record.getMessage()
        if text.startswith("Unhandled error"):
            return not _names_user_error(text)
        if text.startswith("Failed to fetch metrics for"):
            listed = text.splitlines()[1:]
            return not listed or not all(": FileNotFoundError(" in line for line in listed)
        if record.msg == "Trials did not complete: %s" and isinstance(record.args, tuple):
            trials = record.args[0] if record.args else None
            if isinstance(trials, list) and all(
                isinstance(t, Trial) and user_error(t) is not None for t in trials
            ):
                return False
        return True


def _names_user_error(text: str) -> bool:
    """Whether an error's text (a remote traceback) ends in a `UserError`, `module.Class:
    message` (messages can be several lines)."""
    names = [f"{c.__module__}.{c.__qualname__}: " for c in _subclasses(UserError)]
    return any(line.startswith(tuple(names)) for line in text.splitlines())


def _subclasses(cls: type[UserError]) -> list[type[UserError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


_RAY_LOGGERS = (
    "ray.tune.execution.tune_controller",
    "ray.tune.tune",
    "ray.tune.analysis.experiment_analysis",
    "ray._private.worker",
)


@contextlib.contextmanager
def quiet_user_errors() -> Iterator[None]:
    """While a search runs, leave trials' `UserError`s to `TrialErrors`."""
    quiet = _QuietUserErrors()
    loggers = [logging.getLogger(name) for name in _RAY_LOGGERS]
    for log in loggers:
        log.addFilter(quiet)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(quiet)


class Progress(_Callback):
    """A status line a person can follow: trials done/running/pending, best so far, the
    time since the search started (`multitune.progress`: one style for every stage)."""

    def __init__(self, label: str, total: int, metric: str, shown: str, every_s: float = 15.0):
        self.label = label
        self.total = total
        self.metric = metric
        self.shown = shown
        self.every_s = every_s
        self._last = 0.0
        self._shown: tuple[int, ...] = ()
        self._change_gap = 0.0 if console.is_terminal else EVERY_S

    def reset(self) -> None:
        """Start the clock."""
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = ()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Print when the counts change (in a log, at most every `progress.EVERY_S` seconds:
        the last line comes at the end), or every `every_s` seconds."""
        counts = _counts(trials, self.total)
        now = time.monotonic()
        gap = self.every_s if counts == self._shown else self._change_gap
        if now - self._last >= gap:
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
        console.print(f"{text} | {clock(elapsed)}", soft_wrap=True)

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
