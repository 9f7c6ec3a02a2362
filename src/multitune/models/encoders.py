"""Per-modality projection: a small MLP from a modality's vectors to a common width."""

from __future__ import annotations

from torch import Tensor, nn


class ModalityEncoder(nn.Module):
    """Projects one modality's pretrained vectors to `hidden` features.

    `layers` blocks of Linear -> GELU -> Dropout; the first maps `in_dim` to `hidden`, the rest
    keep `hidden`. ``layers=0`` is one Linear map with no activation, so that with concat fusion
    and an empty trunk the whole network is a linear model. Input `(batch, in_dim)`, output
    `(batch, hidden)`.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = [] if layers else [nn.Linear(in_dim, hidden)]
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        """Encode `(batch, in_dim)` vectors to `(batch, hidden)`."""
        return self.net(x)


def mlp(in_dim: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    """Linear -> GELU -> Dropout blocks through the widths in `hidden`; returns (net, out_dim)."""
    blocks: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        blocks += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*blocks), width
