"""`FusedLinearCrossEntropy`: the fused loss as an nn.Module, for code that configures losses as modules.

It holds only the loss options; the weight stays owned by the model (e.g. Megatron's output layer or the tied
embedding), so the module can be swapped for nn.CrossEntropyLoss-style heads without moving parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from .linear_ce import fused_linear_cross_entropy
from .linear_ce_checks import REDUCTIONS


class FusedLinearCrossEntropy(nn.Module):
    def __init__(self, *, ignore_index: int = -100, reduction: str = "mean", tp_group=None,
                 softcap: float | None = None, z_loss: float = 0.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.ignore_index, self.reduction, self.tp_group = ignore_index, reduction, tp_group
        self.softcap, self.z_loss = softcap, z_loss

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return fused_linear_cross_entropy(hidden, weight, labels, ignore_index=self.ignore_index,
                                          reduction=self.reduction, tp_group=self.tp_group,
                                          softcap=self.softcap, z_loss=self.z_loss)

    def extra_repr(self) -> str:
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, softcap={self.softcap}, "
                f"z_loss={self.z_loss}, tp={'yes' if self.tp_group is not None else 'no'}")
