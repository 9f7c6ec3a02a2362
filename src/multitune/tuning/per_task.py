"""Several independent searches in one Tune experiment: one per task (the baselines).

Starting a Tune experiment costs a worker start per concurrent trial (seconds each); the
baselines run all tasks in one experiment instead, with actors reused across tasks. Each
task keeps its own Optuna study (`TaskSearch`) and its own ASHA brackets (`TaskASHA`), so
tasks never compete with each other; a trial's config carries its `task`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from multitune.tuning.trial import TASK_KEY


class TaskSearch(Searcher):
    """One searcher per task; trials are dealt to the task with the fewest so far.

    Args:
        searchers: Task name -> its searcher (already given its space, metric and mode).
        quotas: Task name -> the trials it gets.
        metric: The reported metric all tasks optimize (e.g. a sign-corrected score).
        mode: `max` or `min`.
    """

    def __init__(
        self, searchers: dict[str, Searcher], quotas: dict[str, int], metric: str, mode: str
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers = searchers
        self.quotas = quotas
        self.count = dict.fromkeys(searchers, 0)
        self.assigned: dict[str, str] = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Accept Tune's properties (the task searchers already have theirs)."""
        return True

    def suggest(self, trial_id: str) -> dict | None:
        """The next config of the least-served task that has budget left, with its `task`."""
        open_tasks = [t for t, n in self.count.items() if n < self.quotas.get(t, 0)]
        if not open_tasks:
            return Searcher.FINISHED  # type: ignore[return-value]
        task = min(open_tasks, key=lambda t: self.count[t])
        config = self.searchers[task].suggest(trial_id)
        if not isinstance(config, dict):
            return config
        self.count[task] += 1
        self.assigned[trial_id] = task
        return {**config, TASK_KEY: task}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Pass an intermediate result to the trial's task searcher."""
        if trial_id in self.assigned:
            self.searchers[self.assigned[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Pass the final result to the trial's task searcher."""
        if trial_id in self.assigned:
            self.searchers[self.assigned[trial_id]].on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        """Pickle every task searcher's state and the dealing so far."""
        state = {
            "count": self.count,
            "assigned": self.assigned,
            "searchers": {t: s.__dict__.copy() for t, s in self.searchers.items()},
        }
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(state, handle)

    def restore(self, checkpoint_path: str) -> None:
        """Restore what `save` wrote (a trusted experiment directory)."""
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)  # our own experiment state, as Tune's
        self.count, self.assigned = state["count"], state["assigned"]
        for task, saved in state["searchers"].items():
            self.searchers[task].__dict__.update(saved)


class TaskASHA(FIFOScheduler):
    """A scheduler per task (ASHA), so trials are only compared within their task.

    Args:
        make: Builds one task's scheduler.
    """

    def __init__(self, make: Callable[[], TrialScheduler]) -> None:
        super().__init__()
        self.make = make
        self.schedulers: dict[str, TrialScheduler] = {}
        self._props: tuple[str | None, str | None] = (None, None)

    def _for(self, trial: Trial) -> TrialScheduler:
        task = str(trial.config.get(TASK_KEY, ""))
        if task not in self.schedulers:
            scheduler = self.make()
            scheduler.set_search_properties(*self._props)
            self.schedulers[task] = scheduler
        return self.schedulers[task]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Remember the metric and mode for every task's scheduler."""
        self._props = (metric, mode)
        for scheduler in self.schedulers.values():
            scheduler.set_search_properties(metric, mode, **spec)
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Delegate to the trial's task scheduler."""
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        """Delegate: continue or stop, as the trial's task scheduler decides."""
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        """Delegate to the trial's task scheduler."""
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        """Delegate to the trial's task scheduler."""
        self._for(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        """Delegate to the trial's task scheduler."""
        self._for(trial).on_trial_error(tune_controller, trial)
