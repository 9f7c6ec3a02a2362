"""A lexical view of text: TF-IDF, then truncated SVD, fitted on train rows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from multitune.embed.base import ENCODERS, Encoder
from multitune.registry import MethodConfig


class TfidfSvdConfig(MethodConfig):
    """TF-IDF over word n-grams reduced to `dims` dimensions by truncated SVD (LSA)."""

    name: Literal["tfidf_svd"] = "tfidf_svd"
    dims: int = Field(default=128, ge=1, le=4096, description="Output dimension.")
    max_features: int = Field(default=50_000, ge=1, description="Vocabulary cap.")
    ngram_max: int = Field(default=2, ge=1, le=5, description="Word n-grams up to this length.")
    min_df: int = Field(default=2, ge=1, description="Drop terms seen in fewer train rows.")
    seed: int = Field(default=0, description="SVD's random state.")


@ENCODERS.register(TfidfSvdConfig)
class TfidfSvdEncoder(Encoder):
    """TODO(issue 2): implementation."""
