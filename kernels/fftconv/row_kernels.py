"""Triton levels of the two-level FFT (:mod:`.two_level`): the first level of the forward transform, read
straight from the time domain, and the last level of the inverse, written straight to it.

Layout (one row = one (batch, channel) pair; M = n1·n2 packed complex points, n2 = T·T): the real row x
(length 2M, zero past the signal) is read as words z[m] = x[2m] + i·x[2m+1], m = j1 + n1·j2. With
k = k2 + n2·k1 the length-M transform factors as

    Z[k2 + n2·k1] = Σ_j1 ω_n1^(j1·k1) · [ω_M^(j1·k2) · Σ_j2 ω_n2^(j2·k2) · z[j1 + n1·j2]],

so the Triton level (the bracket: n2-point DFTs of each column j1, then the twiddles) touches the time
domain and cuFFT's n1-point transforms run on contiguous rows in between. The inverse runs the same
steps backwards: cuFFT's inverse over k1, then here the conjugate twiddles and the inverse n2-point DFTs.
This order fuses what used to be separate passes around the transforms (a transposing pad before cuFFT,
a transposing epilogue after it): the first level reads the gated, range-scaled input itself (the zero
half of the padded signal is masked, not read) and the last level runs the epilogue (1/n, range scales,
skip term, gates, outputs in their dtypes) on the samples it has just computed.

Each n2-point DFT is a T × T Monarch step on tensor cores: with j2 = a·T + b and k2 = c + T·d,
``Y = ((F @ X) ⊙ ω_n2^(b·c)) @ F`` for the (a, b) tile X, F the T-point DFT matrix; each complex product
is three fp16 dots with fp32 accumulation (Gauss: the matrix is stored as (Mr, Mr + Mi, Mi - Mr)) or four
chained ones (stored as (Mr, Mi, -Mi)), the ``GAUSS`` switch. The elementwise work before and between the
dots runs in ``MATH``: fp32, or fp16 as packed half2 instructions (the dot operands are fp16 either way);
after the last dot it is fp32. The spectrum words are written as X[k2 + n2·k1] at word (c·T + d)·n1 + k1
(the "two-level word order" that :func:`.packed_kernels.pair_index` maps to spectrum indices and partners).

KB columns travel together: a tile is (KB, T, T), [col, b, a] for the signal and [col, c, d] for its
spectrum, so that both Monarch steps contract the last axis of a (KB·T, T) view: tall products
(warpgroup MMAs on Hopper), with one permute of the two inner axes between them. The time side moves as
(T, T, 2·KB) sample tiles whose last axis is 2·KB consecutive samples (coalesced) and is split into words
and permuted to the column layout in registers.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .epilogue_kernels import finish_epilogue, gated
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
def _times(j0, n1, T: tl.constexpr, KB: tl.constexpr):
    """Times of the real samples behind a program's words m = j1 + n1·(a·T + b), j1 = j0 … j0 + KB - 1, as
    a (T, T, 2·KB) tile [b, a, q] with q = 2·(j1 - j0) + (0 real, 1 imaginary): the last axis runs over
    2·KB consecutive samples (coalesced)."""
    r = tl.arange(0, T)
    q = tl.arange(0, 2 * KB)
    return (r[None, :, None] * T + r[:, None, None]).to(tl.int64) * (2 * n1) + 2 * j0 + q[None, None, :]


@triton.jit
def _sample_mask(ts, L, j0, n1, KB: tl.constexpr, EVEN: tl.constexpr):
    """Samples of :func:`_times` that exist: times < L, and (unless EVEN: KB divides n1) columns j1 < n1."""
    if EVEN:
        return ts < L
    return (ts < L) & (2 * j0 + tl.arange(0, 2 * KB) < 2 * n1)[None, None, :]


@triton.jit
def _to_columns(x, T: tl.constexpr, KB: tl.constexpr):
    """A (T, T, 2·KB) [b, a, q] sample tile as (re, im) word tiles (KB, T, T) [col, b, a]."""
    re, im = tl.split(tl.reshape(x, (T, T, KB, 2)))
    return tl.permute(re, (2, 0, 1)), tl.permute(im, (2, 0, 1))


@triton.jit
def _from_columns(re, im, T: tl.constexpr, KB: tl.constexpr):
    """Inverse of :func:`_to_columns`."""
    return tl.reshape(tl.join(tl.permute(re, (1, 2, 0)), tl.permute(im, (1, 2, 0))), (T, T, 2 * KB))


@triton.jit
def _spectrum_words(j1, n1, T: tl.constexpr):
    """Word offsets of a program's spectrum tile [col, c, d]: X[k2 + n2·j1'] with k2 = c + T·d sits at
    word (c·T + d)·n1 + j1 of the row."""
    r = tl.arange(0, T)
    return (r[None, :, None] * T + r[None, None, :]) * n1 + j1[:, None, None]


@triton.jit
def first_level_kernel(a_ptr, b_ptr, scale_ptr, out_ptr, mats_ptr, tw_ptr, outer_ptr, H, L, n1, n_blk,
                       sab, sah, sbb, sbh, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, T: tl.constexpr,
                       KB: tl.constexpr, GAUSS: tl.constexpr, EVEN: tl.constexpr, MATH: tl.constexpr):
    """The forward transform's first level, read from the time domain: for KB columns j1 of one row, the
    gated, range-scaled, zero-padded real samples ``a * b * scale[row]`` (zero at times >= L) packed into
    words, their n2-point DFTs over j2 and the twiddles ω_M^(j1·k2), written as fp16 words in the order of
    :func:`_spectrum_words` (``out``: the rows' int32 words) for cuFFT's n1-point transforms over j1."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    ts = _times(j0, n1, T, KB)
    value = gated(a_ptr, b_ptr, row // H, row % H, ts, _sample_mask(ts, L, j0, n1, KB, EVEN), sab, sah, sbb, sbh, HAS_B)
    if HAS_SCALE:
        value *= tl.load(scale_ptr + row)
    xr, xi = _as(_to_columns(value, T, KB), MATH)  # [col, b, a]
    pr, pi = _as(_step(xr, xi, mats_ptr, MAT_F, T, KB, GAUSS), MATH)  # [col, b, c]
    twr, twi = _as(_twiddle(tw_ptr, T), MATH)
    pr, pi = _cmul(pr, pi, twr, twi)
    pr, pi = tl.permute(pr, (0, 2, 1)), tl.permute(pi, (0, 2, 1))  # [col, c, b]
    yr, yi = _step(pr, pi, mats_ptr, MAT_F, T, KB, GAUSS)  # [col, c, d], fp32 (see the module docstring)
    j1 = j0 + tl.arange(0, KB)
    c, s = _outer_twiddle(outer_ptr, j1, n1, T, EVEN, tl.float32)
    yr, yi = _cmul(yr, yi, c, s)
    words = _spectrum_words(j1, n1, T)
    mask = None if EVEN else (j1 < n1)[:, None, None] & (words >= 0)
    store_complex(out_ptr + row * n1 * T * T, words, yr, yi, mask, HALF=True)


@triton.jit
def last_level_kernel(y_ptr, ninv_ptr, mats_ptr, tw_ptr, outer_ptr, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr,
                      out1_ptr, out2_ptr, z_ptr, H, L, n1, n_blk, sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h,
                      sob, soh, HAS_B: tl.constexpr, HAS_D: tl.constexpr, HAS_M1: tl.constexpr,
                      HAS_M2: tl.constexpr, STORE_Z: tl.constexpr, T: tl.constexpr, KB: tl.constexpr,
                      GAUSS: tl.constexpr, EVEN: tl.constexpr, MATH: tl.constexpr):
    """The inverse transform's last level, written to the time domain: for KB columns j1 of one row whose
    n1-point inverse transforms cuFFT has done (``y``: the rows' int32 words), the conjugate twiddles and
    the n2-point inverse DFTs, then the epilogue of :func:`.epilogue_kernels.finish_epilogue` on the samples
    ``z = y * n_inv[row]`` at times < L (skip term, gates, outputs in their dtypes)."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    j1 = j0 + tl.arange(0, KB)
    words = _spectrum_words(j1, n1, T)
    mask = None if EVEN else (j1 < n1)[:, None, None] & (words >= 0)
    yr, yi = _as(load_complex(y_ptr + row * n1 * T * T, words, mask, HALF=True), MATH)  # [col, c, d]
    c, s = _outer_twiddle(outer_ptr, j1, n1, T, EVEN, MATH)
    yr, yi = _cmul(yr, yi, c, -s)
    qr, qi = _as(_step(yr, yi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS), MATH)  # [col, c, b]
    twr, twi = _as(_twiddle(tw_ptr, T), MATH)
    qr, qi = _cmul(qr, qi, twr, -twi)
    qr, qi = tl.permute(qr, (0, 2, 1)), tl.permute(qi, (0, 2, 1))  # [col, b, c]
    xr, xi = _step(qr, qi, mats_ptr, MAT_F_ADJ, T, KB, GAUSS)  # [col, b, a], fp32
    z = _from_columns(xr, xi, T, KB) * tl.load(ninv_ptr + row)
    ts = _times(j0, n1, T, KB)
    finish_epilogue(z, ts, _sample_mask(ts, L, j0, n1, KB, EVEN), row // H, row % H, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr,
            sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h, sob, soh, HAS_B, HAS_D, HAS_M1, HAS_M2, STORE_Z)
