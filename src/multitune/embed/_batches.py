"""Length-sorted batched inference for sentence-transformers models."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from multitune import progress

if TYPE_CHECKING:  # for annotations only: sentence-transformers loads with the first model
    from sentence_transformers import SentenceTransformer

TokenRunner = Callable[[dict[str, Any]], np.ndarray]


def embedding_dim(model: SentenceTransformer) -> int:
    """The model's output size (the method's name changed across sentence-transformers)."""
    if hasattr(model, "get_embedding_dimension"):
        return int(model.get_embedding_dimension() or 0)
    return int(model.get_sentence_embedding_dimension() or 0)


def token_lengths(
    model: SentenceTransformer, texts: list[str], max_length: int | None = None
) -> np.ndarray:
    """Each text's token count after truncation to `max_length` (default: the model's
    `max_seq_length`)."""
    encoded = model.tokenizer(
        texts,
        truncation=True,
        max_length=max_length or model.max_seq_length,
        add_special_tokens=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return np.fromiter(
        (len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts)
    )


def torch_tokens(model: SentenceTransformer, features: dict[str, Any]) -> np.ndarray:
    """Token embeddings from the model's first module, in PyTorch."""
    import torch  # loaded already, with the model: importing this module does not load it

    with torch.inference_mode():
        moved = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
        return model[0](moved)["token_embeddings"].float().cpu().numpy()  # type: ignore[no-any-return]


def finish(model: SentenceTransformer, tokens: np.ndarray, features: dict[str, Any]) -> np.ndarray:
    """Run the model's later modules (pooling, normalization, ...) on token embeddings."""
    import torch  # loaded already, with the model: importing this module does not load it

    with torch.inference_mode():
        state = dict(features) | {"token_embeddings": torch.from_numpy(tokens)}
        for module in list(model)[1:]:
            state = module(state)
        return state["sentence_embedding"].float().cpu().numpy()  # type: ignore[no-any-return]


def encode_sorted(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int,
    *,
    tokens: TokenRunner | None = None,
) -> np.ndarray:
    """`(len(texts), dim)` float32 embeddings, computed longest batch first.

    Sorting by exact token count (not characters, as `encode` does) keeps each batch's
    padding near zero. Each batch goes through `model.preprocess`, then `tokens` (default: the
    model's transformer in PyTorch), then the model's later modules. Each batch's texts count
    as done for the stage's progress line (`multitune.progress.advance`).
    """
    run = tokens or (lambda features: torch_tokens(model, features))
    out = np.empty((len(texts), embedding_dim(model)), dtype=np.float32)
    if not texts:
        return out
    model.eval()
    order = np.argsort(-token_lengths(model, texts), kind="stable")
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        features = model.preprocess([texts[i] for i in idx])
        out[idx] = finish(model, run(features), features)
        progress.advance(len(idx))
    return out
