"""Token classification head: one label per token from the text backbone's token states.

Only each word's first sub-word token carries a label (target -1 elsewhere), the usual
alignment for named-entity recognition with sub-word tokenizers (Devlin et al., 2019, "BERT",
sec. 5.3); the loss is the cross-entropy averaged over the labelled tokens of the batch.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from multitune.models.heads.base import TaskHead, masked_mean, register_head


@register_head("token_classification")
class TokenClassificationHead(TaskHead):
    """Logits ``(batch, T, C)`` from token states ``(batch, T, H)``; target: class index per
    token ``(batch, L)`` (long, -1 = no label, `L` >= `T`: the table's longest row)."""

    reads_tokens: ClassVar[bool] = True

    def loss(self, out: Tensor, target: Tensor, labelled: Tensor) -> Tensor:
        """Cross-entropy over the labelled tokens of labelled rows."""
        y = target[:, : out.shape[1]]
        valid = (y >= 0) & labelled.unsqueeze(1)
        per_token = F.cross_entropy(out.transpose(1, 2), y.clamp_min(0), reduction="none")
        return masked_mean(per_token, valid)

    def predict(self, out: Tensor) -> Tensor:
        """Class probabilities per token ``(batch, T, C)``."""
        return torch.softmax(out, dim=-1)
