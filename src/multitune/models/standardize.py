"""Input standardization: each feature centred and scaled by statistics of the train rows.

The linear reference standardizes every feature on train rows before it fits; a network that
takes the raw vectors sees features on very different scales (MiniLM dimensions are about 0.05,
TF-IDF SVD components decay), and its "linear option" is then not the linear model the floor
fits. The statistics live in the network as buffers, so a saved or registered model applies them
to raw input; they are fitted once, on train rows only (`Standardize.fit`), never on val or
test. A constant feature (zero variance on train) is centred only, as scikit-learn's
`StandardScaler` does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_CHUNK = 65_536
"""Rows summed at a time while fitting: no copy of the train rows' features is made."""


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature, with `mean` and `std` fitted on train rows.

    Input and output `(batch, dim)`. Until `fit` is called it is the identity.
    """

    mean: Tensor
    scale: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: Tensor, rows: Tensor) -> None:
        """Fit on `features[rows]` (float64 sums, `_CHUNK` rows at a time).

        Args:
            features: ``(n, dim)`` features of every row.
            rows: Indices of the rows to fit on (the train split).

        Raises:
            ValueError: `rows` is empty, or the fitted statistics are not finite.
        """
        if rows.numel() == 0:
            raise ValueError("cannot standardize on zero train rows")
        total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
        squares = torch.zeros_like(total)
        for start in range(0, rows.numel(), _CHUNK):
            chunk = features[rows[start : start + _CHUNK]].to(torch.float64)
            total += chunk.sum(0)
            squares += chunk.square().sum(0)
        n = rows.numel()
        mean = total / n
        var = (squares / n - mean.square()).clamp_min(0.0)
        std = var.sqrt()
        # Zero (or rounding-level) variance: centre only, as StandardScaler does.
        constant = std <= 1e-7 * mean.abs().clamp_min(1.0)
        std = torch.where(constant, torch.ones_like(std), std)
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("standardization statistics are not finite (inf in the features?)")
        self.mean.copy_(mean.to(self.mean.dtype))
        self.scale.copy_(std.to(self.scale.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Standardize `(batch, dim)` vectors."""
        return (x - self.mean) / self.scale
