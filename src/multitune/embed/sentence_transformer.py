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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multitune import logs, progress
from multitune.config.methods.encoders import SentenceTransformerConfig, default_model_path
from multitune.embed._batches import TokenRunner, embedding_dim, encode_sorted, token_lengths
from multitune.embed._onnx import onnx_tokens
from multitune.embed.base import ENCODERS, Encoder
from multitune.embed.token_pass import TokenArrays, token_states, write_token_cache
from multitune.errors import DataError
from multitune.registry import MethodConfig

if TYPE_CHECKING:  # for annotations only: sentence-transformers loads with the first model
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
STATE = "sentence_transformer.json"


def load_model(path: str | Path, device: str | None = None) -> SentenceTransformer:
    """Load a local sentence-transformers model directory, offline."""
    # Imported here: sentence-transformers (torch, transformers) takes seconds to import, and
    # a modality of other encoders, or a stage that only reads features, needs none of it.
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
        tokens = self._token_runner()
        return encode_sorted(self.model, texts, self.config.batch_size, tokens=tokens)

    def _token_runner(self) -> TokenRunner | None:
        """ONNX Runtime's token embeddings where configured and verified, else None (torch).

        A modality that caches token states runs in PyTorch: its vectors come from the
        PyTorch pass that caches them, and are served the same way."""
        if not self._backend_ready:
            self._backend_ready = True
            if self.config.backend == "onnx" and not self.config.cache_top_layers:
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
        texts = _texts(frame)
        return token_states(self.model, texts, layers, self.config.batch_size, self.config.stride)

    def over_window(self, frame: pd.DataFrame) -> int:
        """How many of the texts are longer than the encoder's window (their pooled vectors
        read the first window only)."""
        window = int(self.model.max_seq_length or self.model.tokenizer.model_max_length)
        return int((token_lengths(self.model, _texts(frame), window + 1) > window).sum())

    @property
    def backend(self) -> str:
        """The backend in use: `onnx` or `torch`."""
        return "onnx" if self._token_runner() is not None else "torch"

    @property
    def dim(self) -> int:
        """The model's embedding size."""
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
        import sentence_transformers  # loaded already, with the model (see `load_model`)

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
