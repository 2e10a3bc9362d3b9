"""Kernels of megatron-ssd, importable as `megatron_ssd.kernels` (never as a top-level `kernels`).

Fused linear + cross-entropy (docs: `linear_ce`'s module docstring): `fused_linear_cross_entropy` / `FusedLinearCrossEntropy`
(Triton; CUDA, or CPU under TRITON_INTERPRET=1) and `reference_linear_cross_entropy` (pure torch).
Importing this package does not import Triton; the kernels load on first use.
"""
from .linear_ce import LinearCrossEntropyFunction, fused_linear_cross_entropy
from .linear_ce_module import FusedLinearCrossEntropy
from .linear_ce_reference import reference_linear_cross_entropy

__all__ = [
    "FusedLinearCrossEntropy",
    "LinearCrossEntropyFunction",
    "fused_linear_cross_entropy",
    "reference_linear_cross_entropy",
]
