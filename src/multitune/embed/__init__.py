"""Encoders: each modality's source columns -> fixed-size vectors."""

from __future__ import annotations

from multitune.embed import numeric, precomputed, sentence_transformer, tfidf_svd
from multitune.embed.base import ENCODERS, Encoder, load_encoder

__all__ = [
    "ENCODERS",
    "Encoder",
    "load_encoder",
    "numeric",
    "precomputed",
    "sentence_transformer",
    "tfidf_svd",
]
