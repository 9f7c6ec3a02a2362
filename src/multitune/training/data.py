"""Training data on the device: one contiguous feature tensor per modality, encoded targets,
label masks and split indices. Built once; the loop only slices it by index.

The labels are encoded by `multitune.training.targets`; `multitune.training.pickling` ships
the tensors through Ray's object store."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from multitune.config.schema import Params, token_modality
from multitune.data import load_features, read_dataset, read_splits, read_tasks
from multitune.embed.token_cache import TokenCache, cache_dir
from multitune.errors import DataError
from multitune.models.heads import TaskSpec
from multitune.training.pickling import as_arrays, as_tensors
from multitune.training.targets import encode_targets, resolve_classes, token_targets
from multitune.training.tokens import PackedTokens

SPLITS = ("train", "val", "test")


def _missing(path: Path) -> DataError:
    return DataError(f"{path} is missing; run `dvc repro embed` to prepare the features first")


@dataclass(frozen=True)
class TrainingData:
    """Everything the trainer reads, as tensors on one device.

    Attributes:
        ids: row ids, ``(n,)``.
        features: modality -> ``(n, dim)`` float32, contiguous.
        tasks: the tasks, each with its resolved classes.
        targets: task -> encoded target (class index long ``(n,)``; binary 0/1 float ``(n,)``;
            multilabel 0/1 float ``(n, C)``; regression float ``(n,)`` in original units);
            unlabelled rows hold zeros.
        labelled: task -> bool ``(n,)``, rows that carry a label for the task.
        splits: "train"/"val"/"test" -> long row indices.
        tokens: modality -> cached token states of every row (text modalities whose encoder
            has `cache_top_layers`), entering the cached layers and leaving them; what a
            backbone (`top_k`, or frozen under a token task) reads instead of `features`.
        token_caches: modality -> the token cache's description (`cache.json`).
    """

    ids: np.ndarray
    features: dict[str, Tensor]
    tasks: list[TaskSpec]
    targets: dict[str, Tensor]
    labelled: dict[str, Tensor]
    splits: dict[str, Tensor]
    tokens: dict[str, PackedTokens] = field(default_factory=dict)
    token_caches: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return next(iter(self.features.values())).device

    @property
    def modality_dims(self) -> dict[str, int]:
        """Input width per modality."""
        return {m: int(f.shape[1]) for m, f in self.features.items()}

    @property
    def task_names(self) -> list[str]:
        """Task names, in order."""
        return [t.name for t in self.tasks]

    @property
    def task_types(self) -> dict[str, str]:
        """Each task's type, by name."""
        return {t.name: t.type for t in self.tasks}

    @property
    def nbytes(self) -> int:
        """Bytes of the features and token states (what the object store must hold)."""
        vectors = sum(f.numel() * f.element_size() for f in self.features.values())
        return int(vectors + sum(t.nbytes for t in self.tokens.values()))

    def train_rows(self, task: str) -> int:
        """Train rows labelled for `task`."""
        return int(self.labelled[task][self.splits["train"]].sum())

    def inputs(
        self,
        idx: Tensor,
        token_modalities: Collection[str] = (),
        rows: np.ndarray | Tensor | None = None,
    ) -> dict[str, Tensor | PackedTokens]:
        """The model's input for rows `idx`: vectors, or token states for `token_modalities`.

        Args:
            idx: row indices, on the data's device.
            token_modalities: modalities whose input is their token states.
            rows: the same indices on the host (a CPU tensor or NumPy array), where a batch of
                token states takes its shapes from; None: `idx` itself (on a GPU, read back:
                a wait for the device).

        Raises:
            ValueError: a modality in `token_modalities` has no cached token states.
        """
        missing = [m for m in token_modalities if m not in self.tokens]
        if missing:
            raise ValueError(f"no cached token states for modality {', '.join(missing)}")
        host = idx if rows is None else rows
        return {
            m: self.tokens[m][host] if m in token_modalities else f[idx]
            for m, f in self.features.items()
        }

    def to(self, device: torch.device | str) -> TrainingData:
        """A copy on `device` (self if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self

        def move(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device).contiguous() for k, v in d.items()}

        return replace(
            self,
            features=move(self.features),
            targets=move(self.targets),
            labelled=move(self.labelled),
            splits=move(self.splits),
            tokens={m: t.to(device) for m, t in self.tokens.items()},
        )

    def select(self, tasks: Sequence[str] | None) -> TrainingData:
        """The same rows restricted to `tasks` (all when None)."""
        if tasks is None:
            return self
        unknown = [t for t in tasks if t not in self.task_names]
        if unknown or not tasks:
            raise ValueError(
                f"unknown task(s) {', '.join(unknown) or '(none given)'}; "
                f"tasks: {', '.join(self.task_names)}"
            )
        keep = [t for t in self.tasks if t.name in tasks]
        return replace(
            self,
            tasks=keep,
            targets={t.name: self.targets[t.name] for t in keep},
            labelled={t.name: self.labelled[t.name] for t in keep},
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with its tensors as NumPy arrays (on the CPU), rebuilt as tensors sharing
        their memory: Ray's object store hands such arrays to every trial that reads the data
        as views of one shared copy (pickle protocol 5 buffers), where pickled tensors would be
        copied into each trial's memory."""
        state = {f.name: as_arrays(getattr(self, f.name)) for f in fields(self)}
        return _rebuild, (state,)

    @classmethod
    def from_arrays(
        cls,
        features: Mapping[str, np.ndarray | Tensor],
        tasks: Sequence[Any],
        labels: Mapping[str, Sequence[Any] | np.ndarray | pd.Series],
        split: Sequence[str] | np.ndarray,
        ids: Sequence[str] | None = None,
        device: torch.device | str | None = None,
        token_words: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> TrainingData:
        """Build from in-memory arrays (tests, notebooks).

        Args:
            features: modality -> ``(n, dim)`` array.
            tasks: `TaskSpec`s or objects with ``.config``, ``.classes``, ``.n_labelled``
                (``classes=None`` on a categorical task: inferred, sorted).
            labels: task name -> raw labels per row (strings, None for unlabelled; floats and
                NaN for regression; lists or separator-joined strings for multilabel).
            split: per row, "train", "val", "test" (anything else: unused).
            ids: row ids (default "0".."n-1").
            device: where the tensors go (default CPU).
            token_words: token task name -> `(words, offsets)` of its modality's token cache
                (`multitune.embed.windows.Windows.words` per packed token, row offsets);
                its labels are lists aligned to words.
        """
        device = torch.device(device or "cpu")
        feats = {
            m: torch.as_tensor(np.asarray(v, dtype=np.float32)).contiguous().to(device)
            for m, v in features.items()
        }
        n = len(next(iter(feats.values())))
        if any(len(f) != n for f in feats.values()):
            raise DataError("every modality must have the same number of rows")
        specs, targets, labelled = [], {}, {}
        for t in tasks:
            spec = t if isinstance(t, TaskSpec) else TaskSpec(t.config, t.classes, t.n_labelled)
            values = pd.Series(list(labels[spec.name]) if spec.name in labels else [None] * n)
            spec = resolve_classes(spec, values)
            if spec.type == "token_classification":
                if spec.name not in (token_words or {}):
                    raise DataError(f"token task {spec.name!r} needs its modality's token cache")
                y, mask = token_targets(spec, values, *(token_words or {})[spec.name])
            else:
                y, mask = encode_targets(spec, values)
            specs.append(replace(spec, n_labelled=int(mask.sum())))
            targets[spec.name] = torch.as_tensor(np.array(y)).to(device)
            labelled[spec.name] = torch.as_tensor(np.array(mask, dtype=bool)).to(device)
        split_arr = np.asarray(split).astype(str)
        splits = {
            s: torch.as_tensor(np.flatnonzero(split_arr == s), dtype=torch.long).to(device)
            for s in SPLITS
        }
        row_ids = np.asarray(ids if ids is not None else [str(i) for i in range(n)], dtype=object)
        return cls(row_ids, feats, specs, targets, labelled, splits)

    @classmethod
    def from_files(
        cls, data_dir: Path, params: Params, device: torch.device | str | None = None
    ) -> TrainingData:
        """Load the data stages' outputs (dataset, tasks.json, splits, features).

        Raises:
            DataError: an artifact is missing (run ``dvc repro embed``) or does not match the
                params (a task absent from tasks.json).
        """
        data_dir = Path(data_dir)
        for rel in ("dataset.parquet", "tasks.json", "splits.parquet", "features"):
            if not (data_dir / rel).exists():
                raise _missing(data_dir / rel)
        infos = {i.config.name: i for i in read_tasks(data_dir / "tasks.json")}
        absent = [t.name for t in params.tasks if t.name not in infos]
        if absent:
            raise DataError(
                f"task(s) {', '.join(absent)} not in {data_dir / 'tasks.json'}; "
                "rerun `dvc repro embed` after changing tasks"
            )
        specs = [
            TaskSpec(t, infos[t.name].classes, infos[t.name].n_labelled) for t in params.tasks
        ]
        # Only ids and targets: the modalities' columns (vectors, text) are the features'.
        columns = ["id", *(t.config.column for t in specs)]
        frame = read_dataset(data_dir / "dataset.parquet", columns)
        ids = frame["id"].astype(str).to_numpy()
        split_frame = read_splits(data_dir / "splits.parquet")
        split = (
            pd.Series(ids).map(split_frame.set_index(split_frame["id"].astype(str))["split"])
        ).fillna("none")
        features = {
            m: load_features(data_dir / "features", m, list(ids)) for m in params.data.modalities
        }
        labels = {t.name: frame[t.config.column] for t in specs}
        tokens, caches, words = _token_caches(data_dir / "features", params, ids)
        token_words = {}
        for t in specs:
            if t.type == "token_classification":
                m = token_modality(params.data, t.config)
                token_words[t.name] = (words[m], tokens[m].offsets)
        data = cls.from_arrays(features, specs, labels, split.to_numpy(), ids, device, token_words)
        return replace(
            data,
            tokens={m: t.to(data.device) for m, t in tokens.items()},
            token_caches=caches,
        )


def _rebuild(state: dict[str, Any]) -> TrainingData:
    """A `TrainingData` from its pickled state (`TrainingData.__reduce__`)."""
    return TrainingData(**{k: as_tensors(v) for k, v in state.items()})


def _token_caches(
    features_dir: Path, params: Params, ids: np.ndarray
) -> tuple[dict[str, PackedTokens], dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """The cached token states (and each token's word) of every modality whose encoder
    caches them, rows in the order of `ids`."""
    tokens, caches, words = {}, {}, {}
    for name, modality in params.data.modalities.items():
        if getattr(modality.encoder, "cache_top_layers", 0):
            cache = TokenCache.read(cache_dir(features_dir, name))
            states, offsets, words[name] = cache.aligned(ids)
            final, segments = cache.aligned_final(ids), cache.aligned_segments(ids)
            tokens[name] = PackedTokens.from_arrays(
                states, offsets, final=final, segments=segments
            )
            caches[name] = cache.info
    return tokens, caches, words
