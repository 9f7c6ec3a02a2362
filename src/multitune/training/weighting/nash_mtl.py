"""Nash-MTL: the task weights solve a Nash bargaining game between tasks (Navon et al., 2022,
"Multi-Task Learning as a Bargaining Game", ICML, Algorithm 1). Via
`torchjd.aggregation.NashMTL` (needs cvxpy and ecos). Its solver state (previous weights)
lives in the aggregator and is not checkpointed; a resumed run restarts it."""

from __future__ import annotations

import warnings

from torch import Tensor

from multitune.config.methods.weighting import NashMtlConfig
from multitune.training.weighting.base import WEIGHTINGS, StepContext
from multitune.training.weighting.jacobian import TorchJDAggregator


@WEIGHTINGS.register(NashMtlConfig)
class NashMtlAggregator(TorchJDAggregator):
    """Nash bargaining weights over task gradients."""

    config: NashMtlConfig

    def make_aggregator(self) -> object:
        """``NashMTL`` with this config's settings."""
        from torchjd.aggregation import NashMTL  # start-up time: see jacobian.py

        return NashMTL(
            n_tasks=len(self.tasks),
            max_norm=self.config.max_norm,
            update_weights_every=self.config.update_weights_every,
            optim_niter=self.config.optim_niter,
        )

    def aggregate_backward(
        self, losses: Tensor, features: list[Tensor], ctx: StepContext
    ) -> Tensor:
        """As the base, without cvxpy's repeated "not DPP" notice (harmless, every step)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not DPP.*", category=UserWarning)
            return super().aggregate_backward(losses, features, ctx)
