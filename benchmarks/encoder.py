"""Seconds per epoch of a token task over the text encoder: frozen, top-1 and top-2 fine-tuning.

The table of issue 24: the 1,122 statements of the 2016 debates in the bundled example
(`builtin:movies-debates`) less the 72 longer than the bundled all-MiniLM-L6-v2's 256-token
window (the trainer reads those window by window, the paths timed beside it cannot: the
window-by-window path is tested, not timed here), one tag per word (a toy entity tagger:
capitalized words not starting a sentence, in BIO form), a linear head on the encoder's token
states, 90% of the rows trained, batch 32.
Per mode:

* trainer: multitune's `train()` (a single-task trial), each epoch timed from the end of the
  one before to the start of its validation (the trial epoch, validation included, beside
  it); the first epoch, with the run's set-up, is not counted;
* today: the path before issue 24 (`TextLayers.encode`, `PackedTokens.padded` as they were),
  reproduced inline in a loop of its own (none of the trainer's other per-step work): the
  cached layers run again every step (under `no_grad` where frozen), batch and group widths
  read back from the tensors;
* bare: a bare Hugging Face loop over the same layers, cached states and batches, doing the
  trainer's arithmetic in a few lines: a batch's rows run in groups of 8 of similar length
  (widths from the host), the frozen layers under `no_grad`, the trained ones, a linear head
  on the token states, AdamW;
* one frozen layer pass (frozen mode): one forward pass of a single frozen transformer layer
  over the same train rows in batches of similar length (next to no padding), the unit of
  the issue's aim (a frozen epoch at most 0.1 of it).

Frozen and top-1 read a cache of the states entering the top layer, top-2 a cache of two.
Epochs of the contenders take turns (load from other processes hits all alike) and the best
of `--repeats` counts; `--clock cpu` times this process's CPU time instead of wall time.

    python benchmarks/encoder.py [--n 1122] [--batch-size 32] [--repeats 2] [--device cpu]
                                 [--clock wall|cpu] [--modes frozen top-1 top-2]
"""

from __future__ import annotations

import argparse
import copy
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multitune.config import validate_params
from multitune.data.builtin import movies_debates
from multitune.embed._batches import token_lengths
from multitune.embed.sentence_transformer import default_model_path, load_model
from multitune.embed.token_cache import TokenCache
from multitune.embed.token_pass import write_token_cache
from multitune.models.backbone import TextLayers
from multitune.models.heads import TaskSpec
from multitune.training import EpochReport, TrainingData, loop, train
from multitune.training.tokens import PackedTokens

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def _now() -> float:
    """The chosen clock: wall time, or this process's CPU time (less sensitive to other
    processes on a shared machine; with several threads it also counts their spinning)."""
    return _clock[0]()


MODES = {"frozen": (1, 0), "top-1": (1, 1), "top-2": (2, 2)}  # (layers cached, trained)


def _tags(text: str) -> list[str]:
    """BIO tags per whitespace word: a capitalized word that does not start a sentence."""
    tags, previous, sentence_start = [], "O", True
    for word in text.split():
        name = word[:1].isupper() and not sentence_start and word.strip(".,;:!?\"'").isalpha()
        tag = ("I-CAP" if previous != "O" else "B-CAP") if name else "O"
        tags.append(tag)
        previous, sentence_start = tag, bool(re.search(r"[.!?]$", word))
    return tags


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _params(layers: int, backbone: dict[str, Any], epochs: int, batch: int, device: str) -> Any:
    return validate_params(
        {
            "data": {
                "source": "x.parquet",
                "modalities": {
                    "text": {
                        "column": "text",
                        "encoder": {"name": "sentence_transformer", "cache_top_layers": layers},
                    }
                },
            },
            "tasks": [{"name": "ner", "type": "token_classification", "column": "ner"}],
            "model": {"backbone": backbone},
            "train": {
                "epochs": epochs,
                "epoch_steps": None,
                "batch_size": batch,
                "lr": 1e-4,
                "patience": 99,
                "device": device,
            },
        }
    )


def _data(cache: TokenCache, vectors: np.ndarray, tags: list[list[str]], device: str) -> Any:
    """The table as the trainer reads it: 90% of the rows train, 10% validate."""
    ids = cache.ids
    states, offsets, words = cache.aligned(ids)
    spec = TaskSpec(_params(1, {"name": "frozen"}, 1, 1, "cpu").tasks[0], None)
    split = np.where(np.arange(len(ids)) % 10 == 9, "val", "train")
    data = TrainingData.from_arrays(
        {"text": vectors},
        [spec],
        {"ner": tags},
        split,
        ids=list(ids),
        token_words={"ner": (words, offsets)},
    )
    tokens = PackedTokens.from_arrays(states, offsets, final=cache.aligned_final(ids))
    return replace(data, tokens={"text": tokens}, token_caches={"text": cache.info}).to(device)


def _trainer(params: Any, data: TrainingData, between: Callable[[], None], device: str) -> Any:
    """Run the trainer; returns its best training epoch and trial epoch (seconds), calling
    `between()` after every epoch (the other contenders' turn)."""
    marks: dict[str, list[float]] = {"eval": [], "end": [], "resume": []}
    evaluate = loop.evaluate

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
        if args[2] == "val":  # the epoch's validation (not the final metrics)
            _sync(device)
            marks["eval"].append(_now())
        return evaluate(*args, **kwargs)

    def callback(report: EpochReport) -> None:
        _sync(device)
        marks["end"].append(_now())
        between()
        marks["resume"].append(_now())

    loop.evaluate = timed_evaluate  # type: ignore[assignment]
    try:
        train(params, data, callback=callback)
    finally:
        loop.evaluate = evaluate  # type: ignore[assignment]
    # Epoch e's training: from the end of the previous epoch's turn to its validation; the
    # first epoch (with the model's set-up) is not counted.
    resume, ev, end = marks["resume"], marks["eval"], marks["end"]
    training = min(ev[e] - resume[e - 1] for e in range(1, len(end)))  # not the final metrics
    trial = min(end[e] - resume[e - 1] for e in range(1, len(end)))
    return training, trial


def _batches(n: int, batch: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[s : s + batch] for s in range(0, n, batch)]


class _Step:
    """One contender's epoch: a linear head over token states from `states(rows)`, masked
    cross-entropy over the labelled tokens, AdamW on what trains."""

    def __init__(
        self,
        states: Callable[[np.ndarray], tuple[Tensor, Tensor]],
        trained: list[nn.Parameter],
        targets: Tensor,
        hidden: int,
        classes: int,
    ) -> None:
        self.states, self.targets = states, targets
        self.head = nn.Linear(hidden, classes).to(targets.device)
        params = [*self.head.parameters(), *trained]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)

    def epoch(self, batches: list[np.ndarray], device: str) -> float:
        _sync(device)
        start = _now()
        for rows in batches:
            h, _ = self.states(rows)
            logits = self.head(h)
            y = self.targets[torch.from_numpy(rows).to(self.targets.device)][:, : h.shape[1]]
            loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=-1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        _sync(device)
        return _now() - start


def _today(layers: TextLayers, tokens: PackedTokens, device: str) -> Callable[..., Any]:
    """The path before issue 24 (`TextLayers.encode` and `PackedTokens.padded` as they were):
    every width read back from the device, the cached layers run every step."""
    from transformers.masking_utils import create_bidirectional_mask

    offsets = torch.as_tensor(tokens.offsets, device=device)

    def padded(rows: np.ndarray) -> tuple[Tensor, Tensor]:
        rows_t = torch.as_tensor(rows, device=device)
        start = offsets[rows_t]
        lengths = offsets[rows_t + 1] - start
        width = max(int(lengths.max()), 1)
        pos = torch.arange(width, device=device)
        mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
        index = (start.unsqueeze(1) + pos.unsqueeze(0)).clamp(max=len(tokens.states) - 1)
        return tokens.states[index].float() * mask.unsqueeze(-1), mask

    def run(states: Tensor, mask: Tensor) -> Tensor:
        attention = create_bidirectional_mask(
            config=layers.config, inputs_embeds=states, attention_mask=mask.long()
        )
        h = states
        with torch.no_grad():
            for layer in layers.below:
                h = layer(h, attention_mask=attention)
        for layer in layers.top:
            h = layer(h, attention_mask=attention)
        return h

    def encode(rows: np.ndarray) -> tuple[Tensor, Tensor]:
        states, mask = padded(rows)
        lengths = mask.sum(1)
        h = torch.zeros_like(states)
        for group in torch.argsort(lengths).split(layers.chunk_rows):
            width = max(int(lengths[group].max()), 1)
            h[group, :width] = run(states[group, :width], mask[group, :width])
        return h, mask

    return encode


def _bare(
    layers: list[nn.Module], trained: int, tokens: PackedTokens, config: Any, device: str
) -> Callable[..., Any]:
    """A bare loop's states: the batch's rows sorted by length (known on the host) and run in
    groups of 8, each padded to its longest row (the trainer's arithmetic, none of its code),
    the frozen layers under `no_grad`, the trained ones."""
    from transformers.masking_utils import create_bidirectional_mask

    frozen, top = layers[: len(layers) - trained], layers[len(layers) - trained :]

    def run(states: Tensor, mask: Tensor) -> Tensor:
        attention = create_bidirectional_mask(
            config=config,
            inputs_embeds=states,
            attention_mask=mask.long(),
            allow_is_bidirectional_skip=False,
        )
        h = states
        with torch.no_grad():
            for layer in frozen:
                h = layer(h, attention_mask=attention)
        for layer in top:
            h = layer(h, attention_mask=attention)
        return h

    def encode(rows: np.ndarray) -> tuple[Tensor, Tensor]:
        batch = tokens[rows]
        states, mask = batch.padded()
        lengths = batch.lengths
        order = np.argsort(lengths, kind="stable")
        index = torch.from_numpy(order).to(device, non_blocking=True)
        h = torch.zeros_like(states)
        for s in range(0, len(order), 8):
            group, width = index[s : s + 8], max(int(lengths[order[s : s + 8]].max()), 1)
            h[group, :width] = run(states[group, :width], mask[group, :width])
        return h, mask

    return encode


def _layer_pass(
    layer: nn.Module, tokens: PackedTokens, config: Any, rows: np.ndarray, batch: int, device: str
) -> float:
    """One forward pass of a single frozen layer over `rows`, in batches of rows of similar
    length (next to no padding: the cheapest such pass)."""
    from transformers.masking_utils import create_bidirectional_mask

    rows = rows[np.argsort(tokens[rows].lengths, kind="stable")]
    _sync(device)
    start = _now()
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            states, mask = tokens[rows[s : s + batch]].padded()
            attention = create_bidirectional_mask(
                config=config, inputs_embeds=states, attention_mask=mask.long()
            )
            layer(states, attention_mask=attention)
    _sync(device)
    return _now() - start


def main() -> None:
    """Run the benchmark and print its table."""
    from transformers import AutoModel

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1122, help="debate statements (at most 1122)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per contender")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--clock", default="wall", choices=sorted(_CLOCKS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    _clock[0] = _CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    device = args.device

    frame = movies_debates()
    texts = frame.loc[frame["party"].notna(), "text"].head(args.n).tolist()
    model = load_model(default_model_path(), device="cpu")
    window = int(model.max_seq_length or 0)
    fits = token_lengths(model, texts, window + 1) <= window
    texts = [t for t, ok in zip(texts, fits, strict=True) if ok]
    tags = [_tags(t) for t in texts]
    model_dir = str(default_model_path())
    ids = np.array([str(i) for i in range(len(texts))])
    caches, vectors = {}, np.empty((len(texts), 384), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for k in (1, 2):
            out = Path(tmp) / f"k{k}"
            write_token_cache(model, texts, ids, k, out, model_dir, 64, vectors=vectors)
            caches[k] = TokenCache.read(out)
        print(
            f"{len(texts)} debate statements ({int((~fits).sum())} over the {window}-token "
            "window left out), "
            f"{int(caches[1].offsets[-1])} tokens, batch {args.batch_size}, "
            f"{args.threads} threads, {device}, best of {args.repeats} epochs"
        )
        print(f"{'mode':8} {'trainer':>9} {'(trial)':>9} {'today':>9} {'bare':>9}  ratios")
        pretrained = list(AutoModel.from_pretrained(model_dir).encoder.layer)
        for mode in args.modes:
            cached, trained = MODES[mode]
            _run_mode(mode, cached, trained, caches[cached], vectors, tags, pretrained, args)


def _run_mode(
    mode: str,
    cached: int,
    trained: int,
    cache: TokenCache,
    vectors: np.ndarray,
    tags: list[list[str]],
    pretrained: list[nn.Module],
    args: argparse.Namespace,
) -> None:
    """Time one mode's contenders and print its row."""
    device = args.device
    data = _data(cache, vectors, tags, device)
    train_rows = data.splits["train"].cpu().numpy()
    targets = data.targets["ner"]
    classes = len(data.tasks[0].classes or [])
    tokens = data.tokens["text"]
    torch.manual_seed(0)

    today_layers = TextLayers(cache.info, trained)
    today_layers.load_pretrained(cache.info["model"])
    today_layers.to(device).train()
    today = _Step(
        _today(today_layers, tokens, device),
        list(today_layers.top.parameters()),
        targets,
        384,
        classes,
    )
    own = [copy.deepcopy(layer).to(device) for layer in pretrained[-cached:]]
    for i, layer in enumerate(own):
        layer.requires_grad_(i >= cached - trained)
        layer.train(i >= cached - trained)
    bare = _Step(
        _bare(own, trained, tokens, today_layers.config, device),
        [p for layer in own for p in layer.parameters() if p.requires_grad],
        targets,
        384,
        classes,
    )
    single = copy.deepcopy(pretrained[-1]).to(device).eval()
    times: dict[str, list[float]] = {"today": [], "bare": [], "layer": []}
    turn = [0]

    def between() -> None:
        batches = [train_rows[b] for b in _batches(len(train_rows), args.batch_size, turn[0])]
        turn[0] += 1
        times["today"].append(today.epoch(batches, device))
        times["bare"].append(bare.epoch(batches, device))
        if mode == "frozen":
            config = today_layers.config
            times["layer"].append(
                _layer_pass(single, tokens, config, train_rows, args.batch_size, device)
            )

    backbone = {"name": "frozen"} if not trained else {"name": "top_k", "layers": trained}
    params = _params(cached, backbone, args.repeats + 1, args.batch_size, device)
    training, trial = _trainer(params, data, between, device)
    best = {k: min(v) for k, v in times.items() if v}
    ratios = f"today/trainer {best['today'] / training:5.1f}x, "
    ratios += f"trainer/bare {training / best['bare']:.2f}"
    if mode == "frozen":
        one_layer = best["layer"]
        ratios += f", trainer/one frozen layer pass ({one_layer:.3f}s) {training / one_layer:.3f}"
        ratios += " (aim <= 0.1)"
    else:
        ratios += " (aim: today/trainer >= 1)"
    print(
        f"{mode:8} {training:8.3f}s {trial:8.3f}s {best['today']:8.3f}s {best['bare']:8.3f}s  "
        + ratios
    )


if __name__ == "__main__":
    main()
