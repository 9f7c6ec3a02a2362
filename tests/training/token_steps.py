"""Tiny token data for trainer tests, built in memory in a second: a 2-layer random BERT saved
as a local model directory, the packed float16 token states of 48 short rows entering its 2
layers, a token task, a sequence task, and a vector modality beside the text.

The three paths a training step can take (`PATHS`): the text modality's pooled vectors (no
token task, frozen backbone), frozen token states (a token task over the frozen backbone) and
top-k fine-tuning (a token task and the top layer trained); the last two also with rows
longer than the encoder's window, held as two windows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from multitune.config import Params, validate_params
from multitune.models.backbone import TextLayers
from multitune.models.heads import TaskSpec
from multitune.training import TrainingData
from multitune.training.tokens import PackedTokens

HIDDEN, LAYERS = 32, 2
TAGS = ["B-X", "O"]

PATHS: dict[str, dict[str, Any]] = {
    "pooled vectors": {"backbone": {"name": "frozen"}, "tasks": ["kind"]},
    "frozen token states": {"backbone": {"name": "frozen"}, "tasks": None},
    "top-k fine-tuning": {"backbone": {"name": "top_k", "layers": 1}, "tasks": None},
    # Rows longer than the encoder's window, held as two windows each.
    "frozen token states, windowed": {
        "backbone": {"name": "frozen"},
        "tasks": None,
        "windows": True,
    },
    "top-k fine-tuning, windowed": {
        "backbone": {"name": "top_k", "layers": 1},
        "tasks": None,
        "windows": True,
    },
}


def tiny_transformer(directory: Path) -> Path:
    """A random 2-layer BERT (hidden 32) saved to `directory`, as `load_pretrained` reads it."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=32,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(directory)
    return directory


def cache_info(model_dir: Path) -> dict[str, Any]:
    """The token cache's description (`cache.json`) of states entering both layers."""
    from transformers import AutoConfig

    return {
        "layers": LAYERS,
        "model_layers": LAYERS,
        "hidden": HIDDEN,
        "normalize": True,
        "transformer_config": AutoConfig.from_pretrained(model_dir).to_dict(),
        "model": str(model_dir),
    }


def final_states(
    info: dict[str, Any], states: np.ndarray, offsets: np.ndarray, segments: np.ndarray | None
) -> np.ndarray:
    """The states leaving the cached layers, packed like `states` (float16), each window run
    apart: what the embed stage caches beside them."""
    layers = TextLayers(info, 0)
    layers.load_pretrained(info["model"])
    tokens = PackedTokens.from_arrays(states, offsets, segments=segments)
    with torch.no_grad():
        h = layers.eval().run(tokens)[0].apply(lambda x: x)
    lengths = np.diff(offsets)
    keep = np.arange(h.shape[1])[None, :] < lengths[:, None]
    return h.numpy()[keep].astype(np.float16)


def token_data(
    model_dir: Path, n: int = 48, seed: int = 0, final: bool = True, windows: bool = False
) -> TrainingData:
    """`n` rows of 3 to 12 tokens: text token states (and the pooled vectors of a frozen
    encoder), a 6-d vector modality, a token task `tags` and a 3-class task `kind`.
    With `windows`, each row of 8 tokens or more is held as two windows (the encoder's
    windows of a row longer than one)."""
    rng = np.random.default_rng(seed)
    info = cache_info(model_dir)
    lengths = rng.integers(3, 13, size=n)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    segments = None
    if windows:
        halves = [[k] if k < 8 else [k // 2, k - k // 2] for k in lengths]
        segments = np.r_[0, np.cumsum([h for row in halves for h in row])].astype(np.int64)
    states = rng.normal(size=(int(offsets[-1]), HIDDEN)).astype(np.float16)
    # Words: every token but the first ([CLS]) and last ([SEP]) starts one.
    words = np.concatenate([np.r_[-1, np.arange(k - 2), -1] for k in lengths]).astype(np.int32)
    tags = [list(rng.choice(TAGS, size=k - 2)) for k in lengths]
    kind = rng.choice(["a", "b", "c"], size=n).astype(object)
    split = np.array(["train"] * n, dtype=object)
    split[int(0.7 * n) : int(0.85 * n)] = "val"
    split[int(0.85 * n) :] = "test"
    packed = PackedTokens.from_arrays(states, offsets, segments=segments)
    with torch.no_grad():
        text = TextLayers(info, 0)
        text.load_pretrained(str(model_dir))
        pooled = text.eval().run(packed)[1].numpy()
    params = token_params("frozen")
    specs = [TaskSpec(t, None) for t in params.tasks]
    data = TrainingData.from_arrays(
        {"text": pooled, "v": rng.normal(size=(n, 6))},
        specs,
        {"tags": tags, "kind": kind},
        split,
        token_words={"tags": (words, offsets)},
    )
    extra = {"final": final_states(info, states, offsets, segments)} if final else {}
    tokens = PackedTokens.from_arrays(states, offsets, segments=segments, **extra)
    return replace(data, tokens={"text": tokens}, token_caches={"text": info})


def token_params(backbone: str | dict[str, Any], **train: Any) -> Params:
    """Params for `token_data`: `backbone` a `model.backbone` section or its name."""
    section = {"name": backbone} if isinstance(backbone, str) else backbone
    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {
                    "text": {
                        "column": "text",
                        "encoder": {"name": "sentence_transformer", "cache_top_layers": LAYERS},
                    },
                    "v": {"column": "v", "encoder": {"name": "precomputed"}},
                },
            },
            "tasks": [
                {"name": "tags", "type": "token_classification", "column": "tags"},
                {"name": "kind", "type": "classification", "column": "kind"},
            ],
            "model": {
                "encoder": {"hidden": 16, "dropout": 0.0},
                "sharing": {"hidden": [16]},
                "backbone": section,
            },
            "train": {"epochs": 1, "batch_size": 16, "seed": 0, "device": "cpu"} | train,
        }
    )


def run_steps(
    params: Params,
    data: TrainingData,
    tasks: list[str] | None,
    arm: Callable[[], None],
    disarm: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Train one epoch of `params.train.epoch_steps` steps, `arm()` from the first step's
    forward pass on (so every later step is covered whole, its batch gathered included) and
    `disarm()` when the epoch's evaluation starts: a probe sees the steps and nothing else."""
    from multitune.training import loop

    evaluate = loop.evaluate

    def evaluating(*args: Any, **kwargs: Any) -> Any:
        disarm()
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluating)
    try:
        loop.train(params, data, tasks=tasks, step_hook=lambda model, data: arm())
    finally:
        disarm()
