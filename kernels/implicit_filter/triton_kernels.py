"""Triton kernels of the implicit filter (see :mod:`.reference` for the math): one forward, two backward.

Layouts (all fp32, contiguous): features z (L, E); times t (L,); first layer W_0 (R, E); the n inner
layers stacked W (n, R, R); biases and frequencies stacked (n + 1, R); projection W_out (C, R); decay
rates (C,); the filter k (C, L). Widths are padded to powers of two of at least 16 (``E_PAD``,
``R_PAD``) for ``tl.dot``; padded weight columns and rows load as zero, so padded hidden units are
sin(0) = 0 and contribute nothing.

- :func:`implicit_filter_fwd_kernel`: a block of positions runs the whole sine MLP in registers, then
  writes its columns of k one block of channels at a time (projection and decay fused). Nothing of the
  MLP is written to memory.
- :func:`implicit_filter_mlp_bwd_kernel`: persistent programs, each walking every P-th block of
  positions: the MLP forward is recomputed (pre-activations kept in a per-program scratch that stays in
  L1/L2), dL/dh_n is formed from dk and W_out, and the chain runs back through the sine layers. Weight,
  bias and frequency gradients accumulate in the program's own row of a partials buffer (read, add,
  write: no atomics, so the sum over programs done afterwards by torch is deterministic). It also writes
  h_n, which the projection's gradient needs.
- :func:`implicit_filter_out_grad_kernel`: dW_out = (dk * decay) @ h_n, split over position ranges into
  deterministic partials.

Precisions: the sine layers' products use ``MLP_PRECISION`` (exact fp32 by default: their outputs are
phases scaled by ~10, where TF32 rounding would show); the projection's three products use
``OUT_PRECISION`` ("tf32" only when the model runs under 16-bit autocast, as the reference does).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sine_layer(x, w_ptr, b_ptr, f_ptr, K, R, K_PAD: tl.constexpr, R_PAD: tl.constexpr,
                PRECISION: tl.constexpr):
    """(pre-activation, sin(f * pre)) of one layer for x (BLOCK_L, K_PAD); W is (R, K) row-major."""
    k = tl.arange(0, K_PAD)
    r = tl.arange(0, R_PAD)
    w_t = tl.load(w_ptr + r[None, :] * K + k[:, None], mask=(k[:, None] < K) & (r[None, :] < R), other=0.0)
    bias = tl.load(b_ptr + r, mask=r < R, other=0.0)
    freq = tl.load(f_ptr + r, mask=r < R, other=0.0)
    pre = tl.dot(x, w_t, input_precision=PRECISION) + bias[None, :]
    return pre, tl.sin(pre * freq[None, :])


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
def implicit_filter_fwd_kernel(
    z_ptr, t_ptr, w0_ptr, wi_ptr, b_ptr, f_ptr, wout_ptr, rate_ptr, k_ptr, L, C, E, R, shift,
    N_INNER: tl.constexpr, MODULATE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
    E_PAD: tl.constexpr, R_PAD: tl.constexpr, MLP_PRECISION: tl.constexpr, OUT_PRECISION: tl.constexpr,
):
    """k[:, positions of this program] for one block of BLOCK_L positions."""
    pos = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    _, hidden = _sine_layer(_load_features(z_ptr, pos, L, E, E_PAD), w0_ptr, b_ptr, f_ptr, E, R, E_PAD, R_PAD,
                            MLP_PRECISION)
    for i in tl.static_range(N_INNER):
        _, hidden = _sine_layer(hidden, wi_ptr + i * R * R, b_ptr + (i + 1) * R, f_ptr + (i + 1) * R, R, R,
                                R_PAD, R_PAD, MLP_PRECISION)
    hidden_t = tl.trans(hidden)  # (R_PAD, BLOCK_L)
    t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
    r = tl.arange(0, R_PAD)
    for c0 in range(0, C, BLOCK_C):
        channels = c0 + tl.arange(0, BLOCK_C)
        w = tl.load(wout_ptr + channels[:, None] * R + r[None, :], mask=(channels[:, None] < C) & (r[None, :] < R),
                    other=0.0)
        taps = tl.dot(w, hidden_t, input_precision=OUT_PRECISION) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
        mask = (channels[:, None] < C) & (pos[None, :] < L)
        tl.store(k_ptr + channels[:, None].to(tl.int64) * L + pos[None, :], taps, mask=mask)


@triton.jit
def _accumulate(ptr, offsets, mask, value):
    """partial[offsets] += value in this program's own partials row (no other program touches it)."""
    tl.store(ptr + offsets, tl.load(ptr + offsets, mask=mask, other=0.0) + value, mask=mask)


@triton.jit
def _sine_layer_bwd(dh, pre, f_ptr, b_off, f_off, part_ptr, R, R_PAD: tl.constexpr):
    """Through h = sin(f * pre): accumulate dL/df and dL/db at their partials offsets; return dL/dpre."""
    r = tl.arange(0, R_PAD)
    freq = tl.load(f_ptr + r, mask=r < R, other=0.0)
    ds = dh * tl.cos(pre * freq[None, :])
    dpre = ds * freq[None, :]
    _accumulate(part_ptr, f_off + r, r < R, tl.sum(ds * pre, axis=0))
    _accumulate(part_ptr, b_off + r, r < R, tl.sum(dpre, axis=0))
    return dpre


@triton.jit
def implicit_filter_mlp_bwd_kernel(
    z_ptr, t_ptr, w0_ptr, wi_ptr, b_ptr, f_ptr, wout_ptr, rate_ptr, dk_ptr, hidden_ptr, scratch_ptr, part_ptr,
    L, C, E, R, shift, sdk,
    N_INNER: tl.constexpr, MODULATE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
    E_PAD: tl.constexpr, R_PAD: tl.constexpr, MLP_PRECISION: tl.constexpr, OUT_PRECISION: tl.constexpr,
):
    """Gradients of the sine MLP's parameters (into partials) and h_n (into ``hidden``).

    Partials row layout (fp32): dW_0 (R, E) | dW_1..n (n, R, R) | db (n + 1, R) | df (n + 1, R).
    Scratch: per program (n + 1, BLOCK_L, R_PAD) pre-activations of the current block.
    """
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    off_wi = R * E
    off_b = off_wi + N_INNER * R * R
    off_f = off_b + (N_INNER + 1) * R
    part = part_ptr + pid.to(tl.int64) * (off_f + (N_INNER + 1) * R)
    scratch = scratch_ptr + pid.to(tl.int64) * ((N_INNER + 1) * BLOCK_L * R_PAD)
    rows = tl.arange(0, BLOCK_L)
    r = tl.arange(0, R_PAD)
    e = tl.arange(0, E_PAD)
    tile = rows[:, None] * R_PAD + r[None, :]
    for block in range(pid, tl.cdiv(L, BLOCK_L), programs):
        pos = block * BLOCK_L + rows
        # Forward again, keeping each layer's pre-activation in the scratch.
        x = _load_features(z_ptr, pos, L, E, E_PAD)
        pre, hidden = _sine_layer(x, w0_ptr, b_ptr, f_ptr, E, R, E_PAD, R_PAD, MLP_PRECISION)
        tl.store(scratch + tile, pre)
        for i in tl.static_range(N_INNER):
            pre, hidden = _sine_layer(hidden, wi_ptr + i * R * R, b_ptr + (i + 1) * R, f_ptr + (i + 1) * R, R, R,
                                      R_PAD, R_PAD, MLP_PRECISION)
            tl.store(scratch + (i + 1) * BLOCK_L * R_PAD + tile, pre)
        tl.store(hidden_ptr + pos[:, None].to(tl.int64) * R + r[None, :], hidden,
                 mask=(pos[:, None] < L) & (r[None, :] < R))
        # dL/dh_n = (dk * decay)^T @ W_out, one block of channels at a time.
        t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
        dh = tl.zeros((BLOCK_L, R_PAD), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            channels = c0 + tl.arange(0, BLOCK_C)
            g = _load_dk(dk_ptr, channels, pos, C, L, sdk) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
            w = tl.load(wout_ptr + channels[:, None] * R + r[None, :],
                        mask=(channels[:, None] < C) & (r[None, :] < R), other=0.0)
            dh += tl.dot(tl.trans(g), w, input_precision=OUT_PRECISION)
        tl.debug_barrier()  # the scratch written above is read below by other threads
        # Back through the inner layers, last first.
        for j in tl.static_range(N_INNER):
            i = N_INNER - j  # layer i's input is layer i - 1's output
            pre = tl.load(scratch + i * BLOCK_L * R_PAD + tile)
            dpre = _sine_layer_bwd(dh, pre, f_ptr + i * R, off_b + i * R, off_f + i * R, part, R, R_PAD)
            prev_freq = tl.load(f_ptr + (i - 1) * R + r, mask=r < R, other=0.0)
            prev = tl.sin(tl.load(scratch + (i - 1) * BLOCK_L * R_PAD + tile) * prev_freq[None, :])
            w_mask = (r[:, None] < R) & (r[None, :] < R)
            w_offsets = r[:, None] * R + r[None, :]
            _accumulate(part, off_wi + (i - 1) * R * R + w_offsets, w_mask,
                        tl.dot(tl.trans(dpre), prev, input_precision=MLP_PRECISION))
            w = tl.load(wi_ptr + (i - 1) * R * R + w_offsets, mask=w_mask, other=0.0)
            dh = tl.dot(dpre, w, input_precision=MLP_PRECISION)
        pre = tl.load(scratch + tile)
        dpre = _sine_layer_bwd(dh, pre, f_ptr, off_b, off_f, part, R, R_PAD)
        _accumulate(part, r[:, None] * E + e[None, :], (r[:, None] < R) & (e[None, :] < E),
                    tl.dot(tl.trans(dpre), x, input_precision=MLP_PRECISION))
        tl.debug_barrier()  # partials and scratch settle before the next block reads or rewrites them


@triton.jit
def implicit_filter_out_grad_kernel(
    hidden_ptr, t_ptr, rate_ptr, dk_ptr, part_ptr, L, C, R, shift, sdk,
    MODULATE: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, R_PAD: tl.constexpr,
    OUT_PRECISION: tl.constexpr,
):
    """partial[s, channel block] = sum over every S-th block of positions of (dk * decay) @ h_n."""
    channels = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(1)
    splits = tl.num_programs(1)
    r = tl.arange(0, R_PAD)
    acc = tl.zeros((BLOCK_C, R_PAD), dtype=tl.float32)
    for block in range(split, tl.cdiv(L, BLOCK_L), splits):
        pos = block * BLOCK_L + tl.arange(0, BLOCK_L)
        t = tl.load(t_ptr + pos, mask=pos < L, other=0.0)
        g = _load_dk(dk_ptr, channels, pos, C, L, sdk) * _decay(rate_ptr, t, channels, C, shift, MODULATE)
        hidden = tl.load(hidden_ptr + pos[:, None].to(tl.int64) * R + r[None, :],
                         mask=(pos[:, None] < L) & (r[None, :] < R), other=0.0)
        acc += tl.dot(g, hidden, input_precision=OUT_PRECISION)
    out = part_ptr + split.to(tl.int64) * C * R + channels[:, None] * R + r[None, :]
    tl.store(out, acc, mask=(channels[:, None] < C) & (r[None, :] < R))
