"""Triton kernels of the implicit filter (see :mod:`.reference` for the math): one forward, n + 3 backward.

Layouts (all fp32, contiguous): features z (L, E); times t (L,); first layer W_0 (R, E); the n inner
layers stacked W (n, R, R); biases and frequencies stacked (n + 1, R); projection W_out (C, R); decay
rates (C,); the filter k (C, L); saved pre-activations (n + 1, L, R). Widths are padded to powers of two
of at least 16 (``E_PAD``, ``R_PAD``) for ``tl.dot``; padded weight columns and rows load as zero, so
padded hidden units are sin(0) = 0 and contribute nothing.

- :func:`implicit_filter_fwd_kernel`: a block of positions runs the whole sine MLP in registers, then
  writes its columns of k one block of channels at a time (projection and decay fused). For training
  it also writes each layer's pre-activation (``SAVE``): the backward then recomputes nothing. With
  ``SUMSQ`` it also writes each channel's sum of squares over its positions (partials that torch sums:
  the FFT convolution's range scaling then needs no pass over k).
- :func:`implicit_filter_dh_kernel`: dL/dh_n = (dk * decay)^T @ W_out per block of positions.
- :func:`implicit_filter_out_grad_kernel`: dW_out = (dk * decay) @ h_n, split over position ranges into
  deterministic partials (h_n recomputed from the saved pre-activation: one sine per element).
- :func:`implicit_filter_layer_bwd_kernel`, once per sine layer, last first: dL/dpre, the layer's
  weight, bias and frequency gradients (held in registers by persistent programs, one partials row per
  program, summed by torch afterwards: deterministic, no atomics) and dL/dh of the layer below.
One kernel for the whole backward kept every layer's tiles and weights live at once and spilled
kilobytes per thread at every tiling (offline sm_90 compile); one layer per kernel does not.

Precision. Every product runs on TF32 tensor cores: the forward's sine layers (whose outputs are phases
scaled by ~10, where TF32's 2^-11 rounding would show) as three passes that carry fp32 accuracy
(:func:`_dot`); the projection's and every backward product (gradients, no phases) in one pass when
``TF32`` (the model runs under 16-bit autocast, as the reference's TF32 projection), else in three.
Plain fp32 ``tl.dot`` (FMA) needed ~255 registers and spilled at these tiles. With ``ASM`` (GPU, under
16-bit autocast) sine and cosine are one MUFU instruction each after a two-constant reduction to
[-pi, pi] (absolute error ~5e-7, which three sine layers of frequency ~10 amplify to ~1e-4 of the
filter: fine next to bf16's 4e-3, not for fp32 runs, which keep libdevice's exact functions).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ..scan.triton_scan import _approx

# Constants stay right of the tensors they scale: in the interpreter ``constexpr * tensor`` fails.
INV_TWO_PI = tl.constexpr(0.15915494309189535)
TWO_PI_HI = tl.constexpr(6.2831854820251465)  # fp32 nearest 2 pi
TWO_PI_LO = tl.constexpr(-1.7484556000744487e-07)  # 2 pi - TWO_PI_HI


@triton.jit
def _reduced(x):
    """x - 2 pi round(x / 2 pi), in [-pi, pi], with 2 pi split in two constants (Cody-Waite)."""
    turns = tl.floor(x * INV_TWO_PI + 0.5)
    return (x - turns * TWO_PI_HI) - turns * TWO_PI_LO


@triton.jit
def _sin(x, ASM: tl.constexpr):
    if ASM:
        return _approx(_reduced(x), "sin")
    return tl.sin(x)


@triton.jit
def _cos(x, ASM: tl.constexpr):
    if ASM:
        return _approx(_reduced(x), "cos")
    return tl.cos(x)


@triton.jit
def _tf32_hi(x):
    """x with its mantissa cut to TF32's 10 bits (x - _tf32_hi(x) is exact in fp32)."""
    return (x.to(tl.uint32, bitcast=True) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _dot(a, b, TF32: tl.constexpr):
    """a @ b on TF32 tensor cores: one pass (``TF32``), or three (hi*hi + hi*lo + lo*hi of the operands'
    TF32 splits, small terms first) that leave only the lo*lo term, ~2^-22 relative: fp32 accuracy."""
    if TF32:
        return tl.dot(a, b, input_precision="tf32")
    a_hi = _tf32_hi(a)
    b_hi = _tf32_hi(b)
    acc = tl.dot(a - a_hi, b_hi, input_precision="tf32")
    acc = tl.dot(a_hi, b - b_hi, acc, input_precision="tf32")
    return tl.dot(a_hi, b_hi, acc, input_precision="tf32")


@triton.jit
def _sine_layer(x, w_ptr, b_ptr, f_ptr, K, R, K_PAD: tl.constexpr, R_PAD: tl.constexpr, ASM: tl.constexpr):
    """(pre-activation, sin(f * pre)) of one layer for x (BLOCK_L, K_PAD); W is (R, K) row-major."""
    k = tl.arange(0, K_PAD)
    r = tl.arange(0, R_PAD)
    w_t = tl.load(w_ptr + r[None, :] * K + k[:, None], mask=(k[:, None] < K) & (r[None, :] < R), other=0.0)
    bias = tl.load(b_ptr + r, mask=r < R, other=0.0)
    freq = tl.load(f_ptr + r, mask=r < R, other=0.0)
    pre = _dot(x, w_t, False) + bias[None, :]
    return pre, _sin(pre * freq[None, :], ASM)


@triton.jit
def _load_features(z_ptr, pos, L, E, E_PAD: tl.constexpr):
    """z rows ``pos`` as (BLOCK_L, E_PAD), zero past L and E."""
    e = tl.arange(0, E_PAD)
    mask = (pos[:, None] < L) & (e[None, :] < E)
    return tl.load(z_ptr + pos[:, None].to(tl.int64) * E + e[None, :], mask=mask, other=0.0)


@triton.jit
def _decay(rate_ptr, t, channels, C, shift, MODULATE: tl.constexpr):
    """(BLOCK_C, BLOCK_L) factor exp(-rate_c t_l) + shift; the scalar 1.0 for an unmodulated filter."""
    if MODULATE:
        rate = tl.load(rate_ptr + channels, mask=channels < C, other=0.0)
        return tl.exp(-rate[:, None] * t[None, :]) + shift
    else:
        return 1.0


@triton.jit
def _load_dk(dk_ptr, channels, pos, C, L, sdk):
    """dk (BLOCK_C, BLOCK_L), zero outside (C, L); dk rows are ``sdk`` apart."""
    mask = (channels[:, None] < C) & (pos[None, :] < L)
    return tl.load(dk_ptr + channels[:, None].to(tl.int64) * sdk + pos[None, :], mask=mask, other=0.0)


@triton.jit
def _rows(pos, L, R, R_PAD: tl.constexpr):
    """Offsets of rows ``pos`` of an (L, R) tensor as (BLOCK_L, R_PAD), and their in-bounds mask."""
    r = tl.arange(0, R_PAD)
    return pos[:, None].to(tl.int64) * R + r[None, :], (pos[:, None] < L) & (r[None, :] < R)


@triton.jit
def implicit_filter_fwd_kernel(
    z_ptr, t_ptr, w0_ptr, wi_ptr, b_ptr, f_ptr, wout_ptr, rate_ptr, k_ptr, pre_ptr, sumsq_ptr, L, C, E, R, shift,
    N_INNER: tl.constexpr, MODULATE: tl.constexpr, SAVE: tl.constexpr, SUMSQ: tl.constexpr, BLOCK_L: tl.constexpr,
    BLOCK_C: tl.constexpr, E_PAD: tl.constexpr, R_PAD: tl.constexpr, TF32: tl.constexpr, ASM: tl.constexpr,
):
    """k[:, positions of this program] for one block of BLOCK_L positions (and, with SAVE, pre[:, positions];
    with SUMSQ, each channel's sum of k^2 over these positions at sumsq[channel, program])."""
    pos = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    rows, row_mask = _rows(pos, L, R, R_PAD)
    pre, hidden = _sine_layer(_load_features(z_ptr, pos, L, E, E_PAD), w0_ptr, b_ptr, f_ptr, E, R, E_PAD, R_PAD,
                              ASM)
    if SAVE:
        tl.store(pre_ptr + rows, pre, mask=row_mask)
    for i in tl.static_range(N_INNER):
        pre, hidden = _sine_layer(hidden, wi_ptr + i * R * R, b_ptr + (i + 1) * R, f_ptr + (i + 1) * R, R, R,
                                  R_PAD, R_PAD, ASM)
        if SAVE:
            tl.store(pre_ptr + (i + 1) * L * R + rows, pre, mask=row_mask)
    hidden_t = tl.trans(hidden)  # (R_PAD, BLOCK_L)
    t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
    r = tl.arange(0, R_PAD)
    for c0 in range(0, C, BLOCK_C):
        channels = c0 + tl.arange(0, BLOCK_C)
        w = tl.load(wout_ptr + channels[:, None] * R + r[None, :], mask=(channels[:, None] < C) & (r[None, :] < R),
                    other=0.0)
        taps = _dot(w, hidden_t, TF32) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
        mask = (channels[:, None] < C) & (pos[None, :] < L)
        tl.store(k_ptr + channels[:, None].to(tl.int64) * L + pos[None, :], taps, mask=mask)
        if SUMSQ:
            squares = tl.sum(tl.where(mask, taps * taps, 0.0), axis=1)
            tl.store(sumsq_ptr + channels * tl.num_programs(0) + tl.program_id(0), squares, mask=channels < C)


@triton.jit
def implicit_filter_dh_kernel(
    t_ptr, rate_ptr, wout_ptr, dk_ptr, dh_ptr, L, C, R, shift, sdk,
    MODULATE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, R_PAD: tl.constexpr,
    TF32: tl.constexpr,
):
    """dh[positions] = (dk * decay)[:, positions]^T @ W_out for one block of positions."""
    pos = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
    r = tl.arange(0, R_PAD)
    dh = tl.zeros((BLOCK_L, R_PAD), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        channels = c0 + tl.arange(0, BLOCK_C)
        g = _load_dk(dk_ptr, channels, pos, C, L, sdk) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
        w = tl.load(wout_ptr + channels[:, None] * R + r[None, :], mask=(channels[:, None] < C) & (r[None, :] < R),
                    other=0.0)
        dh += _dot(tl.trans(g), w, TF32)
    rows, mask = _rows(pos, L, R, R_PAD)
    tl.store(dh_ptr + rows, dh, mask=mask)


@triton.jit
def implicit_filter_out_grad_kernel(
    pre_ptr, f_ptr, t_ptr, rate_ptr, dk_ptr, part_ptr, L, C, R, shift, sdk,
    MODULATE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, R_PAD: tl.constexpr,
    TF32: tl.constexpr, ASM: tl.constexpr,
):
    """partial[s, channel block] = sum over every S-th block of positions of (dk * decay) @ h_n, with
    h_n = sin(f_n * pre_n) from the last layer's saved pre-activation ``pre`` (L, R) and frequency ``f``."""
    channels = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    r = tl.arange(0, R_PAD)
    freq = tl.load(f_ptr + r, mask=r < R, other=0.0)
    acc = tl.zeros((BLOCK_C, R_PAD), dtype=tl.float32)
    for block in range(split, tl.cdiv(L, BLOCK_L), splits):
        pos = block * BLOCK_L + tl.arange(0, BLOCK_L)
        t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
        g = _load_dk(dk_ptr, channels, pos, C, L, sdk) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
        rows, mask = _rows(pos, L, R, R_PAD)
        hidden = _sin(tl.load(pre_ptr + rows, mask=mask, other=0.0) * freq[None, :], ASM)
        acc += _dot(g, hidden, TF32)
    out = part_ptr + split.to(tl.int64) * C * R + channels[:, None] * R + r[None, :]
    tl.store(out, acc, mask=(channels[:, None] < C) & (r[None, :] < R))


@triton.jit
def implicit_filter_layer_bwd_kernel(
    dh_ptr, pre_ptr, f_ptr, below_ptr, f_below_ptr, w_ptr, dh_below_ptr, part_ptr, L, R, K,
    FIRST: tl.constexpr, BLOCK_L: tl.constexpr, R_PAD: tl.constexpr, K_PAD: tl.constexpr,
    TF32: tl.constexpr, ASM: tl.constexpr,
):
    """One sine layer h = sin(f * (x W^T + b)), x (L, K) its input, backwards over every P-th block.

    ``dh`` (L, R): dL/dh; ``pre`` (L, R): the saved pre-activation. The input x is ``below`` (L, K): the
    features z for the first layer (``FIRST``), else the layer below's pre-activation, through its
    frequency ``f_below`` (x = sin(f_below * pre_below)). Writes dL/dx to ``dh_below`` (L, K) unless
    FIRST, and this program's partials row: dW (R, K) | db (R) | df (R).
    """
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    r = tl.arange(0, R_PAD)
    k = tl.arange(0, K_PAD)
    freq = tl.load(f_ptr + r, mask=r < R, other=0.0)
    freq_below = tl.load(f_below_ptr + k, mask=k < K, other=0.0)
    w = tl.load(w_ptr + r[:, None] * K + k[None, :], mask=(r[:, None] < R) & (k[None, :] < K), other=0.0)
    d_w = tl.zeros((R_PAD, K_PAD), dtype=tl.float32)
    d_b = tl.zeros((R_PAD,), dtype=tl.float32)
    d_f = tl.zeros((R_PAD,), dtype=tl.float32)
    for block in range(pid, tl.cdiv(L, BLOCK_L), programs):
        pos = block * BLOCK_L + tl.arange(0, BLOCK_L)
        rows, mask = _rows(pos, L, R, R_PAD)
        pre = tl.load(pre_ptr + rows, mask=mask, other=0.0)
        ds = tl.load(dh_ptr + rows, mask=mask, other=0.0) * _cos(pre * freq[None, :], ASM)
        d_f += tl.sum(ds * pre, axis=0)
        dpre = ds * freq[None, :]
        d_b += tl.sum(dpre, axis=0)
        below_rows, below_mask = _rows(pos, L, K, K_PAD)
        below = tl.load(below_ptr + below_rows, mask=below_mask, other=0.0)
        if not FIRST:
            below = _sin(below * freq_below[None, :], ASM)
        d_w += _dot(tl.trans(dpre), below, TF32)
        if not FIRST:
            tl.store(dh_below_ptr + below_rows, _dot(dpre, w, TF32), mask=below_mask)
    part = part_ptr + pid.to(tl.int64) * (R * K + 2 * R)
    tl.store(part + r[:, None] * K + k[None, :], d_w, mask=(r[:, None] < R) & (k[None, :] < K))
    tl.store(part + R * K + r, d_b, mask=r < R)
    tl.store(part + R * K + R + r, d_f, mask=r < R)
