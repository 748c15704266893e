"""Triton inner level of the two-level FFT (:mod:`.two_level`): the length-n2 transforms that finish the
packed length-M spectrum once cuFFT has done the outer level, and their inverse.

Layout (one row = one (batch, channel) pair; M = n1·n2 packed complex points, n2 = T·T): the outer level
has already transformed each row over j1, so the row holds A[j2, k1] (fp16 complex words, k1
contiguous). The inner level finishes the length-M transform of each column k1:

    Z[k1 + n1·k2] = Σ_j2 A[j2, k1] · ω_M^(j2·k1) · ω_n2^(j2·k2),

as a T × T Monarch step on tensor cores: with j2 = a·T + b and k2 = c + T·d,
``Y = ((F @ X) ⊙ ω_n2^(b·c)) @ F`` for the (a, b) tile X, F the T-point DFT matrix; each complex
product is three fp16 dots with fp32 accumulation (Gauss: the matrix is stored as (Mr, Mr + Mi, Mi - Mr)) or four
chained ones (stored as (Mr, Mi, -Mi)), the ``GAUSS`` switch.
The spectrum is written in place: Z[k1 + n1·(c + T·d)] at word (c·T + d)·n1 + k1 (the "two-level word
order" that :func:`.packed_kernels.pair_index` maps to spectrum indices and partners). The inverse kernel
runs the adjoint steps (the unnormalised inverse).

KB columns travel together so that each tile load reads KB contiguous words per j2 (coalesced). A tile is
(T, KB, T) [a, col, b]: the left step sees it as (T, KB·T) and the right step as (T·KB, T), two views of
one row-major tile, so no step permutes it. :func:`inner_dft_columns_kernel` (opt-in, not yet timed) orders
the tile (KB, T, T) instead, so that both steps are tall (KB·T, T) products with one permute between them.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .packed_kernels import load_complex, store_complex

#: Matrix slots of the table tensor (2, 3, T, T): the DFT matrix F and its adjoint (its conjugate: F is
#: symmetric).
MAT_F, MAT_F_ADJ = tl.constexpr(0), tl.constexpr(1)


@triton.jit
def _cmul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


@triton.jit
def _matrix(mats_ptr, slot, part, T: tl.constexpr):
    """Part ``part`` of matrix ``slot`` (Gauss form 0: Mr, 1: Mr + Mi, 2: Mi - Mr; four-dot form 0: Mr,
    1: Mi, 2: -Mi), a (T, T) fp16 tile."""
    r = tl.arange(0, T)
    return tl.load(mats_ptr + (slot * 3 + part) * T * T + r[:, None] * T + r[None, :])


@triton.jit
def _left(mats_ptr, slot, xr, xi, T: tl.constexpr, GAUSS: tl.constexpr):
    """M @ x for complex M (table slot) and x (T, N) fp32 pairs: three fp16 dots (GAUSS) or four chained
    ones (two fp16 operands and two accumulators live instead of three and three)."""
    if GAUSS:
        s = tl.dot(_matrix(mats_ptr, slot, 0, T), (xr + xi).to(tl.float16))
        re = s - tl.dot(_matrix(mats_ptr, slot, 1, T), xi.to(tl.float16))
        im = s + tl.dot(_matrix(mats_ptr, slot, 2, T), xr.to(tl.float16))
    else:
        a, b = xr.to(tl.float16), xi.to(tl.float16)
        re = tl.dot(_matrix(mats_ptr, slot, 2, T), b, tl.dot(_matrix(mats_ptr, slot, 0, T), a))
        im = tl.dot(_matrix(mats_ptr, slot, 0, T), b, tl.dot(_matrix(mats_ptr, slot, 1, T), a))
    return re, im


@triton.jit
def _right(xr, xi, mats_ptr, slot, T: tl.constexpr, GAUSS: tl.constexpr):
    """x @ M for x (N, T) fp32 pairs and complex M (table slot), as :func:`_left`."""
    if GAUSS:
        s = tl.dot((xr + xi).to(tl.float16), _matrix(mats_ptr, slot, 0, T))
        re = s - tl.dot(xi.to(tl.float16), _matrix(mats_ptr, slot, 1, T))
        im = s + tl.dot(xr.to(tl.float16), _matrix(mats_ptr, slot, 2, T))
    else:
        a, b = xr.to(tl.float16), xi.to(tl.float16)
        re = tl.dot(b, _matrix(mats_ptr, slot, 2, T), tl.dot(a, _matrix(mats_ptr, slot, 0, T)))
        im = tl.dot(b, _matrix(mats_ptr, slot, 0, T), tl.dot(a, _matrix(mats_ptr, slot, 1, T)))
    return re, im


@triton.jit
def _twiddle(tw_ptr, T: tl.constexpr):
    """The inner twiddles ω_n2^(b·c) as (re, im) (T, 1, T) fp32 tiles indexed [c, ·, b]."""
    r = tl.arange(0, T)
    idx = r[:, None, None] * T + r[None, None, :]
    return tl.load(tw_ptr + idx), tl.load(tw_ptr + T * T + idx)


@triton.jit
def _forward(xr, xi, mats_ptr, tw_ptr, T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr):
    """The inner transform of KB columns: x (T, KB, T) [a, col, b] -> Y (T, KB, T) [c, col, d]. The left
    step contracts a with the columns side by side ((T, KB·T) tile), the right one b with the columns
    stacked ((T·KB, T) tile): both are reshapes of the same row-major tile, so nothing is permuted."""
    pr, pi = _left(mats_ptr, MAT_F, tl.reshape(xr, (T, KB * T)), tl.reshape(xi, (T, KB * T)), T, GAUSS)
    twr, twi = _twiddle(tw_ptr, T)
    pr, pi = _cmul(tl.reshape(pr, (T, KB, T)), tl.reshape(pi, (T, KB, T)), twr, twi)
    yr, yi = _right(tl.reshape(pr, (T * KB, T)), tl.reshape(pi, (T * KB, T)), mats_ptr, MAT_F, T, GAUSS)
    return tl.reshape(yr, (T, KB, T)), tl.reshape(yi, (T, KB, T))


@triton.jit
def _inverse(yr, yi, mats_ptr, tw_ptr, T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr):
    """Adjoint of :func:`_forward` (unnormalised inverse): Y [c, col, d] -> x [a, col, b]."""
    qr, qi = _right(tl.reshape(yr, (T * KB, T)), tl.reshape(yi, (T * KB, T)), mats_ptr, MAT_F_ADJ, T, GAUSS)
    twr, twi = _twiddle(tw_ptr, T)
    qr, qi = _cmul(tl.reshape(qr, (T, KB, T)), tl.reshape(qi, (T, KB, T)), twr, -twi)
    xr, xi = _left(mats_ptr, MAT_F_ADJ, tl.reshape(qr, (T, KB * T)), tl.reshape(qi, (T, KB * T)), T, GAUSS)
    return tl.reshape(xr, (T, KB, T)), tl.reshape(xi, (T, KB, T))


@triton.jit
def _outer_twiddle(outer_ptr, k1, n1, T: tl.constexpr):
    """cos and sin of the outer twiddles ω_M^(j2·k1), j2 = a·T + b, as (T, KB, T) tiles [a, col, b]: the
    product of ω_M^(a·T·k1) and ω_M^(b·k1), read from the (2, T, n1) complex64 table ``outer`` (int64
    words): 2·T·KB values per program instead of T·T·KB."""
    r = tl.arange(0, T)
    valid = k1 < n1
    ca, sa = load_complex(outer_ptr, r[:, None] * n1 + k1[None, :], valid[None, :], HALF=False)  # [a, col]
    cb, sb = load_complex(outer_ptr + T * n1, k1[:, None] + r[None, :] * n1, valid[:, None], HALF=False)  # [col, b]
    ca, sa, cb, sb = ca[:, :, None], sa[:, :, None], cb[None, :, :], sb[None, :, :]
    return ca * cb - sa * sb, sa * cb + ca * sb


@triton.jit
def inner_dft_kernel(x_ptr, mats_ptr, tw_ptr, outer_ptr, n1, n_blk, INVERSE: tl.constexpr, T: tl.constexpr,
                     KB: tl.constexpr, GAUSS: tl.constexpr):
    """In place on rows of M int32 words whose outer level is done: the outer twiddles and the inner DFT
    (the spectrum in two-level word order), or with INVERSE its adjoint (the inner inverse, then the
    conjugate twiddles). Program: KB columns of one row."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    k1 = (pid % n_blk) * KB + tl.arange(0, KB)
    r = tl.arange(0, T)
    words = (r[:, None, None] * T + r[None, None, :]) * n1 + k1[None, :, None]  # [a, col, b]
    mask = (k1 < n1)[None, :, None] & (words >= 0)
    base = x_ptr + row * n1 * T * T
    if INVERSE:
        yr, yi = load_complex(base, words, mask, HALF=True)
        xr, xi = _inverse(yr, yi, mats_ptr, tw_ptr, T, KB, GAUSS)
        c, s = _outer_twiddle(outer_ptr, k1, n1, T)
        xr, xi = _cmul(xr, xi, c, -s)
        store_complex(base, words, xr, xi, mask, HALF=True)
    else:
        xr, xi = load_complex(base, words, mask, HALF=True)
        c, s = _outer_twiddle(outer_ptr, k1, n1, T)
        yr, yi = _forward(*_cmul(xr, xi, c, s), mats_ptr, tw_ptr, T, KB, GAUSS)
        store_complex(base, words, yr, yi, mask, HALF=True)


@triton.jit
def _outer_twiddle_columns(outer_ptr, k1, n1, T: tl.constexpr, EVEN: tl.constexpr):
    """:func:`_outer_twiddle` as (KB, T, T) tiles [col, b, a] (EVEN: every column k1 < n1)."""
    r = tl.arange(0, T)
    valid = None if EVEN else (k1 < n1)[:, None]
    ca, sa = load_complex(outer_ptr, k1[:, None] + r[None, :] * n1, valid, HALF=False)  # [col, a]
    cb, sb = load_complex(outer_ptr + T * n1, k1[:, None] + r[None, :] * n1, valid, HALF=False)  # [col, b]
    ca, sa, cb, sb = ca[:, None, :], sa[:, None, :], cb[:, :, None], sb[:, :, None]
    return ca * cb - sa * sb, sa * cb + ca * sb


@triton.jit
def _twiddle_columns(tw_ptr, T: tl.constexpr):
    """The inner twiddles ω_n2^(b·c) as (1, T, T) tiles, [·, b, c] or [·, c, b] alike (symmetric)."""
    r = tl.arange(0, T)
    idx = r[None, :, None] * T + r[None, None, :]
    return tl.load(tw_ptr + idx), tl.load(tw_ptr + T * T + idx)


@triton.jit
def _step(xr, xi, mats_ptr, slot, T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr):
    """(KB, T, T) tiles times matrix ``slot`` over their last axis, as one (KB·T, T) @ (T, T) product."""
    yr, yi = _right(tl.reshape(xr, (KB * T, T)), tl.reshape(xi, (KB * T, T)), mats_ptr, slot, T, GAUSS)
    return tl.reshape(yr, (KB, T, T)), tl.reshape(yi, (KB, T, T))


@triton.jit
def inner_dft_columns_kernel(x_ptr, mats_ptr, tw_ptr, outer_ptr, n1, n_blk, INVERSE: tl.constexpr,
                             T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr, EVEN: tl.constexpr):
    """:func:`inner_dft_kernel` with the tile column-major: (KB, T, T), [col, b, a] for the signal and
    [col, c, d] for its spectrum, so that both Monarch steps contract the last axis of a (KB·T, T) view
    (tall products: warpgroup MMAs on Hopper) with one permute of the two inner axes between them. EVEN:
    KB divides n1, so no access needs a mask."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    k1 = (pid % n_blk) * KB + tl.arange(0, KB)
    r = tl.arange(0, T)
    signal = (r[None, None, :] * T + r[None, :, None]) * n1 + k1[:, None, None]  # [col, b, a]: (a·T + b)·n1 + k1
    spectrum = (r[None, :, None] * T + r[None, None, :]) * n1 + k1[:, None, None]  # [col, c, d]: (c·T + d)·n1 + k1
    mask = None if EVEN else (k1 < n1)[:, None, None] & (signal >= 0)
    base = x_ptr + row * n1 * T * T
    if INVERSE:
        yr, yi = load_complex(base, spectrum, mask, HALF=True)  # [col, c, d]
        qr, qi = _step(yr, yi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS)  # [col, c, b]
        twr, twi = _twiddle_columns(tw_ptr, T)
        qr, qi = _cmul(qr, qi, twr, -twi)
        qr, qi = tl.permute(qr, (0, 2, 1)), tl.permute(qi, (0, 2, 1))  # [col, b, c]
        xr, xi = _step(qr, qi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS)  # [col, b, a]
        c, s = _outer_twiddle_columns(outer_ptr, k1, n1, T, EVEN)
        xr, xi = _cmul(xr, xi, c, -s)
        store_complex(base, signal, xr, xi, mask, HALF=True)
    else:
        xr, xi = load_complex(base, signal, mask, HALF=True)  # [col, b, a]
        c, s = _outer_twiddle_columns(outer_ptr, k1, n1, T, EVEN)
        pr, pi = _step(*_cmul(xr, xi, c, s), mats_ptr, MAT_F, T, KB, GAUSS)  # [col, b, c]
        twr, twi = _twiddle_columns(tw_ptr, T)
        pr, pi = _cmul(pr, pi, twr, twi)
        pr, pi = tl.permute(pr, (0, 2, 1)), tl.permute(pi, (0, 2, 1))  # [col, c, b]
        yr, yi = _step(pr, pi, mats_ptr, MAT_F, T, KB, GAUSS)  # [col, c, d]
        store_complex(base, spectrum, yr, yi, mask, HALF=True)
