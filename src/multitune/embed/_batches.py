"""Length-sorted batched inference for sentence-transformers models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def embedding_dim(model: SentenceTransformer) -> int:
    """The model's output size (the method's name changed across sentence-transformers)."""
    if hasattr(model, "get_embedding_dimension"):
        return int(model.get_embedding_dimension() or 0)
    return int(model.get_sentence_embedding_dimension() or 0)


def token_lengths(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Each text's token count after truncation to the model's `max_seq_length`."""
    encoded = model.tokenizer(
        texts,
        truncation=True,
        max_length=model.max_seq_length,
        add_special_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return np.fromiter(
        (len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts)
    )


def encode_sorted(
    model: SentenceTransformer, texts: list[str], batch_size: int, *, progress: bool | None = None
) -> np.ndarray:
    """`(len(texts), dim)` float32 embeddings, computed longest batch first.

    Sorting by exact token count (not characters, as `encode` does) keeps each batch's
    padding near zero. Each batch goes through `model.preprocess` and the model's modules, as
    in `SentenceTransformer.encode`.
    """
    import torch

    from multitune.console import console

    dim = embedding_dim(model)
    out = np.empty((len(texts), dim), dtype=np.float32)
    if not texts:
        return out
    order = np.argsort(-token_lengths(model, texts), kind="stable")
    starts = range(0, len(texts), batch_size)
    show = console.is_terminal if progress is None else progress
    model.eval()
    with _progress(show, len(texts)) as advance, torch.inference_mode():
        for start in starts:
            idx = order[start : start + batch_size]
            features = model.preprocess([texts[i] for i in idx])
            features = {
                k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()
            }
            embeddings = model(features)["sentence_embedding"]
            out[idx] = embeddings.float().cpu().numpy()
            advance(len(idx))
    return out


class _progress:
    """A rich progress bar over sentences (silent when not on a terminal)."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.show:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from multitune.console import console

        self.bar = Progress(
            "embedding", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        )
        self.bar.start()
        task = self.bar.add_task("embed", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.show:
            self.bar.stop()
