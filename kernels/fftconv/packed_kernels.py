"""Triton kernel for spectral products of real signals transformed as half-size complex FFTs.

A real signal x of even length N is read as the complex signal z[m] = x[2m] + i·x[2m+1] of length
M = N/2 (the same fp32 buffer, viewed as complex), and cuFFT's complex-to-complex transform of size M
gives its "packed" spectrum Z. On an H200, a complex transform of 256 rows of M = 65,536 points takes
0.16 ms where torch's real transform of the N = 131,072-point rows takes 0.29 ms and the inverse 0.36 ms
plus a 0.07 ms copy of its input (cuFFT overwrites a complex-to-real input, so torch clones it).

The rfft bins are recovered pairwise from Z (W = exp(-2πi/N)):
    E = (Z[j] + conj Z[M-j]) / 2,   O = (Z[j] - conj Z[M-j]) / 2i,   T = W^j·O,
    X[j] = E + T,                   X[M-j] = conj(E - T)            (Z[M] means Z[0]),
and a Hermitian spectrum Y (of a real y) is packed for an inverse complex transform of size M whose
output is y[2m] + i·y[2m+1] (unnormalised, like the transforms it replaces):
    P = Y[j] + conj Y[M-j],  R = conj(W^j)·(Y[j] - conj Y[M-j]),  Z'[j] = P + iR,  Z'[M-j] = conj(P - iR).
Each program owns the index pairs (j, M-j) for a block of j in [0, M//2], so the unpack, the product and
the repack are one pass over the two packed inputs, and the output may be one of them (in place). The
same holds for spectra in the two-level word order of :mod:`.row_kernels`, whose pairs
:func:`pair_index` finds.

Spectra are complex64 or complex32 (fp16 pairs). Each complex value moves as one machine word (int64 or
int32) and is split into its two halves in registers: loading the real and imaginary parts as two
strided scalar loads wastes half of every fp16 access (measured on an H200 at 1M points x 256 rows:
1.3 ms per product at 2.5 TB/s before this change).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_complex(ptr, idx, mask, HALF: tl.constexpr):
    """Complex values at word offsets ``idx`` as (re, im) fp32 vectors; a word is an int32 holding two
    fp16 halves (HALF) or an int64 holding two fp32 halves, the real part in the low half. ``mask`` None:
    every offset is in bounds."""
    if mask is None:
        w = tl.load(ptr + idx)
    else:
        w = tl.load(ptr + idx, mask=mask, other=0)
    if HALF:
        re = (w & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
        im = ((w >> 16) & 0xFFFF).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        re = (w & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
        im = ((w >> 32) & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
    return re, im


@triton.jit
def store_complex(ptr, idx, re, im, mask, HALF: tl.constexpr):
    """Inverse of :func:`load_complex` (values rounded to the word's precision)."""
    if HALF:
        lo = re.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.int32)
        hi = im.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.int32)
        tl.store(ptr + idx, lo | (hi << 16), mask=mask)
    else:
        lo = re.to(tl.uint32, bitcast=True).to(tl.int64)
        hi = im.to(tl.uint32, bitcast=True).to(tl.int64)
        tl.store(ptr + idx, lo | (hi << 32), mask=mask)


@triton.jit
def _load_pair(ptr, j, jm, mask, HALF: tl.constexpr):
    """Z[j] and Z[jm] of a packed spectrum row as four fp32 vectors."""
    zr, zi = load_complex(ptr, j, mask, HALF)
    mr, mi = load_complex(ptr, jm, mask, HALF)
    return zr, zi, mr, mi


@triton.jit
def _unpack_values(zr, zi, mr, mi, c, s):
    """rfft bins X[j] and X[M-j] (re, im each) from the packed spectrum's Z[j] = zr + i·zi and
    Z[M-j] = mr + i·mi; W^j = c - i·s."""
    er, ei = 0.5 * (zr + mr), 0.5 * (zi - mi)
    o_r, o_i = 0.5 * (zi + mi), 0.5 * (mr - zr)
    tr, ti = c * o_r + s * o_i, c * o_i - s * o_r
    return er + tr, ei + ti, er - tr, ti - ei


@triton.jit
def _pack_values(yjr, yji, ymr, ymi, c, s):
    """Z'[j] and Z'[M-j] (re, im each) of the packed form of a Hermitian spectrum from its bins Y[j] and
    Y[M-j]; W^j = c - i·s."""
    pr, pi = yjr + ymr, yji - ymi
    qr, qi = yjr - ymr, yji + ymi
    rr, ri = c * qr - s * qi, c * qi + s * qr
    return pr - ri, pi + rr, pr + ri, rr - pi


@triton.jit
def _unpack(ptr, j, jm, mask, c, s, HALF: tl.constexpr):
    """rfft bins X[j] and X[M-j] (re, im each) of the real signal whose packed spectrum is at ``ptr``."""
    zr, zi, mr, mi = _load_pair(ptr, j, jm, mask, HALF)
    return _unpack_values(zr, zi, mr, mi, c, s)


@triton.jit
def pair_index(idx, M, INNER_A: tl.constexpr, INNER_B: tl.constexpr):
    """(word j, partner word jm, spectrum index k of word j) for program indices ``idx`` in 0 … M/2: each
    owns one (k, M - k) pair and the pairs are all different, so products may be written in place.

    INNER_A = 0: natural order, word j holds Z[j] and pairs with M - j (Z[M] means Z[0]). Else the
    two-level word order of :mod:`.row_kernels` with a (TA, TB) = (INNER_A, INNER_B) level: word p·n1 + k1
    (n2 = TA·TB, n1 = M/n2) holds Z[k2 + n2·k1] with p = (k2 mod TA)·TB + k2 div TA. The owners are the
    indices k <= M/2: k1 < n1/2 in every row p (index p·n1/2 + k1), and k = M/2 itself (the last index).
    The partner of k2 > 0 is (n2 - k2, n1 - 1 - k1), of k2 = 0 it is (0, -k1 mod n1)."""
    if INNER_A == 0:
        return idx, tl.where(idx == 0, 0, M - idx), idx
    n2 = INNER_A * INNER_B
    n1 = M // n2
    half = n1 // 2
    inside = idx < n2 * half
    p = tl.where(inside, idx // half, 0)
    k1 = tl.where(inside, idx % half, half)
    k2 = p // INNER_B + INNER_A * (p % INNER_B)
    k2m = (n2 - k2) % n2
    k1m = tl.where(k2 == 0, (n1 - k1) % n1, n1 - 1 - k1)
    jm = ((k2m % INNER_A) * INNER_B + k2m // INNER_A) * n1 + k1m
    return p * n1 + k1, jm, k2 + n2 * k1


@triton.jit
def packed_product_kernel(a_ptr, b_ptr, out_ptr, factor_ptr, H, M, n_index, nblk, n_rows, rows_per_program,
                          n_sum, angle_step, sab, sah, sbb, sbh, sob, soh, CONJ_B: tl.constexpr,
                          HAS_FACTOR: tl.constexpr, HALF: tl.constexpr, INNER_A: tl.constexpr, INNER_B: tl.constexpr,
                          H_MAJOR: tl.constexpr, BLOCK: tl.constexpr):
    """out = pack(Σ_r f[r] · unpack(A[r]) · unpack(B[r]) (conjugated if CONJ_B)) for each output row, with
    f[r] = 1, or (HAS_FACTOR) one fp32 number per input row r = (batch, channel) of A, contiguous.

    Output row ``row`` = (o, h) sums the input batch entries o·n_sum … o·n_sum + n_sum - 1 (n_sum = 1:
    one product per batch entry; n_sum = B into one output row: a batch-summed cross spectrum). A zero
    batch stride broadcasts an input over the batch (a filter spectrum). A program handles one block of
    frequencies for ``rows_per_program`` consecutive output rows, so its twiddles (a precise sin and cos
    per frequency, most of the arithmetic once the spectra are fp16) are computed once for all of them.
    Spectra are in natural order, or in the two-level word order of level (INNER_A, INNER_B) (:func:`pair_index`,
    ``n_index`` indices). H_MAJOR numbers the output rows channel-major (row = h·n_out + o) instead of
    batch-major: with B broadcast over the batch, a program's rows and its neighbours' then share B's rows,
    so B comes from HBM once per channel rather than once per batch entry."""
    pid = tl.program_id(0)
    idx = (pid % nblk) * BLOCK + tl.arange(0, BLOCK)
    j, jm, k = pair_index(idx, M, INNER_A, INNER_B)
    in_range = idx < n_index
    theta = k.to(tl.float32) * angle_step
    c, s = tl.cos(theta), tl.sin(theta)
    first_row = (pid // nblk).to(tl.int64) * rows_per_program
    for i in range(rows_per_program):
        row = first_row + i
        mask = in_range & (j * 0 + row < n_rows)  # a vector condition: the interpreter rejects scalar masks
        last = tl.minimum(row, n_rows - 1)  # in bounds past the end
        if H_MAJOR:
            hi, oi = last // (n_rows // H), last % (n_rows // H)
        else:
            oi, hi = last // H, last % H
        yjr = tl.zeros([BLOCK], dtype=tl.float32)
        yji = tl.zeros([BLOCK], dtype=tl.float32)
        ymr = tl.zeros([BLOCK], dtype=tl.float32)
        ymi = tl.zeros([BLOCK], dtype=tl.float32)
        for r in range(n_sum):
            src = oi * n_sum + r
            ajr, aji, amr, ami = _unpack(a_ptr + src * sab + hi * sah, j, jm, mask, c, s, HALF)
            bjr, bji, bmr, bmi = _unpack(b_ptr + src * sbb + hi * sbh, j, jm, mask, c, s, HALF)
            if CONJ_B:
                bji, bmi = -bji, -bmi
            if HAS_FACTOR:
                f = tl.load(factor_ptr + src * H + hi)
                ajr, aji, amr, ami = f * ajr, f * aji, f * amr, f * ami
            yjr += ajr * bjr - aji * bji
            yji += ajr * bji + aji * bjr
            ymr += amr * bmr - ami * bmi
            ymi += amr * bmi + ami * bmr
        zjr, zji, zmr, zmi = _pack_values(yjr, yji, ymr, ymi, c, s)
        base = out_ptr + oi * sob + hi * soh
        store_complex(base, j, zjr, zji, mask, HALF)
        tail = mask & (k > 0)  # Z'[M - 0] does not exist; at k = M/2 both stores write the same value
        store_complex(base, jm, zmr, zmi, tail, HALF)
