"""Model FLOPs, MFU and the peak FLOP/s they are measured against.

FLOPs of one training step (forward + backward), per token:

    F_token = 6 * N_matmul  +  12 * L * (n_heads * d_head) * S_eff

  * 6 * N_matmul: every weight of a matrix multiply costs 2 FLOPs per token forward and 4 backward (grad of
    input and of weight). N_matmul counts the weights a token actually multiplies with: per layer the Q, K, V
    and output projections and the MLP (for MoE: the router plus the top-k experts a token is routed to, not
    all experts), plus the output projection over the padded vocabulary (the same matrix as the input embedding
    when they are tied; the embedding *lookup* itself is not a matmul and is not counted). Norms, RoPE,
    softmax and the loss are left out (well under 1%).
  * 12 * L * (n_heads * d_head) * S_eff: attention scores Q K^T and the weighted sum A V, 2 * 2 * S * d FLOPs
    per token and layer forward, x3 for forward + backward. As in the PaLM / Megatron MFU convention the full
    S x S score matrix is counted (a causal kernel skips about half of it; counting it anyway keeps MFU
    comparable with published numbers). With packed documents a token attends only to its own document, so
    S is the token-weighted mean document length S_eff = sum(len_d^2) / sum(len_d) over the segments of the
    bins processed (for one unpacked sequence of length S this is S).
  * Recomputation (train.recompute) re-runs parts of the forward; that work is *not* model FLOPs, so MFU
    does not rise with it (hardware FLOPs would).

MFU = (F_token * tokens of the step) / (step seconds * devices) / peak FLOP/s per device.
Peak per device: NVIDIA's dense (no sparsity) tensor-core numbers for the training dtype (H100/H200 SXM bf16
989 TFLOP/s, fp8 twice that); on a CPU there is no datasheet number that means anything for torch, so the
peak is *measured*: the rate of a large matmul in the training dtype on this machine, in the same process
(`measure_matmul_flops`, best of a few sizes, in the training dtype and in fp32, whichever is faster - a CPU
without native bf16 emulates bf16 GEMMs far below its fp32 rate), i.e. CPU MFU is "fraction of what torch's
GEMM achieves here".
"""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import torch

# Dense bf16 tensor-core peak per GPU (TFLOP/s); fp8 doubles it on Hopper/Blackwell.
GPU_PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "GB200": 2500.0,
    "A100": 312.0,
}


def layer_matmul_weights(info) -> dict[str, int]:
    """The matmul weights of one transformer layer by kind: "attention" (Q, K, V, O), and "mlp" (the SwiGLU's gate,
    up, down) for a dense model or "router" and "expert" (one routed expert's SwiGLU) for a mixture of experts.
    Also what `training.memory` counts per rank (with the norms, which are not matmuls)."""
    h, hd = info.hidden_size, info.head_dim
    out = {"attention": h * info.num_attention_heads * hd * 2 + h * info.num_query_groups * hd * 2}  # Q, O + K, V
    if info.is_moe:
        out.update(router=h * info.num_experts, expert=3 * h * info.moe_ffn_hidden_size)
    else:
        out["mlp"] = 3 * h * info.ffn_hidden_size
    return out


def matmul_params(info, padded_vocab_size: int) -> int:
    """N_matmul of the module docstring, from the architecture (`megatron_ssd.models.arch.ArchInfo`)."""
    w = layer_matmul_weights(info)
    mlp = w["router"] + info.moe_top_k * w["expert"] if info.is_moe else w["mlp"]  # a token's top-k experts only
    return info.num_layers * (w["attention"] + mlp) + padded_vocab_size * info.hidden_size


def effective_seq_length(segment_lengths: Iterable[np.ndarray]) -> float:
    """sum(len^2) / sum(len) over all segments (the mean attention span a token sees, token-weighted)."""
    sq = tot = 0.0
    for lengths in segment_lengths:
        lengths = np.asarray(lengths, dtype=np.float64)
        sq += float((lengths * lengths).sum())
        tot += float(lengths.sum())
    return sq / tot if tot else 0.0


def flops_per_token(info, padded_vocab_size: int, s_eff: float) -> float:
    attn_width = info.num_attention_heads * info.head_dim
    return 6.0 * matmul_params(info, padded_vocab_size) + 12.0 * info.num_layers * attn_width * s_eff


def measure_matmul_flops(dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (256, 512, 1024, 2048),
                         seconds: float = 0.25, device: str = "cpu") -> float:
    """The best achieved FLOP/s of square matmuls in `dtype` over `sizes` (each warmed up, then repeated for
    about `seconds`). The best over sizes, because a CPU GEMM's rate depends on the shape (cache blocking; on
    CPUs without native bf16, bf16 GEMMs are emulated and *slower* when large). Sizes are tried in increasing
    order and the search stops once a single matmul takes longer than `seconds`, so a slow dtype costs seconds,
    not minutes."""
    best = 0.0
    for n in sizes:
        rate, op_seconds = _matmul_rate(dtype, n, seconds, device)
        best = max(best, rate)
        if op_seconds > seconds:
            break
    return best


def _matmul_rate(dtype: torch.dtype, n: int, seconds: float, device: str) -> tuple[float, float]:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up
    if device != "cpu":
        torch.cuda.synchronize()
    iters, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        iters += 1
        if device != "cpu":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2.0 * n**3 * iters / elapsed, elapsed / iters


def gpu_peak_flops(dtype: torch.dtype, fp8: bool = False) -> tuple[float | None, str]:
    """(peak FLOP/s per GPU, where the number comes from) for the current CUDA device."""
    name = torch.cuda.get_device_name()
    for key in sorted(GPU_PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            peak = GPU_PEAK_BF16_TFLOPS[key] * 1e12
            if dtype == torch.float32:
                return None, f"{name}: no dense fp32 tensor-core peak tabulated"
            return (peak * 2, f"{name} fp8 datasheet") if fp8 else (peak, f"{name} bf16 datasheet")
    return None, f"{name}: not in the peak table (megatron_ssd.training.flops.GPU_PEAK_BF16_TFLOPS)"


def peak_flops(dtype: torch.dtype, fp8: bool = False) -> tuple[float | None, str]:
    if torch.cuda.is_available():
        return gpu_peak_flops(dtype, fp8)
    # A CPU without native bf16 emulates bf16 GEMMs far below its fp32 rate; the machine's peak is the faster one.
    rates = {dt: measure_matmul_flops(dt) for dt in dict.fromkeys((dtype, torch.float32))}
    best = max(rates, key=rates.get)
    return rates[best], (f"measured on this CPU in this process: best square matmul (256-2048), "
                         + ", ".join(f"{str(dt).removeprefix('torch.')} {r / 1e9:.1f} GFLOP/s" for dt, r in rates.items()))


def mfu(flops: float, seconds: float, devices: int, peak: float | None) -> float | None:
    if not peak or seconds <= 0:
        return None
    return flops / (seconds * devices) / peak
