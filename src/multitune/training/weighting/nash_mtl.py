"""Nash-MTL: the task weights solve a Nash bargaining game between tasks (Navon et al., 2022,
"Multi-Task Learning as a Bargaining Game", ICML, Algorithm 1). Via
`torchjd.aggregation.NashMTL` (needs cvxpy and ecos). Its solver state (previous weights)
lives in the aggregator and is not checkpointed; a resumed run restarts it."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field
from torch import Tensor

from multitune.registry import MethodConfig
from multitune.training.weighting.base import WEIGHTINGS, StepContext
from multitune.training.weighting.jacobian import TorchJDAggregator


class NashMtlConfig(MethodConfig):
    """Nash bargaining weights over task gradients."""

    name: Literal["nash_mtl"] = "nash_mtl"
    max_norm: float = Field(default=1.0, ge=0.0, description="Max norm of the update; 0 = off.")
    update_weights_every: int = Field(default=1, ge=1, description="Steps between solves.")
    optim_niter: int = Field(default=20, ge=1, description="Iterations of the inner solver.")


@WEIGHTINGS.register(NashMtlConfig)
class NashMtlAggregator(TorchJDAggregator):
    """Nash bargaining weights over task gradients."""

    config: NashMtlConfig

    def make_aggregator(self) -> object:
        """``NashMTL`` with this config's settings."""
        from torchjd.aggregation import NashMTL

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
