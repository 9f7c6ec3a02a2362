"""Sentences/s of the embed stage's text encoder vs plain `SentenceTransformer.encode`.

Both embed the same 2,000 texts of the bundled example with the bundled all-MiniLM-L6-v2 on
CPU; plain `encode(batch_size=64)` is the baseline. Each is timed `--rounds` times, taking
turns, and the best round counts (other processes on the machine only ever slow a round
down). Prints both rates, the ratio and the largest absolute difference between vectors.

    python benchmarks/embed.py [--n 2000] [--rounds 3] [--backend onnx|torch]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from multitune.data.builtin import movies_debates
from multitune.embed.sentence_transformer import (
    SentenceTransformerConfig,
    SentenceTransformerEncoder,
    default_model_path,
    load_model,
)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="texts to embed")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per encoder")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    args = parser.parse_args()

    texts = movies_debates()["text"].sample(n=args.n, random_state=0).tolist()
    model = load_model(default_model_path(), device="cpu")
    config = SentenceTransformerConfig(backend=args.backend)
    ours = SentenceTransformerEncoder(config, model=model)
    start = time.perf_counter()
    ours.encode(texts[:64])  # warm-up; exports the ONNX model if not cached
    setup = time.perf_counter() - start
    model.encode(texts[:64], batch_size=64)

    best = {"plain": np.inf, "ours": np.inf}
    for _ in range(args.rounds):
        start = time.perf_counter()
        reference = model.encode(texts, batch_size=64, convert_to_numpy=True)
        best["plain"] = min(best["plain"], time.perf_counter() - start)
        start = time.perf_counter()
        vectors = ours.encode(texts)
        best["ours"] = min(best["ours"], time.perf_counter() - start)

    plain_rate, our_rate = args.n / best["plain"], args.n / best["ours"]
    print(f"texts: {args.n} from builtin:movies-debates, best of {args.rounds} rounds")
    print(f"plain SentenceTransformer.encode(batch_size=64): {plain_rate:8.1f} sentences/s")
    print(f"embed stage encoder (backend={ours.backend}):    {our_rate:8.1f} sentences/s")
    print(f"(first-call set-up incl. any ONNX export: {setup:.1f} s)")
    print(f"ratio: {our_rate / plain_rate:.2f}x")
    print(f"max abs difference: {np.abs(vectors - reference).max():.2e}")


if __name__ == "__main__":
    main()
