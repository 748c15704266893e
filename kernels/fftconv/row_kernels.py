"""Triton inner level of the two-level FFT (:mod:`.two_level`): the length-n2 transforms that finish the
packed length-M spectrum once cuFFT has done the outer level, and their inverse.

Layout (one row = one (batch, channel) pair; M = n1·n2 packed complex points, n2 = T·T): the outer level
has already transformed each row over j1, so the row holds A[j2, k1] (fp16 complex words, k1
contiguous). The inner level finishes the length-M transform of each column k1:

    Z[k1 + n1·k2] = Σ_j2 A[j2, k1] · ω_M^(j2·k1) · ω_n2^(j2·k2),

as a T × T Monarch step on tensor cores: with j2 = a·T + b and k2 = c + T·d,
``Y = ((F @ X) ⊙ ω_n2^(b·c)) @ F`` for the (a, b) tile X, F the T-point DFT matrix; each complex
product is three fp16 dots with fp32 accumulation (Gauss: the matrix is stored as (Mr, Mr + Mi, Mi - Mr)) or four
chained ones (stored as (Mr, Mi, -Mi)), the ``GAUSS`` switch. The elementwise work before and between the dots
(twiddle products, Gauss sums) runs in ``MATH``: fp32, or fp16 as packed half2 instructions (the dot
operands are fp16 either way). The inverse's work after its last dot stays fp32: in fp16 its real and
imaginary halves would have to be re-paired into words by byte permutes (offline: 283 instead of 128).
The spectrum is written in place: Z[k1 + n1·(c + T·d)] at word (c·T + d)·n1 + k1 (the "two-level word
order" that :func:`.packed_kernels.pair_index` maps to spectrum indices and partners). The inverse kernel
runs the adjoint steps (the unnormalised inverse).

KB columns travel together so that each tile load reads KB contiguous words per j2 (coalesced). A tile is
(KB, T, T), [col, b, a] for the signal and [col, c, d] for its spectrum, so that both Monarch steps contract
the last axis of a (KB·T, T) view: tall products (warpgroup MMAs on Hopper), with one permute of the two
inner axes between them. This layout replaced (T, KB, T) [a, col, b] tiles, whose left step was a wide
(T, T) @ (T, KB·T) product: on an H200 at 1M the inner passes went 1.07 → 0.97 ms (forward) and 1.01 → 0.84 ms
(inverse), and offline (sm_90a) the forward compiled to ~20 % fewer instructions and half the barriers
(kernels/fftconv/NOTES.md, "Twelfth session").
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
def _as(pair, MATH: tl.constexpr):
    """The (re, im) pair in the dtype of the elementwise work between the dots (``MATH``: fp32, or fp16)."""
    return pair[0].to(MATH), pair[1].to(MATH)


@triton.jit
def _outer_twiddle(outer_ptr, k1, n1, T: tl.constexpr, EVEN: tl.constexpr, MATH: tl.constexpr):
    """cos and sin of the outer twiddles ω_M^(j2·k1), j2 = a·T + b, as (KB, T, T) tiles [col, b, a] in
    ``MATH``: the product of ω_M^(a·T·k1) and ω_M^(b·k1), read from the (2, T, n1) complex64 table
    ``outer`` (int64 words): 2·T·KB values per program instead of T·T·KB (EVEN: every column k1 < n1)."""
    r = tl.arange(0, T)
    valid = None if EVEN else (k1 < n1)[:, None]
    ca, sa = _as(load_complex(outer_ptr, k1[:, None] + r[None, :] * n1, valid, HALF=False), MATH)  # [col, a]
    cb, sb = _as(load_complex(outer_ptr + T * n1, k1[:, None] + r[None, :] * n1, valid, HALF=False), MATH)  # [col, b]
    ca, sa, cb, sb = ca[:, None, :], sa[:, None, :], cb[:, :, None], sb[:, :, None]
    return ca * cb - sa * sb, sa * cb + ca * sb


@triton.jit
def _twiddle(tw_ptr, T: tl.constexpr):
    """The inner twiddles ω_n2^(b·c) as (1, T, T) tiles, [·, b, c] or [·, c, b] alike (symmetric)."""
    r = tl.arange(0, T)
    idx = r[None, :, None] * T + r[None, None, :]
    return tl.load(tw_ptr + idx), tl.load(tw_ptr + T * T + idx)


@triton.jit
def _step(xr, xi, mats_ptr, slot, T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr):
    """(KB, T, T) tiles (fp32 or fp16 pairs) times complex matrix ``slot`` over their last axis, as one
    (KB·T, T) @ (T, T) product with fp32 results: three fp16 dots (GAUSS) or four chained ones (two fp16
    operands and two accumulators live instead of three and three)."""
    xr, xi = tl.reshape(xr, (KB * T, T)), tl.reshape(xi, (KB * T, T))
    if GAUSS:
        s = tl.dot((xr + xi).to(tl.float16), _matrix(mats_ptr, slot, 0, T))
        re = s - tl.dot(xi.to(tl.float16), _matrix(mats_ptr, slot, 1, T))
        im = s + tl.dot(xr.to(tl.float16), _matrix(mats_ptr, slot, 2, T))
    else:
        a, b = xr.to(tl.float16), xi.to(tl.float16)
        re = tl.dot(b, _matrix(mats_ptr, slot, 2, T), tl.dot(a, _matrix(mats_ptr, slot, 0, T)))
        im = tl.dot(b, _matrix(mats_ptr, slot, 0, T), tl.dot(a, _matrix(mats_ptr, slot, 1, T)))
    return tl.reshape(re, (KB, T, T)), tl.reshape(im, (KB, T, T))


@triton.jit
def inner_dft_kernel(x_ptr, mats_ptr, tw_ptr, outer_ptr, n1, n_blk, INVERSE: tl.constexpr,
                     T: tl.constexpr, KB: tl.constexpr, GAUSS: tl.constexpr, EVEN: tl.constexpr,
                     MATH: tl.constexpr):
    """In place on rows of M int32 words whose outer level is done: the outer twiddles and the inner DFT
    (the spectrum in two-level word order), or with INVERSE its adjoint (the inner inverse, then the
    conjugate twiddles). Program: KB columns of one row, as (KB, T, T) tiles. EVEN: KB divides n1, so no
    access needs a mask."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    k1 = (pid % n_blk) * KB + tl.arange(0, KB)
    r = tl.arange(0, T)
    signal = (r[None, None, :] * T + r[None, :, None]) * n1 + k1[:, None, None]  # [col, b, a]: (a·T + b)·n1 + k1
    spectrum = (r[None, :, None] * T + r[None, None, :]) * n1 + k1[:, None, None]  # [col, c, d]: (c·T + d)·n1 + k1
    mask = None if EVEN else (k1 < n1)[:, None, None] & (signal >= 0)
    base = x_ptr + row * n1 * T * T
    if INVERSE:
        yr, yi = _as(load_complex(base, spectrum, mask, HALF=True), MATH)  # [col, c, d]
        qr, qi = _as(_step(yr, yi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS), MATH)  # [col, c, b]
        twr, twi = _as(_twiddle(tw_ptr, T), MATH)
        qr, qi = _cmul(qr, qi, twr, -twi)
        qr, qi = tl.permute(qr, (0, 2, 1)), tl.permute(qi, (0, 2, 1))  # [col, b, c]
        xr, xi = _step(qr, qi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS)  # [col, b, a], fp32 (see above)
        c, s = _outer_twiddle(outer_ptr, k1, n1, T, EVEN, tl.float32)
        xr, xi = _cmul(xr, xi, c, -s)
        store_complex(base, signal, xr, xi, mask, HALF=True)
    else:
        xr, xi = _as(load_complex(base, signal, mask, HALF=True), MATH)  # [col, b, a]
        c, s = _outer_twiddle(outer_ptr, k1, n1, T, EVEN, MATH)
        pr, pi = _as(_step(*_cmul(xr, xi, c, s), mats_ptr, MAT_F, T, KB, GAUSS), MATH)  # [col, b, c]
        twr, twi = _as(_twiddle(tw_ptr, T), MATH)
        pr, pi = _cmul(pr, pi, twr, twi)
        pr, pi = tl.permute(pr, (0, 2, 1)), tl.permute(pi, (0, 2, 1))  # [col, c, b]
        yr, yi = _step(pr, pi, mats_ptr, MAT_F, T, KB, GAUSS)  # [col, c, d]
        store_complex(base, spectrum, yr, yi, mask, HALF=True)
