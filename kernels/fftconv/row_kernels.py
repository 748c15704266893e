"""Triton levels of the two-level FFT (:mod:`.two_level`): the first level of the forward transform, read
straight from the time domain, and the last level of the inverse, written straight to it.

Layout (one row = one (batch, channel) pair; M = n1·n2 packed complex points): the real row x
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

Each n2-point DFT (n2 = TA·TB) is a Monarch step on tensor cores: with j2 = a·TB + b and k2 = c + TA·d,
``Y = ((X @ F_TA) ⊙ ω_n2^(b·c)) @ F_TB`` for the (b, a) tile X, F_T the T-point DFT matrix; each complex
product (the ``DOTS`` setting) is one fp16 dot with fp32 accumulation on the real and imaginary parts
interleaved along the contraction, against the real 2T × 2T matrix that embeds the complex one (stored as
such), or three dots (Gauss: the matrix stored as (Mr, Mr + Mi, Mi - Mr)), or four chained ones (stored as
(Mr, Mi, -Mi)). The elementwise work before and between the dots runs in ``MATH``: fp32, or fp16 as packed
half2 instructions (the dot operands are fp16 either way); after the last dot it is fp32. The spectrum words
are written as X[k2 + n2·k1] at word (c·TB + d)·n1 + k1 (the "two-level word order" that
:func:`.packed_kernels.pair_index` maps to spectrum indices and partners). TB = 2·TA (a 512-point level) halves n1, which keeps cuFFT's level at one pass
at M = 4M (:mod:`.two_level`).

KB columns travel together: a tile is (KB, TB, TA), [col, b, a] for the signal, and (KB, TA, TB), [col, c,
d] for its spectrum, so that both Monarch steps contract the last axis of a (KB·R, T) view: tall products
(warpgroup MMAs on Hopper), with one permute of the two inner axes between them. The time side moves as
(TB, TA, 2·KB) sample tiles whose last axis is 2·KB consecutive samples (coalesced) and is split into words
and permuted to the column layout in registers.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .epilogue_kernels import gated, write_outputs
from .packed_kernels import load_complex, store_complex

#: Matrix slots of a table tensor (2, 3, T, T): the DFT matrix F_T and its adjoint (its conjugate: F_T is
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
def _embedded_matrix(mats_ptr, slot, T: tl.constexpr):
    """Matrix ``slot`` of the one-dot form: the (2T, 2T) fp16 real matrix W with W[2k + i, 2n + o] the part of
    x[k]·M[k, n] that an interleaved input's real (i = 0) or imaginary (i = 1) half contributes to the output's
    real (o = 0) or imaginary (o = 1) half: Mr, Mi in the first row of each 2 × 2 block, -Mi, Mr in the second."""
    r = tl.arange(0, 2 * T)
    return tl.load(mats_ptr + slot * 4 * T * T + r[:, None] * (2 * T) + r[None, :])


@triton.jit
def _as(pair, MATH: tl.constexpr):
    """The (re, im) pair in the dtype of the elementwise work between the dots (``MATH``: fp32, or fp16)."""
    return pair[0].to(MATH), pair[1].to(MATH)


@triton.jit
def _outer_twiddle(outer_ptr, j1, n1, TA: tl.constexpr, TB: tl.constexpr, EVEN: tl.constexpr, MATH: tl.constexpr):
    """cos and sin of the twiddles ω_M^(k2·j1), k2 = c + TA·d, as (KB, TA, TB) tiles [col, c, d] in ``MATH``
    for the columns ``j1``: the product of ω_M^(d·TA·j1) and ω_M^(c·j1), read from the (TB + TA, n1)
    complex64 table ``outer`` (int64 words; rows < TB: the first factor, then the second): (TA + TB)·KB
    values per program instead of TA·TB·KB (EVEN: every column < n1)."""
    rd, rc = tl.arange(0, TB), tl.arange(0, TA)
    valid = None if EVEN else (j1 < n1)[:, None]
    cd, sd = _as(load_complex(outer_ptr, j1[:, None] + rd[None, :] * n1, valid, HALF=False), MATH)  # [col, d]
    cc, sc = _as(load_complex(outer_ptr + TB * n1, j1[:, None] + rc[None, :] * n1, valid, HALF=False), MATH)  # [col, c]
    cd, sd, cc, sc = cd[:, None, :], sd[:, None, :], cc[:, :, None], sc[:, :, None]
    return cd * cc - sd * sc, sd * cc + cd * sc


@triton.jit
def _twiddle(tw_ptr, TA: tl.constexpr, TB: tl.constexpr, C_FIRST: tl.constexpr):
    """The twiddles ω_n2^(b·c) between the two Monarch steps (b < TB, c < TA; table (2, TB, TA)) as
    (1, TB, TA) tiles [·, b, c], or with C_FIRST (1, TA, TB) tiles [·, c, b]."""
    rb, rc = tl.arange(0, TB), tl.arange(0, TA)
    if C_FIRST:
        idx = rb[None, None, :] * TA + rc[None, :, None]
    else:
        idx = rb[None, :, None] * TA + rc[None, None, :]
    return tl.load(tw_ptr + idx), tl.load(tw_ptr + TA * TB + idx)


@triton.jit
def _step(xr, xi, mats_ptr, slot, R: tl.constexpr, T: tl.constexpr, KB: tl.constexpr, DOTS: tl.constexpr):
    """(KB, R, T) tiles (fp32 or fp16 pairs) times the T × T complex matrix ``slot`` over their last axis, as
    one (KB·R, T) @ (T, T) complex product with fp32 results: DOTS = 1, one (KB·R, 2T) @ (2T, 2T) fp16 dot on
    the interleaved parts (one accumulator chain: the fastest on an H200, kernels/fftconv/NOTES.md "Twentieth
    session"); 3, three fp16 dots (Gauss); 4, four chained ones."""
    xr, xi = tl.reshape(xr, (KB * R, T)), tl.reshape(xi, (KB * R, T))
    if DOTS == 1:
        x = tl.reshape(tl.join(xr.to(tl.float16), xi.to(tl.float16)), (KB * R, 2 * T))  # [row, (k, part)]
        re, im = tl.split(tl.reshape(tl.dot(x, _embedded_matrix(mats_ptr, slot, T)), (KB * R, T, 2)))
    elif DOTS == 3:
        s = tl.dot((xr + xi).to(tl.float16), _matrix(mats_ptr, slot, 0, T))
        re = s - tl.dot(xi.to(tl.float16), _matrix(mats_ptr, slot, 1, T))
        im = s + tl.dot(xr.to(tl.float16), _matrix(mats_ptr, slot, 2, T))
    else:
        a, b = xr.to(tl.float16), xi.to(tl.float16)
        re = tl.dot(b, _matrix(mats_ptr, slot, 2, T), tl.dot(a, _matrix(mats_ptr, slot, 0, T)))
        im = tl.dot(b, _matrix(mats_ptr, slot, 0, T), tl.dot(a, _matrix(mats_ptr, slot, 1, T)))
    return tl.reshape(re, (KB, R, T)), tl.reshape(im, (KB, R, T))


@triton.jit
def _times(j0, n1, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr, WORD: tl.constexpr):
    """Times of the real samples behind a program's words m = j1 + n1·(a·TB + b), j1 = j0 … j0 + KB - 1, as
    a (TB, TA, WORD·KB) tile [b, a, q]: with WORD = 2 samples per word (a row's, packed) q = 2·(j1 - j0) +
    (0 real, 1 imaginary), with WORD = 1 (paired rows, one sample of each) q = j1 - j0. The last axis runs
    over WORD·KB consecutive samples (coalesced). int32: a row's times stay below WORD·n1·n2 <= 2^23 (the row's
    base offset is added to the pointer as a scalar), which halves the registers the tile's offsets take
    (the last level spilled 1.4 KB at 128 registers with int64 offsets, 0.6 KB now)."""
    ra, rb = tl.arange(0, TA), tl.arange(0, TB)
    q = tl.arange(0, WORD * KB)
    return (ra[None, :, None] * TB + rb[:, None, None]) * (WORD * n1) + WORD * j0 + q[None, None, :]


@triton.jit
def _sample_mask(ts, L, j0, n1, KB: tl.constexpr, EVEN: tl.constexpr, WORD: tl.constexpr):
    """Samples of :func:`_times` that exist: times < L, and (unless EVEN: KB divides n1) columns j1 < n1."""
    if EVEN:
        return ts < L
    return (ts < L) & (WORD * j0 + tl.arange(0, WORD * KB) < WORD * n1)[None, None, :]


@triton.jit
def _to_columns(x, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr):
    """A (TB, TA, 2·KB) [b, a, q] sample tile as (re, im) word tiles (KB, TB, TA) [col, b, a]."""
    re, im = tl.split(tl.reshape(x, (TB, TA, KB, 2)))
    return tl.permute(re, (2, 0, 1)), tl.permute(im, (2, 0, 1))


@triton.jit
def _from_columns(re, im, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr):
    """Inverse of :func:`_to_columns`."""
    return tl.reshape(tl.join(tl.permute(re, (1, 2, 0)), tl.permute(im, (1, 2, 0))), (TB, TA, 2 * KB))


@triton.jit
def _spectrum_words(j1, n1, TA: tl.constexpr, TB: tl.constexpr):
    """Word offsets of a program's spectrum tile [col, c, d] (KB, TA, TB): X[k2 + n2·k1] with k2 = c + TA·d
    sits at word (c·TB + d)·n1 + k1 of the row, for the columns j1 = k1."""
    rc, rd = tl.arange(0, TA), tl.arange(0, TB)
    return (rc[None, :, None] * TB + rd[None, None, :]) * n1 + j1[:, None, None]


@triton.jit
def _forward_dft(xr, xi, mats_a_ptr, mats_b_ptr, tw_ptr, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr,
                 DOTS: tl.constexpr, MATH: tl.constexpr):
    """TA·TB-point DFTs of (KB, TB, TA) word tiles [col, b, a] (index a·TB + b) in ``MATH``: (KB, TA, TB)
    fp32 tiles [col, c, d] (index c + TA·d)."""
    pr, pi = _as(_step(xr, xi, mats_a_ptr, MAT_F, TB, TA, KB, DOTS), MATH)  # [col, b, c]
    twr, twi = _as(_twiddle(tw_ptr, TA, TB, False), MATH)
    pr, pi = _cmul(pr, pi, twr, twi)
    pr, pi = tl.permute(pr, (0, 2, 1)), tl.permute(pi, (0, 2, 1))  # [col, c, b]
    return _step(pr, pi, mats_b_ptr, MAT_F, TA, TB, KB, DOTS)


@triton.jit
def _inverse_dft(yr, yi, mats_a_ptr, mats_b_ptr, tw_ptr, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr,
                 DOTS: tl.constexpr, MATH: tl.constexpr):
    """Inverse of :func:`_forward_dft` (unnormalised), from (KB, TA, TB) tiles [col, c, d] in ``MATH`` to
    (KB, TB, TA) fp32 tiles [col, b, a]."""
    qr, qi = _as(_step(yr, yi, mats_b_ptr, MAT_F_ADJ, TA, TB, KB, DOTS), MATH)  # [col, c, b]
    twr, twi = _as(_twiddle(tw_ptr, TA, TB, True), MATH)
    qr, qi = _cmul(qr, qi, twr, -twi)
    qr, qi = tl.permute(qr, (0, 2, 1)), tl.permute(qi, (0, 2, 1))  # [col, b, c]
    return _step(qr, qi, mats_a_ptr, MAT_F_ADJ, TB, TA, KB, DOTS)


@triton.jit
def _second_entry(bi, pairs, batch, ts):
    """(batch index, an index clamped into the batch for per-entry scalars, whether it exists as a vector
    like ``ts``: the interpreter rejects scalar masks) of the imaginary entry paired with entry ``bi``."""
    second = bi + pairs
    return second, tl.minimum(second, batch - 1), ts * 0 + second < batch


@triton.jit
def _impulse(ts, impulse_ptr, hi):
    """Channel ``hi``'s impulse value at time 0 of a sample tile ``ts``, zero elsewhere."""
    return tl.where(ts == 0, tl.load(impulse_ptr + hi).to(tl.float32), 0.0)


@triton.jit
def _paired_columns(a_ptr, b_ptr, scale_ptr, impulse_ptr, bi, hi, pairs, batch, H, ts, mask, sab, sah, sbb, sbh,
                    HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_IMPULSE: tl.constexpr):
    """Word tiles (KB, TB, TA) [col, b, a] of a paired row: the gated samples ``a * b`` (plus the channel's
    impulse at time 0 with HAS_IMPULSE), range-scaled, of batch entry ``bi`` as real parts and of
    ``bi + pairs`` (zero past the batch) as imaginary parts."""
    second, clamped, has_second = _second_entry(bi, pairs, batch, ts)
    re = gated(a_ptr, b_ptr, bi, hi, ts, mask, sab, sah, sbb, sbh, HAS_B)
    im = gated(a_ptr, b_ptr, second, hi, ts, mask & has_second, sab, sah, sbb, sbh, HAS_B)
    if HAS_IMPULSE:
        spike = _impulse(ts, impulse_ptr, hi)
        re += spike
        im += tl.where(has_second, spike, 0.0)
    if HAS_SCALE:
        re *= tl.load(scale_ptr + bi * H + hi)
        im *= tl.load(scale_ptr + clamped * H + hi)
    return tl.permute(re, (2, 0, 1)), tl.permute(im, (2, 0, 1))


@triton.jit
def first_level_kernel(a_ptr, b_ptr, scale_ptr, impulse_ptr, out_ptr, mats_a_ptr, mats_b_ptr, tw_ptr, outer_ptr, H,
                       L, n1, n_blk, pairs, batch, sab, sah, sbb, sbh, HAS_B: tl.constexpr,
                       HAS_SCALE: tl.constexpr, HAS_IMPULSE: tl.constexpr, PAIRED: tl.constexpr, TA: tl.constexpr,
                       TB: tl.constexpr, KB: tl.constexpr, DOTS: tl.constexpr, EVEN: tl.constexpr,
                       MATH: tl.constexpr):
    """The forward transform's first level, read from the time domain: for KB columns j1 of one row, the
    gated, range-scaled, zero-padded real samples ``(a * b + impulse·δ) * scale`` (HAS_IMPULSE: channel h's
    ``impulse[h]`` added at time 0; zero at times >= L) as words (packed:
    a row's consecutive samples; PAIRED: row (p, h) holds batch entries p and p + ``pairs`` of channel h,
    :func:`_paired_columns`), their n2-point DFTs over j2 and the twiddles ω_M^(j1·k2), written as fp16
    words in the order of :func:`_spectrum_words` (``out``: the rows' int32 words) for the n1-point
    transforms over j1."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    word: tl.constexpr = 1 if PAIRED else 2
    ts = _times(j0, n1, TA, TB, KB, word)
    mask = _sample_mask(ts, L, j0, n1, KB, EVEN, word)
    if PAIRED:
        xr, xi = _paired_columns(a_ptr, b_ptr, scale_ptr, impulse_ptr, row // H, row % H, pairs, batch, H, ts, mask,
                                 sab, sah, sbb, sbh, HAS_B, HAS_SCALE, HAS_IMPULSE)
    else:
        value = gated(a_ptr, b_ptr, row // H, row % H, ts, mask, sab, sah, sbb, sbh, HAS_B)
        if HAS_IMPULSE:
            value += _impulse(ts, impulse_ptr, row % H)
        if HAS_SCALE:
            value *= tl.load(scale_ptr + row)
        xr, xi = _to_columns(value, TA, TB, KB)
    xr, xi = _as((xr, xi), MATH)  # [col, b, a]
    yr, yi = _forward_dft(xr, xi, mats_a_ptr, mats_b_ptr, tw_ptr, TA, TB, KB, DOTS, MATH)  # [col, c, d], fp32
    j1 = j0 + tl.arange(0, KB)
    c, s = _outer_twiddle(outer_ptr, j1, n1, TA, TB, EVEN, tl.float32)
    yr, yi = _cmul(yr, yi, c, s)
    words = _spectrum_words(j1, n1, TA, TB)
    mask = None if EVEN else (j1 < n1)[:, None, None] & (words >= 0)
    store_complex(out_ptr + row * n1 * TA * TB, words, yr, yi, mask, HALF=True)


@triton.jit
def middle_level_kernel(rows_ptr, filter_ptr, factor_ptr, mats_a_ptr, mats_b_ptr, tw_ptr, H, n2, n_blk, pairs,
                        PRODUCT: tl.constexpr, TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr,
                        DOTS: tl.constexpr, MATH: tl.constexpr):
    """The middle level of a three-level convolution of paired rows, in place on the first level's output
    ``rows`` (pairs, H, n2, n1) of int32 words, n1 = TA·TB: for KB of a (pair, channel)'s n2 rows, their
    n1-point DFTs (word j1 = a·TB + b of a row), then with PRODUCT the spectral product with the filter
    ``filter`` (1, H, n2, n1) and one ``factor`` per (pair, channel) (a real filter multiplies the real
    and imaginary rows of a pair alike, so no bins pair up) and the inverse DFTs, written back as words
    j1; without PRODUCT the spectrum itself, bin c + TA·d at word c·TB + d (the filter's spectrum, in the
    order the product reads). Programs run channel-major, pairs fastest, so a channel's filter rows are
    read from HBM once."""
    pid = tl.program_id(0)
    pair = (pid % pairs).to(tl.int64)
    blk = (pid // pairs) % n_blk
    hi = (pid // pairs // n_blk).to(tl.int64)
    n1: tl.constexpr = TA * TB
    r = blk * KB + tl.arange(0, KB)
    ra, rb = tl.arange(0, TA), tl.arange(0, TB)
    base = rows_ptr + (pair * H + hi) * n2 * n1
    time_words = r[:, None, None] * n1 + ra[None, None, :] * TB + rb[None, :, None]  # [row, b, a]
    xr, xi = _as(load_complex(base, time_words, None, HALF=True), MATH)
    yr, yi = _forward_dft(xr, xi, mats_a_ptr, mats_b_ptr, tw_ptr, TA, TB, KB, DOTS, MATH)  # [row, c, d]
    bin_words = r[:, None, None] * n1 + ra[None, :, None] * TB + rb[None, None, :]  # [row, c, d]: c < TA, d < TB
    if PRODUCT:
        kr, ki = load_complex(filter_ptr + hi * n2 * n1, bin_words, None, HALF=True)
        f = tl.load(factor_ptr + pair * H + hi)
        yr, yi = _cmul(yr * f, yi * f, kr, ki)
        xr, xi = _inverse_dft(yr.to(MATH), yi.to(MATH), mats_a_ptr, mats_b_ptr, tw_ptr, TA, TB, KB, DOTS, MATH)
        store_complex(base, time_words, xr, xi, None, HALF=True)
    else:
        store_complex(base, bin_words, yr, yi, None, HALF=True)


@triton.jit
def last_level_kernel(y_ptr, ninv_ptr, mats_a_ptr, mats_b_ptr, tw_ptr, outer_ptr, m1_ptr, m2_ptr, out1_ptr,
                      out2_ptr, z_ptr, H, L, n1, n_blk, pairs, batch, sm1b, sm1h, sm2b, sm2h, sob, soh,
                      HAS_M1: tl.constexpr, HAS_M2: tl.constexpr, STORE_Z: tl.constexpr, PAIRED: tl.constexpr,
                      TA: tl.constexpr, TB: tl.constexpr, KB: tl.constexpr, DOTS: tl.constexpr,
                      EVEN: tl.constexpr, MATH: tl.constexpr):
    """The inverse transform's last level, written to the time domain: for KB columns j1 of one row whose
    n1-point inverse transforms are done (``y``: the rows' int32 words), the conjugate twiddles and the
    n2-point inverse DFTs, then :func:`.epilogue_kernels.write_outputs` on the samples
    ``z = y * n_inv`` at times < L (gates, outputs in their dtypes; no skip term, which the two- and
    three-level forwards fold into the filter): one row's, with one
    ``n_inv`` per row of ``y``, or (PAIRED, as :func:`first_level_kernel`) the real parts' for batch entry
    p and the imaginary parts' for p + ``pairs``, with one ``n_inv`` per (batch entry, channel)."""
    pid = tl.program_id(0)
    row = (pid // n_blk).to(tl.int64)
    j0 = (pid % n_blk) * KB
    j1 = j0 + tl.arange(0, KB)
    words = _spectrum_words(j1, n1, TA, TB)
    mask = None if EVEN else (j1 < n1)[:, None, None] & (words >= 0)
    yr, yi = _as(load_complex(y_ptr + row * n1 * TA * TB, words, mask, HALF=True), MATH)  # [col, c, d]
    c, s = _outer_twiddle(outer_ptr, j1, n1, TA, TB, EVEN, MATH)
    yr, yi = _cmul(yr, yi, c, -s)
    xr, xi = _inverse_dft(yr, yi, mats_a_ptr, mats_b_ptr, tw_ptr, TA, TB, KB, DOTS, MATH)  # [col, b, a], fp32
    bi, hi = row // H, row % H
    word: tl.constexpr = 1 if PAIRED else 2
    ts = _times(j0, n1, TA, TB, KB, word)
    valid = _sample_mask(ts, L, j0, n1, KB, EVEN, word)
    if PAIRED:
        second, clamped, has_second = _second_entry(bi, pairs, batch, ts)
        first_z = tl.permute(xr, (1, 2, 0)) * tl.load(ninv_ptr + bi * H + hi)
        second_z = tl.permute(xi, (1, 2, 0)) * tl.load(ninv_ptr + clamped * H + hi)
        write_outputs(first_z, ts, valid, bi, hi, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr, sm1b, sm1h, sm2b, sm2h,
                      sob, soh, HAS_M1, HAS_M2, STORE_Z)
        write_outputs(second_z, ts, valid & has_second, second, hi, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr, sm1b,
                      sm1h, sm2b, sm2h, sob, soh, HAS_M1, HAS_M2, STORE_Z)
    else:
        z = _from_columns(xr, xi, TA, TB, KB) * tl.load(ninv_ptr + row)
        write_outputs(z, ts, valid, bi, hi, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr, sm1b, sm1h, sm2b, sm2h, sob,
                      soh, HAS_M1, HAS_M2, STORE_Z)
