"""A lexical view of text: TF-IDF, then truncated SVD, fitted on train rows.

TF-IDF uses sublinear term frequency, smoothed idf and l2-normalized rows (as scikit-learn's
`TfidfVectorizer(sublinear_tf=True)`); the SVD (latent semantic analysis, Deerwester et al.
1990) projects onto the top `dims` right singular vectors of the train matrix. The state is a
vocabulary (JSON), the idf weights and the projection (`.npy`): no pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multitune.config.methods.encoders import TfidfSvdConfig
from multitune.embed.base import ENCODERS, Encoder
from multitune.errors import DataError
from multitune.registry import MethodConfig

if TYPE_CHECKING:  # for annotations only; scikit-learn (and scipy) load when the encoder runs
    from scipy import sparse

VOCABULARY, IDF, COMPONENTS = "vocabulary.json", "idf.npy", "components.npy"


def _texts(frame: pd.DataFrame) -> list[str]:
    return frame.iloc[:, 0].astype("string").fillna("").tolist()  # type: ignore[no-any-return]


@ENCODERS.register(TfidfSvdConfig)
class TfidfSvdEncoder(Encoder):
    """TF-IDF (train vocabulary and idf) -> truncated SVD (train singular vectors)."""

    config: TfidfSvdConfig

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.components = np.zeros((0, 0))

    def _counts(self, texts: list[str]) -> sparse.csr_matrix:
        from sklearn.feature_extraction.text import CountVectorizer  # start-up time (see `fit`)

        vectorizer = CountVectorizer(
            vocabulary=self.vocabulary, ngram_range=(1, self.config.ngram_max)
        )
        return vectorizer.transform(texts).astype(np.float64)

    def _tfidf(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        from sklearn.preprocessing import normalize  # start-up time (see `fit`)

        counts = counts.tocsr(copy=True)
        counts.data = (1.0 + np.log(counts.data)) * self.idf[counts.indices]
        return normalize(counts, norm="l2", copy=False)

    def fit(self, frame: pd.DataFrame) -> None:
        """Learn vocabulary, idf and the SVD projection from the train rows' text."""
        # Imported here: scikit-learn takes a second to import, and a process that imports
        # the encoders without running this one (serving, other modalities) needs none of it.
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import CountVectorizer

        texts = _texts(frame)
        cfg = self.config
        vectorizer = CountVectorizer(
            ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, max_features=cfg.max_features
        )
        try:
            counts = vectorizer.fit_transform(texts).astype(np.float64)
        except ValueError as err:  # empty vocabulary
            raise DataError(
                f"tfidf_svd: cannot build a vocabulary from train rows: {err}"
            ) from None
        self.vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        if cfg.dims >= counts.shape[1]:
            raise DataError(
                f"tfidf_svd: dims={cfg.dims} needs a vocabulary larger than that, but the train "
                f"rows give {counts.shape[1]} terms; lower `dims` or `min_df`"
            )
        svd = TruncatedSVD(n_components=cfg.dims, random_state=cfg.seed)
        svd.fit(self._tfidf(counts))
        self.components = np.ascontiguousarray(svd.components_, dtype=np.float64)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Project rows' TF-IDF vectors onto the train SVD components."""
        projected = self._tfidf(self._counts(_texts(frame))) @ self.components.T
        return np.ascontiguousarray(projected, dtype=np.float32)

    @property
    def dim(self) -> int:
        """`dims`."""
        return int(self.config.dims)

    def save(self, directory: Path) -> None:
        """Write vocabulary (JSON), idf and components (`.npy`)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCABULARY).write_text(json.dumps(self.vocabulary))
        np.save(directory / IDF, self.idf, allow_pickle=False)
        np.save(directory / COMPONENTS, self.components, allow_pickle=False)

    @classmethod
    def load(cls, config: MethodConfig, directory: Path) -> TfidfSvdEncoder:
        """Restore a fitted encoder from `save`'s files."""
        encoder = cls(config)
        encoder.vocabulary = json.loads((directory / VOCABULARY).read_text())
        encoder.idf = np.load(directory / IDF, allow_pickle=False)
        encoder.components = np.load(directory / COMPONENTS, allow_pickle=False)
        return encoder

    def describe(self) -> dict[str, Any]:
        """meta.json entry."""
        return {"encoder": "tfidf_svd", "dim": self.dim, "vocabulary": len(self.vocabulary)}
