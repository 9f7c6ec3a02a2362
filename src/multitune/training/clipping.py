"""Gradient-norm clipping for the training loop (``train.grad_clip``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# Margin under which a norm is "clearly" below max_norm: far above float32 rounding (~1e-7
# relative per op), so the factor torch would compute is exactly 1 whenever it holds.
_MARGIN = 1e-3


def clip_grad_norm(params: Sequence[nn.Parameter], max_norm: float) -> None:
    """Scale the gradients of `params` so that their global L2 norm is at most `max_norm`.

    Bit-identical to ``torch.nn.utils.clip_grad_norm_(params, max_norm)``: the same per-tensor
    norms and their norm, then ``grad *= min(max_norm / (norm + 1e-6), 1)``. Gradients on the
    CPU, of one dtype, take a shorter path: the same kernels without torch's regrouping by
    device and dtype, and, since reading the norm syncs no device there, no factor and no
    multiply when the norm is clearly below `max_norm` (the factor is then exactly 1; torch
    multiplies anyway to spare a GPU the sync). Elsewhere it is torch's function.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if not _plain_cpu(grads):
        nn.utils.clip_grad_norm_(params, max_norm)
        return
    with torch.no_grad():
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        if (float(total) + 1e-6) * (1 + _MARGIN) < max_norm:
            return
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _plain_cpu(grads: list[Tensor]) -> bool:
    """Dense CPU tensors of one dtype: one group for torch, on its foreach kernels."""
    dtype = grads[0].dtype
    return all(
        type(g) is Tensor
        and g.device.type == "cpu"
        and g.layout == torch.strided
        and g.dtype == dtype
        for g in grads
    )
