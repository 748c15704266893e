"""Triton kernels of the Monarch-FFT convolution (see plan.py for the layout).

Complex data is planar (separate fp32 real and imaginary tiles). Every DFT is a ``tl.dot`` against a
DFT matrix; ``PREC`` is the dot's input precision ("tf32" for bf16/fp16 inputs, "tf32x3" for fp32
accuracy). Real-input and real-output steps skip the dots whose operand is zero or whose result is
discarded, and the column pass reads only the non-zero half of the zero-padded input.
"""
from __future__ import annotations

import math

import triton
import triton.language as tl

TWO_PI = tl.constexpr(2.0 * math.pi)


@triton.jit
def _load_square(ptr, R: tl.constexpr, C: tl.constexpr):
    """Row-major (R, C) fp32 matrix."""
    return tl.load(ptr + tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :])


@triton.jit
def _row_fwd(xr, xi, far, fai, fbr, fbi, twr, twi, REAL: tl.constexpr, PREC: tl.constexpr):
    """Row transform of an (A, BD) tile: F_A @ X, twiddle, @ F_BD (frequency ka + A*kb at [ka, kb])."""
    if REAL:
        yr = tl.dot(far, xr, input_precision=PREC)
        yi = tl.dot(fai, xr, input_precision=PREC)
    else:
        yr = tl.dot(far, xr, input_precision=PREC) - tl.dot(fai, xi, input_precision=PREC)
        yi = tl.dot(far, xi, input_precision=PREC) + tl.dot(fai, xr, input_precision=PREC)
    tr = yr * twr - yi * twi
    ti = yr * twi + yi * twr
    zr = tl.dot(tr, fbr, input_precision=PREC) - tl.dot(ti, fbi, input_precision=PREC)
    zi = tl.dot(tr, fbi, input_precision=PREC) + tl.dot(ti, fbr, input_precision=PREC)
    return zr, zi


@triton.jit
def _row_inv(zr, zi, far, fai, fbr, fbi, twr, twi, REAL_OUT: tl.constexpr, PREC: tl.constexpr):
    """Adjoint of :func:`_row_fwd` (unscaled): @ conj(F_BD), conjugate twiddle, conj(F_A) @ ."""
    yr = tl.dot(zr, fbr, input_precision=PREC) + tl.dot(zi, fbi, input_precision=PREC)
    yi = tl.dot(zi, fbr, input_precision=PREC) - tl.dot(zr, fbi, input_precision=PREC)
    tr = yr * twr + yi * twi
    ti = yi * twr - yr * twi
    xr = tl.dot(far, tr, input_precision=PREC) + tl.dot(fai, ti, input_precision=PREC)
    if REAL_OUT:
        xi = xr
    else:
        xi = tl.dot(far, ti, input_precision=PREC) - tl.dot(fai, tr, input_precision=PREC)
    return xr, xi


@triton.jit
def _load_real(u_ptr, g_ptr, off, mask, HAS_G: tl.constexpr):
    """``u * g`` in fp32 at ``off`` (0 where masked): the gated, zero-padded real input."""
    x = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_G:
        x = x * tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
    return x


@triton.jit
def _epilogue(y_ptr, acc, x, d_ptr, post_ptr, h, off, mask, HAS_D: tl.constexpr, HAS_POST: tl.constexpr):
    """Store ``post * (acc + x * D[h])`` in y's dtype."""
    if HAS_D:
        acc = acc + x * tl.load(d_ptr + h).to(tl.float32)
    if HAS_POST:
        acc = acc * tl.load(post_ptr + off, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + off, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def row_conv_kernel(
    u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr,  # real input/output (short path)
    zr_ptr, zi_ptr,  # complex rows, transformed in place (long path)
    kr_ptr, ki_ptr,  # filter spectrum in stored order, (H, N2*A*BD), scaled by 1/N
    far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr,
    H, L, N2,
    A: tl.constexpr, BD: tl.constexpr, REAL_IO: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
):
    """One row: transform, multiply by the filter spectrum, inverse transform.

    Short path (REAL_IO): the row is the whole gated, zero-padded sequence and the program writes
    the finished output (skip term and post-gate fused). Long path: row ``program_id(1)`` of the
    column-transformed buffer, rewritten in place.
    """
    bh = tl.program_id(0).to(tl.int64)  # batch*channel on axis 0: it can exceed 65535
    r = tl.program_id(1)
    h = bh % H
    M: tl.constexpr = A * BD
    j = tl.arange(0, A)[:, None] * BD + tl.arange(0, BD)[None, :]
    far = _load_square(far_ptr, A, A)
    fai = _load_square(fai_ptr, A, A)
    fbr = _load_square(fbr_ptr, BD, BD)
    fbi = _load_square(fbi_ptr, BD, BD)
    twr = _load_square(twr_ptr, A, BD)
    twi = _load_square(twi_ptr, A, BD)
    if REAL_IO:
        off = bh * L + j
        mask = j < L
        x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
        zr, zi = _row_fwd(x, x, far, fai, fbr, fbi, twr, twi, True, PREC)
    else:
        zoff = (bh * N2 + r) * M + j
        zr, zi = _row_fwd(tl.load(zr_ptr + zoff), tl.load(zi_ptr + zoff), far, fai, fbr, fbi, twr, twi, False, PREC)
    koff = h * (N2 * M) + r * M + j
    kr = tl.load(kr_ptr + koff)
    ki = tl.load(ki_ptr + koff)
    pr = zr * kr - zi * ki
    pi = zr * ki + zi * kr
    if REAL_IO:
        out, _unused = _row_inv(pr, pi, far, fai, fbr, fbi, twr, twi, True, PREC)
        _epilogue(y_ptr, out, x, d_ptr, post_ptr, h, off, mask, HAS_D, HAS_POST)
    else:
        outr, outi = _row_inv(pr, pi, far, fai, fbr, fbi, twr, twi, False, PREC)
        tl.store(zr_ptr + zoff, outr)
        tl.store(zi_ptr + zoff, outi)


@triton.jit
def row_xspec_kernel(
    u_ptr, pre_ptr, dy_ptr, post_ptr,  # real inputs (short path)
    xr_ptr, xi_ptr, gr_ptr, gi_ptr,  # column-transformed x and g (long path)
    sr_ptr, si_ptr,  # out: sum_b conj(X_b) * G_b in stored order, (H, N2*A*BD)
    far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr,
    B, H, L, N2,
    A: tl.constexpr, BD: tl.constexpr, REAL_IN: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
):
    """Cross spectrum of the input x and the output gradient g, summed over the batch (for dk)."""
    r = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    M: tl.constexpr = A * BD
    j = tl.arange(0, A)[:, None] * BD + tl.arange(0, BD)[None, :]
    far = _load_square(far_ptr, A, A)
    fai = _load_square(fai_ptr, A, A)
    fbr = _load_square(fbr_ptr, BD, BD)
    fbi = _load_square(fbi_ptr, BD, BD)
    twr = _load_square(twr_ptr, A, BD)
    twi = _load_square(twi_ptr, A, BD)
    accr = tl.zeros((A, BD), tl.float32)
    acci = tl.zeros((A, BD), tl.float32)
    for b in range(B):
        bh = b * H + h
        if REAL_IN:
            off = bh * L + j
            mask = j < L
            x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
            g = _load_real(dy_ptr, post_ptr, off, mask, HAS_POST)
            Xr, Xi = _row_fwd(x, x, far, fai, fbr, fbi, twr, twi, True, PREC)
            Gr, Gi = _row_fwd(g, g, far, fai, fbr, fbi, twr, twi, True, PREC)
        else:
            zoff = (bh * N2 + r) * M + j
            Xr, Xi = _row_fwd(tl.load(xr_ptr + zoff), tl.load(xi_ptr + zoff), far, fai, fbr, fbi, twr, twi, False, PREC)
            Gr, Gi = _row_fwd(tl.load(gr_ptr + zoff), tl.load(gi_ptr + zoff), far, fai, fbr, fbi, twr, twi, False, PREC)
        accr += Xr * Gr + Xi * Gi
        acci += Xr * Gi - Xi * Gr
    soff = h * (N2 * M) + r * M + j
    tl.store(sr_ptr + soff, accr)
    tl.store(si_ptr + soff, acci)


@triton.jit
def col_fwd_kernel(
    u_ptr, pre_ptr, zr_ptr, zi_ptr, fcr_ptr, fci_ptr, L,
    N2: tl.constexpr, N1: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr,
    HAS_PRE: tl.constexpr, PREC: tl.constexpr,
):
    """Length-N2 DFT over n2 of the gated real input viewed as (N2, N1), times the twiddle.

    Only ``n2 < N2/2`` can hold input (the rest is the zero padding), so the reduction stops there.
    Writes ``Z[k2, n1] = W_N^(n1*k2) * sum_n2 W_N2^(n2*k2) x[n1 + N1*n2]``.
    """
    pc = tl.program_id(2)
    pk = tl.program_id(1)
    bh = tl.program_id(0).to(tl.int64)  # axis 0: can exceed 65535
    N: tl.constexpr = N2 * N1
    k2 = pk * BK + tl.arange(0, BK)[:, None]
    n1 = pc * BC + tl.arange(0, BC)[None, :]
    accr = tl.zeros((BK, BC), tl.float32)
    acci = tl.zeros((BK, BC), tl.float32)
    for n2_0 in range(0, N2 // 2, BN):
        n2 = n2_0 + tl.arange(0, BN)
        n = n1 + N1 * n2[:, None]
        x = _load_real(u_ptr, pre_ptr, bh * L + n, n < L, HAS_PRE)
        foff = k2 * N2 + n2[None, :]
        accr += tl.dot(tl.load(fcr_ptr + foff), x, input_precision=PREC)
        acci += tl.dot(tl.load(fci_ptr + foff), x, input_precision=PREC)
    ang = ((n1 * k2) % N).to(tl.float32) * (-TWO_PI / N)
    c = tl.cos(ang)
    s = tl.sin(ang)
    zoff = (bh * N2 + k2) * N1 + n1
    tl.store(zr_ptr + zoff, accr * c - acci * s)
    tl.store(zi_ptr + zoff, accr * s + acci * c)


@triton.jit
def col_inv_kernel(
    zr_ptr, zi_ptr, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, fcr_ptr, fci_ptr, H, L,
    N2: tl.constexpr, N1: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
):
    """Inverse of :func:`col_fwd_kernel` for output rows ``n2 < N2/2`` only, real part, fused epilogue."""
    pc = tl.program_id(2)
    pn = tl.program_id(1)
    bh = tl.program_id(0).to(tl.int64)  # axis 0: can exceed 65535
    h = bh % H
    N: tl.constexpr = N2 * N1
    n2 = pn * BK + tl.arange(0, BK)[:, None]
    n1 = pc * BC + tl.arange(0, BC)[None, :]
    acc = tl.zeros((BK, BC), tl.float32)
    for k2_0 in range(0, N2, BN):
        k2 = k2_0 + tl.arange(0, BN)
        zoff = (bh * N2 + k2[:, None]) * N1 + n1
        zr = tl.load(zr_ptr + zoff)
        zi = tl.load(zi_ptr + zoff)
        ang = ((n1 * k2[:, None]) % N).to(tl.float32) * (TWO_PI / N)
        c = tl.cos(ang)
        s = tl.sin(ang)
        tr = zr * c - zi * s
        ti = zr * s + zi * c
        foff = n2 * N2 + k2[None, :]
        acc += tl.dot(tl.load(fcr_ptr + foff), tr, input_precision=PREC)
        acc += tl.dot(tl.load(fci_ptr + foff), ti, input_precision=PREC)
    n = n1 + N1 * n2
    mask = n < L
    off = bh * L + n
    if HAS_D:
        x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
    else:
        x = acc  # unused: no skip term
    _epilogue(y_ptr, acc, x, d_ptr, post_ptr, h, off, mask, HAS_D, HAS_POST)
