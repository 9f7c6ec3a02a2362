"""Examples/s of fine-tuning the text encoder's top k layers: from cached states vs no cache.

Both train the top `k` layers of the bundled all-MiniLM-L6-v2 plus a linear head on the same
texts of the bundled example, in the same batches, for one epoch:

* cached: multitune's `top_k` backbone (`TextLayers`) on the token states the embed stage
  caches (`PackedTokens`, float16), so only the k layers run; rows of similar length run
  together (`chunk_rows`), each group padded to its own longest row;
* cached, one pad: the same, but the whole batch padded to its longest row (the gain of the
  cache alone, without the grouping);
* no cache: the whole transformer runs every step (tokenizer, embeddings, the frozen lower
  layers without gradients, then the k trained layers), the usual partial fine-tuning recipe.

Each epoch is timed `--rounds` times, the contenders taking turns; the best round counts.
Prints examples/s per contender, the ratio for each k, and the size of the cache.

    python benchmarks/encoder.py [--n 1024] [--batch-size 32] [--rounds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multitune.data.builtin import movies_debates
from multitune.embed.sentence_transformer import default_model_path, load_model
from multitune.embed.token_cache import TokenCache, write_token_cache
from multitune.models.backbone import TextLayers
from multitune.training.tokens import PackedTokens


def _epoch(step: Callable[[np.ndarray], None], batches: list[np.ndarray], device: str) -> float:
    start = time.perf_counter()
    for rows in batches:
        step(rows)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1024, help="texts in the epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs per contender")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device

    frame = movies_debates().sample(n=args.n, random_state=0)
    texts = frame["text"].tolist()
    # Any two-class target will do for timing: movie rows vs debate rows.
    labels = torch.from_numpy(frame["subjective"].notna().to_numpy(dtype=bool).copy())
    model = load_model(default_model_path(), device="cpu")
    rng = np.random.default_rng(0)
    order = rng.permutation(args.n)
    batches = [order[s : s + args.batch_size] for s in range(0, args.n, args.batch_size)]
    labels = labels.long().to(device)

    with tempfile.TemporaryDirectory() as tmp:
        ids = np.array([str(i) for i in range(args.n)])
        top = int(model[0].auto_model.config.num_hidden_layers)
        sizes, caches = {}, {}
        for k in (1, 2):
            start = time.perf_counter()
            write_token_cache(
                model, texts, ids, k, Path(tmp) / f"k{k}", str(default_model_path()), 64
            )
            cache = TokenCache.read(Path(tmp) / f"k{k}")
            sizes[k] = (cache.info["bytes"], time.perf_counter() - start)
            caches[k] = cache

        print(f"{args.n} texts, batch {args.batch_size}, {args.threads} threads, {device}")
        for k in (1, 2):
            cache = caches[k]
            states, offsets, _ = cache.aligned(ids)
            tokens = PackedTokens.from_arrays(states, offsets, device=device)
            layers = TextLayers(cache.info, k)
            layers.load_pretrained(cache.info["model"])

            def cached(
                rows: np.ndarray, tokens: PackedTokens = tokens
            ) -> tuple[torch.Tensor, ...]:
                return tokens[torch.as_tensor(rows, device=device)].padded()

            cached_step = _trainer(layers.to(device), cached, labels)

            full = copy.deepcopy(model[0].auto_model).to(device)
            for i, layer in enumerate(full.encoder.layer):
                layer.requires_grad_(i >= top - k)
            full.embeddings.requires_grad_(False)

            def features(rows: np.ndarray, full: nn.Module = full) -> tuple[torch.Tensor, ...]:
                enc = model.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=model.max_seq_length,
                    return_tensors="pt",
                ).to(device)
                h = full(**enc).last_hidden_state
                return h, enc["attention_mask"].bool()

            uncached_step = _trainer(_Pool(), features, labels, extra=full)
            one_pad = TextLayers(cache.info, k)
            one_pad.load_pretrained(cache.info["model"])
            one_pad.chunk_rows = args.batch_size
            one_pad_step = _trainer(one_pad.to(device), cached, labels)
            steps = {"cached": cached_step, "cached, one pad": one_pad_step}
            steps["no cache"] = uncached_step
            best = dict.fromkeys(steps, float("inf"))
            for _ in range(args.rounds):
                for name, step in steps.items():
                    best[name] = min(best[name], _epoch(step, batches, device))
            rate = {name: args.n / t for name, t in best.items()}
            print(
                f"k={k}: "
                + ", ".join(f"{name} {r:.1f} ex/s" for name, r in rate.items())
                + f"; cached / no cache {rate['cached'] / rate['no cache']:.2f}x"
                f" (one pad: {rate['cached, one pad'] / rate['no cache']:.2f}x)"
            )
        for k, (size, seconds) in sizes.items():
            per_row = size / args.n / 1024
            print(f"cache k={k}: {size / 2**20:.1f} MiB ({per_row:.1f} KiB/row), {seconds:.1f}s")


class _Pool(nn.Module):
    """Mean pooling and L2 normalization, as all-MiniLM-L6-v2 pools."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.unsqueeze(-1).to(h.dtype)
        return nn.functional.normalize((h * w).sum(1) / w.sum(1).clamp(min=1e-9), dim=1)


def _trainer(
    encoder: nn.Module,
    inputs: Callable[[np.ndarray], tuple[torch.Tensor, ...]],
    labels: torch.Tensor,
    extra: nn.Module | None = None,
) -> Callable[[np.ndarray], None]:
    """One AdamW step on (encoder -> linear head -> cross-entropy) per batch of rows."""
    device = labels.device
    head = nn.Linear(384, 2).to(device)
    params = [p for m in (encoder, head, extra) if m is not None for p in m.parameters()]
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-4)
    encoder.train()
    if extra is not None:
        extra.train()

    def step(rows: np.ndarray) -> None:
        pooled = encoder(*inputs(rows))
        loss = nn.functional.cross_entropy(head(pooled), labels[torch.as_tensor(rows)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


if __name__ == "__main__":
    main()
