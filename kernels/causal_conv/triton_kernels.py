"""Triton kernels of the short causal depthwise convolution (forward and backward).

One program owns a (BLOCK_C channels x BLOCK_L steps) tile of one sequence. The input is read through
its own strides, so a channels-last (B, L, C) linear output viewed as (B, C, L) is read in place and the
output is written channel-major: the layout change the long convolution needs costs no extra pass
(PyTorch's strided copy of the same tensor took 22 ms per HyenaDNA layer at L = 1M on an H200).
The K shifted reads of a tile hit the cache, so HBM sees one read of x and one write of the output.

The backward saves nothing but the inputs. With SiLU it runs in two passes: the forward kernel recomputes
the pre-activation once per step and writes da = dout * silu'(a) (fp32); the linear backward then reads
da at its K shifts (cache hits). (The single-pass form recomputed the pre-activation and its sigmoid at
every shift, K times the work: 6.5 ms per Mamba layer at L = 1M on an H200.) The linear backward writes
dx through dx's strides and leaves per-tile partial sums of the weight and bias gradients for a final
reduction in PyTorch (no atomics: deterministic).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tap(x_base, ts, shift, row_mask, L, sxl):
    """x at times ``ts - shift`` for a channel tile, zero outside [0, L), as fp32 (BLOCK_C, BLOCK_L)."""
    tt = ts - shift
    mask = row_mask[:, None] & (tt[None, :] >= 0) & (tt[None, :] < L)
    return tl.load(x_base + tt[None, :].to(tl.int64) * sxl, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _preactivation(x_base, w_ptr, bias, cs, c_mask, ts, L, sxl,
                   K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """bias + sum_j w[c, j] * x[c, t - (K-1) + j] over a tile, fp32."""
    acc = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32) + bias[:, None]
    for j in tl.static_range(K):
        w = tl.load(w_ptr + cs * K + j, mask=c_mask, other=0.0).to(tl.float32)
        acc += w[:, None] * _tap(x_base, ts, K - 1 - j, c_mask, L, sxl)
    return acc


@triton.jit
def _program_tile(x_ptr, b_ptr, C, sxb, sxc, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """This program's sequence, channels, steps, channel mask, bias (fp32, zero without one) and x row pointers."""
    pid_l, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    cs = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    ts = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    c_mask = cs < C
    bias = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + cs, mask=c_mask, other=0.0).to(tl.float32)
    return b, cs, ts, c_mask, bias, x_ptr + b * sxb + cs[:, None].to(tl.int64) * sxc


@triton.jit
def causal_conv_fwd_kernel(
    x_ptr, w_ptr, b_ptr, dout_ptr, out_ptr, C, L, sxb, sxc, sxl,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, GRAD: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """out = act(a) with a = bias + conv(x); with GRAD (the backward's first pass, SILU on) out = da =
    dout * silu'(a) instead, dout and out contiguous (B, C, L)."""
    b, cs, ts, c_mask, bias, x_base = _program_tile(x_ptr, b_ptr, C, sxb, sxc, HAS_BIAS, BLOCK_C, BLOCK_L)
    acc = _preactivation(x_base, w_ptr, bias, cs, c_mask, ts, L, sxl, K, BLOCK_C, BLOCK_L)
    rows = (b * C + cs[:, None].to(tl.int64)) * L + ts[None, :]
    mask = c_mask[:, None] & (ts[None, :] < L)
    if SILU:
        sig = tl.sigmoid(acc)
        if GRAD:
            dout = tl.load(dout_ptr + rows, mask=mask, other=0.0).to(tl.float32)
            acc = dout * sig * (1.0 + acc * (1.0 - sig))
        else:
            acc = acc * sig
    tl.store(out_ptr + rows, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def causal_conv_bwd_kernel(
    x_ptr, w_ptr, da_ptr, dx_ptr, dw_part_ptr, db_part_ptr, C, L, sxb, sxc, sxl, sdb, sdc, sdl,
    K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Backward of the linear convolution given da, the gradient at its output (dout itself, or dout *
    silu'(a) from the first pass): dx[t] = sum_j w[j] * da[t + K-1-j]; per-tile partial dw[j] = sum_t
    da[t] * x[t - (K-1) + j] and db = sum_t da[t] go to ``dw_part`` (tiles, C, K) and ``db_part`` (tiles, C)."""
    b, cs, ts, c_mask, _, x_base = _program_tile(x_ptr, x_ptr, C, sxb, sxc, False, BLOCK_C, BLOCK_L)
    da_base = da_ptr + (b * C + cs[:, None].to(tl.int64)) * L
    dx = tl.zeros([BLOCK_C, BLOCK_L], dtype=tl.float32)
    for s in tl.static_range(K):  # da at t + s feeds dx[t] through w[K-1-s]
        da = _tap(da_base, ts, -s, c_mask, L, 1)
        w = tl.load(w_ptr + cs * K + (K - 1 - s), mask=c_mask, other=0.0).to(tl.float32)
        dx += w[:, None] * da
        if s == 0:
            tile = b * tl.num_programs(0) + tl.program_id(0)
            for j in tl.static_range(K):
                part = tl.sum(da * _tap(x_base, ts, K - 1 - j, c_mask, L, sxl), axis=1)
                tl.store(dw_part_ptr + (tile * C + cs) * K + j, part, mask=c_mask)
            tl.store(db_part_ptr + tile * C + cs, tl.sum(da, axis=1), mask=c_mask)
    dx_ptrs = dx_ptr + b * sdb + cs[:, None].to(tl.int64) * sdc + ts[None, :].to(tl.int64) * sdl
    tl.store(dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=c_mask[:, None] & (ts[None, :] < L))
