"""The search's record: which search a stage's inputs make, and whether it continues.

A search is identified by what its trials depend on (the data, the params but the number of
trials and where they run, the package's code), not by how many trials it holds: asked for
more, a finished search grows (`multitune.tuning.session.StageSession.search`,
`multitune.tuning.runner`); asked for fewer, or the same, it trains nothing. Anything else
changed starts a new search, and the stage says which setting made it new.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitune import tracking
from multitune.config import Params
from multitune.console import console
from multitune.io import write_json
from multitune.tracking.registry import package_code_hash

DATA_FILES = ("dataset.parquet", "splits.parquet", "tasks.json", "features")
STATE_SUFFIX = ".multitune.json"
LATEST = "{stage}.latest"
"""Per stage, beside the searches' records: the key of its last search (to say why one is
new)."""

NOT_KEYED = {
    "sweep": {"num_samples", "max_concurrent", "ray_address", "object_store_mb"},
    "baselines": {"num_samples", "max_concurrent"},
}
"""Settings that say how many trials a search holds, or where they run, not what they are:
changing them keeps the search (it grows, or answers with its first trials)."""


@dataclass(frozen=True)
class SearchRecord:
    """The search a stage's inputs make, and what its record says of an earlier invocation.

    Attributes:
        experiment: Base name of its Tune experiment(s): the stage and the hash of its key.
        data_paths: The data files it depends on.
        data_hash: Their hash.
        storage: Tune's storage (absolute path or URI).
        state_file: Its record.
        code: The package's code hash.
        store: The tracking store it logs to.
        resume_run: The parent run of the earlier invocation it continues, or None.
        parts: That invocation's parts (none when it starts afresh).
    """

    experiment: str
    data_paths: list[Path]
    data_hash: str
    storage: str
    state_file: Path
    code: str
    store: str
    resume_run: str | None
    parts: list[dict[str, Any]]

    def opened(self, parent_run_id: str) -> dict[str, Any]:
        """What its record holds once the stage has opened it under `parent_run_id`."""
        return {
            "parent_run_id": parent_run_id,
            "store": self.store,
            "code": self.code,
            "complete": False,
            "parts": self.parts,
        }


def open_search(
    stage: str, params: Params, data_dir: Path, project_root: Path, tracker: tracking.Tracking
) -> SearchRecord:
    """The search of these inputs: continued when its record allows (`_resume_from`), else
    started afresh (its earlier experiment cleared, and the stage saying why it is new)."""
    data_paths = [data_dir / name for name in DATA_FILES]
    dhash = tracking.data_hash(data_paths)
    key_source = {"stage": stage, "data": dhash, "params": _keyed(params)}
    experiment = f"{stage}-{tracking.params_hash(key_source)}"
    # A `dvc exp run --temp` / queued copy keeps its searches in the workspace, where the
    # next run finds them to grow.
    workspace = tracking.workspace_root(project_root)
    storage = params.sweep.storage_path
    if "://" not in storage:
        storage = str((workspace / storage).resolve())
    state_file = _state_file(storage, workspace, experiment)
    code = package_code_hash()
    where = f"{tracker.uri}#{tracker.experiment_id}"
    previous = _read_state(state_file)
    resume_run = _resume_from(previous, code, where)
    if not resume_run:
        _clear(storage, experiment)
        previous = {}
    latest = _state_file(storage, workspace, LATEST.format(stage=stage))
    _say_why_new(stage, _read_state(latest), key_source, code, resumed=bool(resume_run))
    write_json(latest, {"experiment": experiment, "code": code, "key": key_source})
    parts = _parts(previous, experiment)
    return SearchRecord(
        experiment, data_paths, dhash, storage, state_file, code, where, resume_run, parts
    )


def _keyed(params: Params) -> dict[str, Any]:
    """The params a search's trials depend on (see `NOT_KEYED`)."""
    dumped = params.model_dump(mode="json", exclude={"final", "registry", "mlflow"})
    for section, keys in NOT_KEYED.items():
        for key in keys:
            dumped[section].pop(key, None)
    return dumped


def _parts(previous: dict[str, Any], experiment: str) -> list[dict[str, Any]]:
    """The parts (Tune experiments) of the search being continued, oldest first; a record
    from before searches grew names none: its one experiment, finished when complete."""
    if not previous:
        return []
    if "parts" in previous:
        return list(previous["parts"])
    return [{"name": experiment, "done": bool(previous.get("complete"))}]


def _say_why_new(
    stage: str, latest: dict[str, Any], key: dict[str, Any], code: str, *, resumed: bool
) -> None:
    """One line when this search is not the stage's last one: which setting made it new."""
    if resumed or not latest:
        return
    if latest.get("key") == key:
        why = (
            "the package's code changed"
            if latest.get("code") != code
            else "the earlier one logged to another tracking store"
        )
    else:
        changed = _changed(latest.get("key", {}), key)
        why = (
            "changed: "
            + ", ".join(changed[:3])
            + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            if changed
            else "its inputs changed"
        )
    console.print(
        f"[bold]{stage}[/] a new search ({why}); earlier trials are not reused", soft_wrap=True
    )


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two search keys."""
    a, b = tracking.flatten(old), tracking.flatten(new)
    names = {"data": "the data (its files' hash)"}
    return [
        names.get(k, k.removeprefix("params."))
        for k in sorted(set(a) | set(b))
        if k not in a or k not in b or a[k] != b[k]
    ]


def _state_file(storage: str, workspace: Path, experiment: str) -> Path:
    base = Path(storage) if "://" not in storage else workspace / "ray_results"
    return base / f"{experiment}{STATE_SUFFIX}"


def _resume_from(state: dict[str, Any], code: str, store: str) -> str | None:
    """The parent run of the previous invocation to continue, if any.

    An interrupted invocation is continued. A finished one is taken up again, its finished
    trials reused and nothing trained, when the package's code is the same: a rerun of the
    same inputs and code is a rerun after a kill that came once the stage was done but before
    its process ended (Ray shutting down, `dvc repro` recording the outputs), or a forced one
    that would train the same trials again; after a code change, the search starts afresh.
    A previous invocation that logged to another store (`mlflow` settings) is not continued.
    """
    run = state.get("parent_run_id")
    if not run or state.get("store", store) != store:
        return None
    if state.get("complete") and state.get("code") != code:
        return None
    return str(run)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _clear(storage: str, experiment: str) -> None:
    """Remove a finished or orphaned earlier experiment of the same name (local storage)."""
    if "://" in storage:
        return
    for path in Path(storage).glob(f"{experiment}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
