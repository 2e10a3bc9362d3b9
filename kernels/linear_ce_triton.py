"""Triton kernels of the fused linear + cross-entropy (the math lives here, the autograd glue does not).

Why hand-written: Megatron-core's fused linear CE exists only on its dev branch and targets Blackwell, and
Liger-Kernel's FusedLinearCrossEntropy materialises [chunk, V] logits (and their gradient) in HBM. Here no
[N, V] (or [chunk, V]) buffer exists: every kernel recomputes a [BLOCK_M, BLOCK_V] logit tile from hidden and
weight in on-chip memory, with fp32 accumulation, and consumes it immediately.

Three kernels, all over *compacted* rows (tokens whose label is ignore_index were removed by the caller):
- `_fwd_kernel`: grid over (token block, vocab split); each program streams its vocab tiles and keeps an online
  log-sum-exp (running max + rescaled sum-exp) and the target logit per token. Splitting the vocabulary keeps
  the GPU busy when there are few tokens; the partial statistics (3 floats per token and split) are combined
  by the caller, which also all-reduces them across tensor-parallel ranks.
- `_dh_kernel`: grad_hidden. Grid over (token block, vocab split); each program owns its rows of an fp32
  buffer [splits, M, H] and read-modify-writes them per vocab tile, so no atomics and a deterministic result.
- `_dw_kernel`: grad_weight. Grid over vocab tiles; each program owns its rows of an fp32 [V, H] buffer and
  walks all token blocks. Recomputing the logits in both backward kernels costs 5 GEMMs of 2*N*H*V in all
  (forward, 2 recomputes, 2 gradient products) against the floor of 4; in exchange there are no atomics and
  the result is deterministic. Fusing grad_hidden into this kernel with fp32 atomics is the next step if GPU
  measurements show the fifth GEMM matters.

Tile sizes are constexpr, per kernel (`LceConfig`). The GPU defaults are GEMM-style tiles (128x128 or 64x128,
8 warps) picked so that each kernel compiles for sm_90 without register spills; they are not yet tuned on
hardware. Under TRITON_INTERPRET=1 (CPU tests) bf16 operands are upcast to fp32 before `tl.dot`, because the
Triton 3.x interpreter multiplies the raw uint16 storage of bf16 tensors; bf16 x bf16 products are exact in
fp32, so this matches tensor-core math.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


@dataclass(frozen=True)
class Tiles:
    """One kernel's launch shape."""
    block_m: int  # tokens per tile
    block_v: int  # vocab entries per tile
    block_k: int  # hidden step of the logit GEMM
    block_h: int  # hidden chunk of the gradient GEMMs (unused by the forward)
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class LceConfig:
    fwd: Tiles
    dh: Tiles
    dw: Tiles
    group_m: int = 8  # token blocks per L2 swizzle group
    max_splits: int = 64  # cap on vocab splits (forward and grad_hidden)


# Chosen so that every kernel compiles for sm_90 without register spills (checked by AOT compilation with the
# wheel's ptxas, see tests/kernels/test_linear_ce_compile.py); throughput is untuned until measured on a GPU.
GPU_CONFIG = LceConfig(fwd=Tiles(128, 128, 32, 32, 8, 4), dh=Tiles(64, 128, 32, 32, 8, 3),
                       dw=Tiles(64, 128, 32, 32, 8, 3))
# fp32 operands take the FMA path (no fp32 tensor-core mode at "ieee" precision): smaller tiles.
GPU_CONFIG_FP32 = LceConfig(fwd=Tiles(64, 128, 32, 32, 8, 2), dh=Tiles(32, 64, 16, 16, 4, 1),
                            dw=Tiles(32, 64, 16, 16, 4, 1))
# Several tiles per test shape so that every loop and mask runs; a test also passes 16-wide tiles and splits.
_INTERPRET_TILES = Tiles(32, 64, 32, 32, 1, 1)
INTERPRET_CONFIG = LceConfig(fwd=_INTERPRET_TILES, dh=_INTERPRET_TILES, dw=_INTERPRET_TILES, group_m=2, max_splits=1)
# grad_hidden keeps splits x M x H fp32 partials: bound that buffer.
_DH_PARTIAL_BYTES = 1 << 30


def is_interpreted() -> bool:
    """True when these kernels were created under TRITON_INTERPRET=1 (they then accept CPU tensors)."""
    return isinstance(_fwd_kernel, InterpretedFunction)


def default_config(dtype: torch.dtype) -> LceConfig:
    if is_interpreted():
        return INTERPRET_CONFIG
    return GPU_CONFIG_FP32 if dtype == torch.float32 else GPU_CONFIG


def _dot_settings(dtype: torch.dtype):
    if is_interpreted():
        return (tl.float32 if dtype == torch.bfloat16 else _TL_DTYPES[dtype]), "ieee"
    if dtype == torch.float32:
        return tl.float32, ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")
    return _TL_DTYPES[dtype], "tf32"


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _num_splits(m_blocks: int, v_tiles: int, cfg: LceConfig, device: torch.device) -> int:
    """Enough (token block, vocab split) programs for ~4 waves on the GPU; on CPU just cfg.max_splits."""
    if device.type != "cuda":
        return max(1, min(cfg.max_splits, v_tiles))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = math.ceil(4 * sms / m_blocks)
    return max(1, min(want, v_tiles, cfg.max_splits))


# ----------------------------------------------------------------------------------------------------------
# jit helpers


@triton.jit
def _swizzle(pid, m_blocks, n_splits, GROUP_M: tl.constexpr):
    """Map a 1-D program id to (token block, vocab split) so that concurrent programs share L2 tiles."""
    per_group = GROUP_M * n_splits
    first_m = (pid // per_group) * GROUP_M
    group_size = tl.minimum(m_blocks - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_s = (pid % per_group) // group_size
    return pid_m, pid_s


# Row reductions go through tl.reduce with Triton's standard combine functions rather than tl.sum / tl.max:
# those wrappers are @jit functions decorated when triton is first imported, so with them the interpreter breaks
# whenever triton was imported before TRITON_INTERPRET=1 was set (megatron.core imports it). The interpreter
# recognises these combine functions by identity and reduces with numpy; compiled, they are ordinary jit code.
_SUM_COMBINE = tl.standard._sum_combine
_MAX_COMBINE = tl.standard._elementwise_max


@triton.jit
def _row_sum(x):
    return tl.reduce(x, 1, _SUM_COMBINE)


@triton.jit
def _row_max(x):
    return tl.reduce(x, 1, _MAX_COMBINE)


@triton.jit
def _tanh(x):
    # 1 - 2 / (e^{2x} + 1): saturates cleanly to +-1 for large |x| (exp overflows to inf, not NaN).
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_h, stride_w, softcap,
                 HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr,
                 BLOCK_K: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    """(Soft-capped) logits hidden[rows] @ weight[cols]^T as an fp32 [BLOCK_M, BLOCK_V] tile."""
    acc = tl.full([BLOCK_M, BLOCK_V], 0.0, dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < H
        a = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :],
                    mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(w_ptr + cols[None, :] * stride_w + ks[:, None],
                    mask=col_mask[None, :] & k_mask[:, None], other=0.0)
        acc = tl.dot(a.to(DOT_DTYPE), b.to(DOT_DTYPE), acc, input_precision=PREC)
    if HAS_SOFTCAP:
        acc = softcap * _tanh(acc / softcap)
    return acc


@triton.jit
def _dlogits_tile(z, cols, col_mask, row_mask, y_local, lse, coef, g, softcap, HAS_SOFTCAP: tl.constexpr):
    """d loss / d raw logit: (coef * softmax - g * onehot) * d softcap, zero outside the valid tile."""
    p = tl.exp(z - lse[:, None])
    hit = cols[None, :] == y_local[:, None]
    dz = coef[:, None] * p - tl.where(hit, g[:, None], 0.0)
    if HAS_SOFTCAP:
        zc = z / softcap
        dz = dz * (1.0 - zc * zc)
    return tl.where(row_mask[:, None] & col_mask[None, :], dz, 0.0)


@triton.jit
def _local_labels(y_ptr, rows, row_mask, vocab_start, V):
    y = tl.load(y_ptr + rows, mask=row_mask, other=-1).to(tl.int64) - vocab_start
    return tl.where((y >= 0) & (y < V), y, -1)  # -1: the target lives on another rank's shard


# ----------------------------------------------------------------------------------------------------------
# kernels


@triton.jit
def _fwd_kernel(h_ptr, w_ptr, y_ptr, max_ptr, sumexp_ptr, target_ptr,
                M, V, H, stride_h, stride_w, vocab_start, tiles_per_split, m_blocks, n_splits, softcap,
                HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
                GROUP_M: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    pid_m, pid_s = _swizzle(tl.program_id(0), m_blocks, n_splits, GROUP_M)
    rows = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    y_local = _local_labels(y_ptr, rows, row_mask, vocab_start, V)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    s_i = tl.full([BLOCK_M], 0.0, dtype=tl.float32)
    t_i = tl.full([BLOCK_M], 0.0, dtype=tl.float32)
    v_begin = pid_s.to(tl.int64) * tiles_per_split * BLOCK_V
    # The caller sizes splits so that every split's first tile holds >= 1 valid column: m_i is finite after it.
    for vt in range(0, tiles_per_split):
        cols = v_begin + vt * BLOCK_V + tl.arange(0, BLOCK_V)
        col_mask = cols < V
        z = _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_h, stride_w, softcap,
                         HAS_SOFTCAP, BLOCK_M, BLOCK_V, BLOCK_K, DOT_DTYPE, PREC)
        z = tl.where(col_mask[None, :], z, float("-inf"))
        t_i += _row_sum(tl.where(cols[None, :] == y_local[:, None], z, 0.0))
        m_new = tl.maximum(m_i, _row_max(z))
        s_i = s_i * tl.exp(m_i - m_new) + _row_sum(tl.exp(z - m_new[:, None]))
        m_i = m_new
    out = pid_s.to(tl.int64) * M + rows
    tl.store(max_ptr + out, m_i, mask=row_mask)
    tl.store(sumexp_ptr + out, s_i, mask=row_mask)
    tl.store(target_ptr + out, t_i, mask=row_mask)


@triton.jit
def _dh_kernel(h_ptr, w_ptr, y_ptr, lse_ptr, coef_ptr, g_ptr, dh_ptr,
               M, V, H, stride_h, stride_w, vocab_start, tiles_per_split, m_blocks, n_splits, softcap,
               HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_H: tl.constexpr, GROUP_M: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    pid_m, pid_s = _swizzle(tl.program_id(0), m_blocks, n_splits, GROUP_M)
    rows = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    y_local = _local_labels(y_ptr, rows, row_mask, vocab_start, V)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
    coef = tl.load(coef_ptr + rows, mask=row_mask, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_mask, other=0.0)
    dh_rows = dh_ptr + (pid_s.to(tl.int64) * M + rows) * H

    v_begin = pid_s.to(tl.int64) * tiles_per_split * BLOCK_V
    for vt in range(0, tiles_per_split):
        cols = v_begin + vt * BLOCK_V + tl.arange(0, BLOCK_V)
        col_mask = cols < V
        z = _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_h, stride_w, softcap,
                         HAS_SOFTCAP, BLOCK_M, BLOCK_V, BLOCK_K, DOT_DTYPE, PREC)
        dz = _dlogits_tile(z, cols, col_mask, row_mask, y_local, lse, coef, g, softcap, HAS_SOFTCAP)
        # Round d logits to the input dtype, as the tensor-core GEMM will (no-op for fp32).
        dz = dz.to(h_ptr.dtype.element_ty).to(DOT_DTYPE)
        for h0 in range(0, H, BLOCK_H):
            hs = h0 + tl.arange(0, BLOCK_H)
            h_mask = hs < H
            w = tl.load(w_ptr + cols[:, None] * stride_w + hs[None, :],
                        mask=col_mask[:, None] & h_mask[None, :], other=0.0)
            ptrs = dh_rows[:, None] + hs[None, :]
            io_mask = row_mask[:, None] & h_mask[None, :]
            acc = tl.load(ptrs, mask=io_mask, other=0.0)
            acc = tl.dot(dz, w.to(DOT_DTYPE), acc, input_precision=PREC)
            tl.store(ptrs, acc, mask=io_mask)


@triton.jit
def _dw_kernel(h_ptr, w_ptr, y_ptr, lse_ptr, coef_ptr, g_ptr, dw_ptr,
               M, V, H, stride_h, stride_w, vocab_start, softcap,
               HAS_SOFTCAP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_H: tl.constexpr, DOT_DTYPE: tl.constexpr, PREC: tl.constexpr):
    cols = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    col_mask = cols < V
    dw_rows = dw_ptr + cols * H
    for m0 in range(0, M, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        row_mask = rows < M
        y_local = _local_labels(y_ptr, rows, row_mask, vocab_start, V)
        lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
        coef = tl.load(coef_ptr + rows, mask=row_mask, other=0.0)
        g = tl.load(g_ptr + rows, mask=row_mask, other=0.0)
        z = _logits_tile(h_ptr, w_ptr, rows, cols, row_mask, col_mask, H, stride_h, stride_w, softcap,
                         HAS_SOFTCAP, BLOCK_M, BLOCK_V, BLOCK_K, DOT_DTYPE, PREC)
        dz = _dlogits_tile(z, cols, col_mask, row_mask, y_local, lse, coef, g, softcap, HAS_SOFTCAP)
        dz_t = tl.trans(dz.to(h_ptr.dtype.element_ty).to(DOT_DTYPE))
        for h0 in range(0, H, BLOCK_H):
            hs = h0 + tl.arange(0, BLOCK_H)
            h_mask = hs < H
            a = tl.load(h_ptr + rows[:, None] * stride_h + hs[None, :],
                        mask=row_mask[:, None] & h_mask[None, :], other=0.0)
            ptrs = dw_rows[:, None] + hs[None, :]
            io_mask = col_mask[:, None] & h_mask[None, :]
            acc = tl.load(ptrs, mask=io_mask, other=0.0)
            acc = tl.dot(dz_t, a.to(DOT_DTYPE), acc, input_precision=PREC)
            tl.store(ptrs, acc, mask=io_mask)


# ----------------------------------------------------------------------------------------------------------
# launchers (inputs: contiguous hidden [M, H] and weight [V, H] of one dtype, int64 labels [M], M >= 1)


def _softcap_args(softcap):
    return (float(softcap), True) if softcap is not None else (1.0, False)


def _vocab_split(M: int, V: int, tiles: Tiles, cfg: LceConfig, device: torch.device,
                 max_splits: int | None = None):
    m_blocks = triton.cdiv(M, tiles.block_m)
    v_tiles = triton.cdiv(V, tiles.block_v)
    splits = _num_splits(m_blocks, v_tiles, cfg, device)
    if max_splits is not None:
        splits = max(1, min(splits, max_splits))
    tiles_per_split = triton.cdiv(v_tiles, splits)
    splits = triton.cdiv(v_tiles, tiles_per_split)  # no empty split: each starts below V
    return m_blocks, splits, tiles_per_split


def forward_stats(hidden, weight, labels, vocab_start: int, softcap, cfg: LceConfig):
    """Per-token partial (max, sum-exp, target logit) over this rank's vocab: three fp32 [splits, M]."""
    M, H = hidden.shape
    V = weight.shape[0]
    t = cfg.fwd
    m_blocks, splits, tiles_per_split = _vocab_split(M, V, t, cfg, hidden.device)
    stats = torch.empty(3, splits, M, device=hidden.device, dtype=torch.float32)
    dot_dtype, prec = _dot_settings(hidden.dtype)
    cap, has_cap = _softcap_args(softcap)
    _fwd_kernel[(m_blocks * splits,)](
        hidden, weight, labels, stats[0], stats[1], stats[2],
        M, V, H, hidden.stride(0), weight.stride(0), vocab_start, tiles_per_split, m_blocks, splits, cap,
        HAS_SOFTCAP=has_cap, BLOCK_M=t.block_m, BLOCK_V=t.block_v, BLOCK_K=t.block_k,
        GROUP_M=cfg.group_m, DOT_DTYPE=dot_dtype, PREC=prec, num_warps=t.num_warps, num_stages=t.num_stages)
    return stats[0], stats[1], stats[2]


def grad_hidden(hidden, weight, labels, lse, coef, g, vocab_start: int, softcap, cfg: LceConfig):
    """fp32 [M, H]: sum over this rank's vocab of d loss / d logit * weight."""
    M, H = hidden.shape
    V = weight.shape[0]
    t = cfg.dh
    cap_splits = max(1, _DH_PARTIAL_BYTES // (4 * M * H))
    m_blocks, splits, tiles_per_split = _vocab_split(M, V, t, cfg, hidden.device, max_splits=cap_splits)
    out = torch.zeros(splits, M, H, device=hidden.device, dtype=torch.float32)
    dot_dtype, prec = _dot_settings(hidden.dtype)
    cap, has_cap = _softcap_args(softcap)
    _dh_kernel[(m_blocks * splits,)](
        hidden, weight, labels, lse, coef, g, out,
        M, V, H, hidden.stride(0), weight.stride(0), vocab_start, tiles_per_split, m_blocks, splits, cap,
        HAS_SOFTCAP=has_cap, BLOCK_M=t.block_m, BLOCK_V=t.block_v, BLOCK_K=t.block_k,
        BLOCK_H=t.block_h, GROUP_M=cfg.group_m, DOT_DTYPE=dot_dtype, PREC=prec,
        num_warps=t.num_warps, num_stages=t.num_stages)
    return out[0] if splits == 1 else out.sum(0)


def grad_weight(hidden, weight, labels, lse, coef, g, vocab_start: int, softcap, cfg: LceConfig):
    """fp32 [V, H]: sum over tokens of d loss / d logit * hidden."""
    M, H = hidden.shape
    V = weight.shape[0]
    t = cfg.dw
    out = torch.zeros(V, H, device=hidden.device, dtype=torch.float32)
    dot_dtype, prec = _dot_settings(hidden.dtype)
    cap, has_cap = _softcap_args(softcap)
    _dw_kernel[(triton.cdiv(V, t.block_v),)](
        hidden, weight, labels, lse, coef, g, out,
        M, V, H, hidden.stride(0), weight.stride(0), vocab_start, cap,
        HAS_SOFTCAP=has_cap, BLOCK_M=t.block_m, BLOCK_V=t.block_v, BLOCK_K=t.block_k,
        BLOCK_H=t.block_h, DOT_DTYPE=dot_dtype, PREC=prec, num_warps=t.num_warps, num_stages=t.num_stages)
    return out
