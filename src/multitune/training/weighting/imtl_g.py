"""IMTL-G: impartial gradient weights, so the update has equal projections on every task
gradient (Liu et al., 2021, "Towards Impartial Multi-task Learning", ICLR, eq. 8; generalised to
linearly dependent gradients by torchjd). Via `torchjd.aggregation.IMTLG`."""

from __future__ import annotations

from multitune.config.methods.weighting import IMTLGConfig
from multitune.training.weighting.base import WEIGHTINGS
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(IMTLGConfig)
class IMTLGAggregator(TorchJDAggregator):
    """Equal projection of the update on every task gradient."""

    config: IMTLGConfig

    def make_aggregator(self) -> object:
        """``IMTLG()``."""
        from torchjd.aggregation import IMTLG  # start-up time: see jacobian.py

        return IMTLG()
