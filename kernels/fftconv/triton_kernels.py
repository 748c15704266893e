"""Triton kernels of the Monarch-FFT convolution (see plan.py for the layout).

Complex data is planar (separate real and imaginary tiles, fp32 in registers; the column-pass
intermediate Z is stored in fp32 or bf16, whatever its buffers are). Every DFT is a ``tl.dot`` against a
DFT matrix through :func:`_mm`: ``PREC`` is the dot's input precision ("tf32" for bf16/fp16 inputs,
"tf32x3" for fp32 accuracy) and ``DOT16`` (0-4) rounds both operands to bf16 or fp16 instead (fp32
accumulation).
Real-input and real-output steps skip the dots whose operand is zero or whose result is discarded, and
the column pass reads only the non-zero half of the zero-padded input. Column DFTs of ``N2 >= 256``
points can run as two on-chip steps (``col2_*``: ``N2 = Q*P``), reading and writing each point once.
"""
from __future__ import annotations

import math

import triton
import triton.language as tl

TWO_PI = tl.constexpr(2.0 * math.pi)


@triton.jit
def _mm(a, b, PREC: tl.constexpr, DOT16: tl.constexpr):
    """``a @ b`` with fp32 accumulation. ``DOT16``: 0, fp32 operands at ``PREC``; 1, bf16 operands;
    3, fp16 operands; 2 and 4: operands rounded to bf16 / fp16 and multiplied in fp32 (the same
    numbers, for Triton's CPU interpreter, whose 16-bit ``tl.dot`` returns garbage)."""
    if DOT16 == 1:
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif DOT16 == 2:
        out = tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    elif DOT16 == 3:
        out = tl.dot(a.to(tl.float16), b.to(tl.float16))
    elif DOT16 == 4:
        out = tl.dot(a.to(tl.float16).to(tl.float32), b.to(tl.float16).to(tl.float32), input_precision="ieee")
    else:
        out = tl.dot(a, b, input_precision=PREC)
    return out


@triton.jit
def _load_block(ptr, R: tl.constexpr, C: tl.constexpr, STRIDE: tl.constexpr):
    """Rows ``0..R-1``, columns ``0..C-1`` of a row-major matrix whose rows are ``STRIDE`` apart."""
    return tl.load(ptr + tl.arange(0, R)[:, None] * STRIDE + tl.arange(0, C)[None, :])


@triton.jit
def _load_square(ptr, R: tl.constexpr, C: tl.constexpr):
    """Row-major (R, C) matrix."""
    return _load_block(ptr, R, C, C)


@triton.jit
def _load_bd_factors(fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A: tl.constexpr, BD: tl.constexpr):
    """F_BD (real, imaginary) and the (A, BD) twiddles of the on-chip row transform."""
    return (_load_square(fbr_ptr, BD, BD), _load_square(fbi_ptr, BD, BD), _load_square(twr_ptr, A, BD),
            _load_square(twi_ptr, A, BD))


@triton.jit
def _load_row_factors(far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A: tl.constexpr, BD: tl.constexpr):
    """The on-chip row transform's factors: F_A and F_BD (real, imaginary) and the (A, BD) twiddles."""
    fbr, fbi, twr, twi = _load_bd_factors(fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A, BD)
    return _load_square(far_ptr, A, A), _load_square(fai_ptr, A, A), fbr, fbi, twr, twi


@triton.jit
def _load_fa_in(far_ptr, fai_ptr, A: tl.constexpr, AH: tl.constexpr):
    """F_A (real, imaginary) as the short path's forward step uses it: its first ``AH`` columns, since
    input rows ``a >= AH`` are zero padding (``AH = A``: the whole matrix)."""
    return _load_block(far_ptr, A, AH, A), _load_block(fai_ptr, A, AH, A)


@triton.jit
def _load_fa_out(far_ptr, fai_ptr, A: tl.constexpr, AH: tl.constexpr):
    """F_A as the short path's last inverse step uses it: its first ``AH`` rows, since only rows
    ``a < AH`` hold outputs below L."""
    return _load_block(far_ptr, AH, A, A), _load_block(fai_ptr, AH, A, A)


@triton.jit
def _pow2_range(m, DOT16: tl.constexpr):
    """(down, up): powers of two that bring magnitude ``m`` into [0.5, 1) and back, when the dots take fp16
    operands (``DOT16`` 3 or 4); else (1, 1). fp16 overflows at 65504: a trained model's activations and
    gradients get there, and the DFT steps add up to A (<= 128) such values. Scaled to at most 1, every
    operand of both steps stays below ~200, and powers of two keep the scaling exact. ``m`` zero or
    non-finite keeps (1, 1). Both factors are scalars, so a tile is only multiplied."""
    if DOT16 >= 3:
        usable = (m > 0) & (m < 3.0e38)
        e = tl.ceil(tl.log2(tl.where(usable, m, 1.0)))
        down = tl.exp2(-e)
        up = tl.exp2(e)
    else:
        down = 1.0
        up = 1.0
    return down, up


@triton.jit
def _absmax(xr, xi, REAL: tl.constexpr):
    """The largest magnitude in a 2-D tile, or in the real and imaginary tiles of a complex one."""
    m = tl.max(tl.max(tl.abs(xr), axis=1), axis=0)
    if not REAL:
        m = tl.maximum(m, tl.max(tl.max(tl.abs(xi), axis=1), axis=0))
    return m


@triton.jit
def _fp16_range(xr, xi, REAL: tl.constexpr, DOT16: tl.constexpr):
    """:func:`_pow2_range` of the tile's largest magnitude (one tile reduction, or two if complex; only
    with fp16 operands). The on-chip forward pays one such reduction per program: the inverse step
    bounds its input instead (:func:`row_conv_kernel`). BENCHMARKS.md, "fp16 range scaling on chip"."""
    if DOT16 >= 3:
        m = _absmax(xr, xi, REAL)
    else:
        m = 1.0
    return _pow2_range(m, DOT16)


@triton.jit
def _row_fwd_scaled(xr, xi, far, fai, fbr, fbi, twr, twi, REAL: tl.constexpr, PREC: tl.constexpr,
                    DOT16: tl.constexpr):
    """Row transform of an (A, BD) tile: F_A @ X, twiddle, @ F_BD (frequency ka + A*kb at [ka, kb]), of the
    tile range-scaled first (:func:`_fp16_range`): returns (real, imaginary, up), the true transform being
    ``up`` times the returned one."""
    down, up = _fp16_range(xr, xi, REAL, DOT16)
    xr = xr * down
    if not REAL:
        xi = xi * down
    if REAL:
        yr = _mm(far, xr, PREC, DOT16)
        yi = _mm(fai, xr, PREC, DOT16)
    else:
        yr = _mm(far, xr, PREC, DOT16) - _mm(fai, xi, PREC, DOT16)
        yi = _mm(far, xi, PREC, DOT16) + _mm(fai, xr, PREC, DOT16)
    tr = yr * twr - yi * twi
    ti = yr * twi + yi * twr
    zr = _mm(tr, fbr, PREC, DOT16) - _mm(ti, fbi, PREC, DOT16)
    zi = _mm(tr, fbi, PREC, DOT16) + _mm(ti, fbr, PREC, DOT16)
    return zr, zi, up


@triton.jit
def _row_fwd(xr, xi, far, fai, fbr, fbi, twr, twi, REAL: tl.constexpr, PREC: tl.constexpr, DOT16: tl.constexpr):
    """Row transform of an (A, BD) tile (:func:`_row_fwd_scaled`, scaled back)."""
    zr, zi, up = _row_fwd_scaled(xr, xi, far, fai, fbr, fbi, twr, twi, REAL, PREC, DOT16)
    return zr * up, zi * up


@triton.jit
def _row_inv_unscaled(zr, zi, far, fai, fbr, fbi, twr, twi, REAL_OUT: tl.constexpr, PREC: tl.constexpr,
                      DOT16: tl.constexpr):
    """Adjoint of the row transform (unnormalised): @ conj(F_BD), conjugate twiddle, conj(F_A) @ . The
    caller keeps the input in fp16's range when ``DOT16`` >= 3."""
    yr = _mm(zr, fbr, PREC, DOT16) + _mm(zi, fbi, PREC, DOT16)
    yi = _mm(zi, fbr, PREC, DOT16) - _mm(zr, fbi, PREC, DOT16)
    tr = yr * twr + yi * twi
    ti = yi * twr - yr * twi
    xr = _mm(far, tr, PREC, DOT16) + _mm(fai, ti, PREC, DOT16)
    if REAL_OUT:
        xi = xr
    else:
        xi = _mm(far, ti, PREC, DOT16) - _mm(fai, tr, PREC, DOT16)
    return xr, xi


@triton.jit
def _row_inv(zr, zi, far, fai, fbr, fbi, twr, twi, REAL_OUT: tl.constexpr, PREC: tl.constexpr, DOT16: tl.constexpr):
    """:func:`_row_inv_unscaled` of the tile range-scaled like :func:`_row_fwd_scaled`, scaled back."""
    down, up = _fp16_range(zr, zi, False, DOT16)
    xr, xi = _row_inv_unscaled(zr * down, zi * down, far, fai, fbr, fbi, twr, twi, REAL_OUT, PREC, DOT16)
    return xr * up, xi * up


@triton.jit
def _ld(ptr, off):
    """Load as fp32 (Z buffers may be bf16)."""
    return tl.load(ptr + off).to(tl.float32)


@triton.jit
def _load_real(u_ptr, g_ptr, off, mask, HAS_G: tl.constexpr):
    """``u * g`` in fp32 at ``off`` (0 where masked): the gated, zero-padded real input."""
    x = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_G:
        x = x * tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
    return x


@triton.jit
def _epilogue(acc, x, u_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
              h, off, mask, part, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, STORE_Y: tl.constexpr,
              STORE_Z: tl.constexpr, STORE_Y2: tl.constexpr, STORE_Y3: tl.constexpr, DSUM: tl.constexpr):
    """Everything after the inverse transform, for ``acc`` (the convolution, fp32) and ``x = u*pre``.

    With ``z = acc + x * D[h]``, each in its output's dtype and masked to ``mask``:
    ``y = z * post`` (STORE_Y), ``z`` itself (STORE_Z: the forward keeps it for d_postgate),
    ``y2 = z * m2`` (STORE_Y2), ``y3 = u * zin`` (STORE_Y3: ``u`` ungated) and the partial sum
    ``dsum[part] = sum(x * m2 * post)`` over this program's elements (DSUM).
    The backward calls it with ``u = dy``, ``pre = postgate``, ``post = pregate``, ``m2 = u`` and
    ``zin`` = the forward's z: ``y = du``, ``y2 = dpregate``, ``y3 = dpostgate``, ``dsum`` -> dD.
    """
    z = acc
    if HAS_D:
        z = z + x * tl.load(d_ptr + h).to(tl.float32)
    if STORE_Z:
        tl.store(z_ptr + off, z.to(z_ptr.dtype.element_ty), mask=mask)
    post = z  # unused unless HAS_POST
    if HAS_POST:
        post = tl.load(post_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if STORE_Y:
        out = z
        if HAS_POST:
            out = z * post
        tl.store(y_ptr + off, out.to(y_ptr.dtype.element_ty), mask=mask)
    if STORE_Y2 or DSUM:
        m2 = tl.load(m2_ptr + off, mask=mask, other=0.0).to(tl.float32)
        if STORE_Y2:
            tl.store(y2_ptr + off, (z * m2).to(y2_ptr.dtype.element_ty), mask=mask)
        if DSUM:
            t = x * m2
            if HAS_POST:
                t = t * post
            tl.store(dsum_ptr + part, tl.sum(tl.sum(t, axis=1), axis=0))
    if STORE_Y3:
        raw = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
        zin = tl.load(zin_ptr + off, mask=mask, other=0.0).to(tl.float32)
        tl.store(y3_ptr + off, (raw * zin).to(y3_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gated_epilogue(acc, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
                    h, off, mask, part, HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr,
                    STORE_Y: tl.constexpr, STORE_Z: tl.constexpr, STORE_Y2: tl.constexpr, STORE_Y3: tl.constexpr,
                    DSUM: tl.constexpr):
    """:func:`_epilogue` for passes that have not read the gated input: it is loaded only if needed
    (skip term or dsum)."""
    if HAS_D or DSUM:
        x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
    else:
        x = acc  # unused: no skip term, no dsum
    _epilogue(acc, x, u_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
              h, off, mask, part, HAS_D, HAS_POST, STORE_Y, STORE_Z, STORE_Y2, STORE_Y3, DSUM)


@triton.jit
def row_conv_kernel(
    u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr,  # real input/output (short path)
    z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,  # optional outputs of the short path (_epilogue)
    zr_ptr, zi_ptr,  # complex rows, transformed in place (long path)
    kr_ptr, ki_ptr,  # filter spectrum in stored order, (H, N2*A*BD), scaled by 1/N
    peak_ptr,  # short path, fp16 operands: each channel's max(|Re|, |Im|) of the spectrum, (H,) fp32
    far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr,
    BH, H, L, N2,
    A: tl.constexpr, BD: tl.constexpr, REAL_IO: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
    DOT16: tl.constexpr, STORE_Y: tl.constexpr = True, STORE_Z: tl.constexpr = False,
    STORE_Y2: tl.constexpr = False, STORE_Y3: tl.constexpr = False, DSUM: tl.constexpr = False,
    AH: tl.constexpr = 0, PAIR: tl.constexpr = False,
):
    """One row: transform, multiply by the filter spectrum, inverse transform.

    Short path (REAL_IO): the row is the whole gated, zero-padded sequence and the program writes
    the finished output (skip term and post-gate fused) and the optional outputs of :func:`_epilogue`
    (``dsum`` partial at the sequence's index ``b*H + h``). Only the first ``AH`` tile rows are read
    and written (see :func:`_load_fa_in`, :func:`_load_fa_out`). ``PAIR``: the program convolves the sequences of
    batches ``2p`` and ``2p + 1`` (same channel) at once as the real and imaginary parts of one complex
    row (the filter is real, so the two results come back as the real and imaginary parts); the second
    is masked off past ``BH`` rows. Long path: row ``program_id(1)`` of the column-transformed buffer,
    rewritten in place.

    fp16 range on the short path: the forward step scales the input tile by its own maximum
    (:func:`_row_fwd_scaled`), so each scaled element is below 1 (below sqrt(2) as a complex pair) and the
    L of them bound the spectrum by sqrt(2) * L; the filter's is at most sqrt(2) * peak. The product is
    therefore scaled by the power of two at or above 2 * L * peak, with no reduction over the tile: the
    looser bound only moves elements toward fp16's subnormals, whose spacing stays far below the
    rounding of the largest ones.
    """
    pid = tl.program_id(0).to(tl.int64)  # on axis 0: it can exceed 65535
    r = tl.program_id(1)
    M: tl.constexpr = A * BD
    jm = tl.arange(0, A)[:, None] * BD + tl.arange(0, BD)[None, :]
    fbr, fbi, twr, twi = _load_bd_factors(fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A, BD)
    if REAL_IO:
        far_in, fai_in = _load_fa_in(far_ptr, fai_ptr, A, AH)
        far_out, fai_out = _load_fa_out(far_ptr, fai_ptr, A, AH)
        if PAIR:
            h = pid % H
            bh = (pid // H) * (2 * H) + h  # the pair's first sequence
        else:
            bh = pid
            h = bh % H
        j = tl.arange(0, AH)[:, None] * BD + tl.arange(0, BD)[None, :]
        off = bh * L + j
        mask = j < L
        x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
        if PAIR:
            mask2 = j < tl.where(bh + H < BH, L, 0)  # no second sequence: all masked
            x2 = _load_real(u_ptr, pre_ptr, off + H * L, mask2, HAS_PRE)
            zr, zi, up = _row_fwd_scaled(x, x2, far_in, fai_in, fbr, fbi, twr, twi, False, PREC, DOT16)
        else:
            zr, zi, up = _row_fwd_scaled(x, x, far_in, fai_in, fbr, fbi, twr, twi, True, PREC, DOT16)
        if DOT16 >= 3:
            down_p, up_p = _pow2_range(2.0 * L * tl.load(peak_ptr + h), DOT16)
        else:
            down_p, up_p = 1.0, 1.0
    else:
        h = pid % H
        far = _load_square(far_ptr, A, A)
        fai = _load_square(fai_ptr, A, A)
        zoff = (pid * N2 + r) * M + jm
        zr, zi = _row_fwd(_ld(zr_ptr, zoff), _ld(zi_ptr, zoff), far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
    koff = h * (N2 * M) + r * M + jm
    kr = tl.load(kr_ptr + koff)
    ki = tl.load(ki_ptr + koff)
    if REAL_IO:
        kr = kr * down_p
        ki = ki * down_p
    pr = zr * kr - zi * ki
    pi = zr * ki + zi * kr
    if REAL_IO:
        back = up * up_p
        if PAIR:
            out, out2 = _row_inv_unscaled(pr, pi, far_out, fai_out, fbr, fbi, twr, twi, False, PREC, DOT16)
            out = out * back
            out2 = out2 * back
            _epilogue(out2, x2, u_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
                      h, off + H * L, mask2, bh + H, HAS_D, HAS_POST, STORE_Y, STORE_Z, STORE_Y2, STORE_Y3, DSUM)
        else:
            out, _unused = _row_inv_unscaled(pr, pi, far_out, fai_out, fbr, fbi, twr, twi, True, PREC, DOT16)
            out = out * back
        _epilogue(out, x, u_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
                  h, off, mask, bh, HAS_D, HAS_POST, STORE_Y, STORE_Z, STORE_Y2, STORE_Y3, DSUM)
    else:
        outr, outi = _row_inv(pr, pi, far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
        tl.store(zr_ptr + zoff, outr.to(zr_ptr.dtype.element_ty))
        tl.store(zi_ptr + zoff, outi.to(zi_ptr.dtype.element_ty))


@triton.jit
def row_xspec_kernel(
    u_ptr, pre_ptr, dy_ptr, post_ptr,  # real inputs (short path)
    xr_ptr, xi_ptr, gr_ptr, gi_ptr,  # column-transformed x and g (long path)
    sr_ptr, si_ptr,  # out: sum_b conj(X_b) * G_b in stored order, (H, N2*A*BD)
    far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr,
    B, H, L, N2,
    A: tl.constexpr, BD: tl.constexpr, REAL_IN: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
    DOT16: tl.constexpr, AH: tl.constexpr = 0, PAIR: tl.constexpr = False,
):
    """Cross spectrum of the input x and the output gradient g, summed over the batch (for dk).

    ``PAIR`` (short path): batches ``b`` and ``b + 1`` go through one complex transform each for x and
    g (as in :func:`row_conv_kernel`), which adds ``i * T`` to the sum, where ``T`` is the spectrum of a
    real signal; the caller keeps the Hermitian part (:func:`.plan.hermitian_part`), which is the sum.
    """
    r = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    M: tl.constexpr = A * BD
    STEP: tl.constexpr = 2 if PAIR else 1
    jm = tl.arange(0, A)[:, None] * BD + tl.arange(0, BD)[None, :]
    fbr, fbi, twr, twi = _load_bd_factors(fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A, BD)
    if REAL_IN:
        far, fai = _load_fa_in(far_ptr, fai_ptr, A, AH)
        j = tl.arange(0, AH)[:, None] * BD + tl.arange(0, BD)[None, :]
        mask = j < L
    else:
        far = _load_square(far_ptr, A, A)
        fai = _load_square(fai_ptr, A, A)
    accr = tl.zeros((A, BD), tl.float32)
    acci = tl.zeros((A, BD), tl.float32)
    for b in range(0, B, STEP):
        bh = b * H + h
        if REAL_IN:
            off = bh * L + j
            x = _load_real(u_ptr, pre_ptr, off, mask, HAS_PRE)
            g = _load_real(dy_ptr, post_ptr, off, mask, HAS_POST)
            if PAIR:
                mask2 = j < tl.where(b + 1 < B, L, 0)
                x2 = _load_real(u_ptr, pre_ptr, off + H * L, mask2, HAS_PRE)
                g2 = _load_real(dy_ptr, post_ptr, off + H * L, mask2, HAS_POST)
                Xr, Xi = _row_fwd(x, x2, far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
                Gr, Gi = _row_fwd(g, g2, far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
            else:
                Xr, Xi = _row_fwd(x, x, far, fai, fbr, fbi, twr, twi, True, PREC, DOT16)
                Gr, Gi = _row_fwd(g, g, far, fai, fbr, fbi, twr, twi, True, PREC, DOT16)
        else:
            zoff = (bh * N2 + r) * M + jm
            Xr, Xi = _row_fwd(_ld(xr_ptr, zoff), _ld(xi_ptr, zoff), far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
            Gr, Gi = _row_fwd(_ld(gr_ptr, zoff), _ld(gi_ptr, zoff), far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
        accr += Xr * Gr + Xi * Gi
        acci += Xr * Gi - Xi * Gr
    soff = h * (N2 * M) + r * M + jm
    tl.store(sr_ptr + soff, accr)
    tl.store(si_ptr + soff, acci)


@triton.jit
def _rotate(re, im, m, N, SIGNED_TWO_PI):
    """(re, im) times the twiddle exp(i * SIGNED_TWO_PI * (m mod N) / N), elementwise."""
    ang = (m % N).to(tl.float32) * (SIGNED_TWO_PI / N)
    c = tl.cos(ang)
    s = tl.sin(ang)
    return re * c - im * s, re * s + im * c


@triton.jit
def _store_twiddled(zr_ptr, zi_ptr, zoff, re, im, m, N):
    """Store (re, im) times the forward twiddle exp(-2*pi*i*m/N) into the planar Z buffer at ``zoff``."""
    rotated_re, rotated_im = _rotate(re, im, m, N, -TWO_PI)
    tl.store(zr_ptr + zoff, rotated_re.to(zr_ptr.dtype.element_ty))
    tl.store(zi_ptr + zoff, rotated_im.to(zi_ptr.dtype.element_ty))


@triton.jit
def col_fwd_kernel(
    u_ptr, pre_ptr, zr_ptr, zi_ptr, fcr_ptr, fci_ptr, L,
    N2: tl.constexpr, N1: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr,
    NRED: tl.constexpr, HAS_PRE: tl.constexpr, PREC: tl.constexpr, DOT16: tl.constexpr,
):
    """Length-N2 DFT over n2 of the gated real input viewed as (N2, N1), times the twiddle.

    Only ``n2 < NRED`` can hold input: ``N2/2`` for a zero-padded sequence (the reduction stops
    there), ``N2`` for a full-length circular filter.
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
    for n2_0 in range(0, NRED, BN):
        n2 = n2_0 + tl.arange(0, BN)
        n = n1 + N1 * n2[:, None]
        x = _load_real(u_ptr, pre_ptr, bh * L + n, n < L, HAS_PRE)
        foff = k2 * N2 + n2[None, :]
        accr += _mm(tl.load(fcr_ptr + foff), x, PREC, DOT16)
        acci += _mm(tl.load(fci_ptr + foff), x, PREC, DOT16)
    _store_twiddled(zr_ptr, zi_ptr, (bh * N2 + k2) * N1 + n1, accr, acci, n1 * k2, N)


@triton.jit
def col_inv_kernel(
    zr_ptr, zi_ptr, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
    fcr_ptr, fci_ptr, H, L,
    N2: tl.constexpr, N1: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr,
    DOT16: tl.constexpr, STORE_Y: tl.constexpr = True, STORE_Z: tl.constexpr = False,
    STORE_Y2: tl.constexpr = False, STORE_Y3: tl.constexpr = False, DSUM: tl.constexpr = False,
):
    """Inverse of :func:`col_fwd_kernel` for output rows ``n2 < N2/2`` only, real part, fused epilogue
    (``dsum`` partial at this program's index in launch order)."""
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
        zr = _ld(zr_ptr, zoff)
        zi = _ld(zi_ptr, zoff)
        tr, ti = _rotate(zr, zi, n1 * k2[:, None], N, TWO_PI)
        foff = n2 * N2 + k2[None, :]
        acc += _mm(tl.load(fcr_ptr + foff), tr, PREC, DOT16)
        acc += _mm(tl.load(fci_ptr + foff), ti, PREC, DOT16)
    n = n1 + N1 * n2
    mask = n < L
    off = bh * L + n
    part = (bh * tl.num_programs(1) + pn) * tl.num_programs(2) + pc
    _gated_epilogue(acc, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
                    h, off, mask, part, HAS_PRE, HAS_D, HAS_POST, STORE_Y, STORE_Z, STORE_Y2, STORE_Y3, DSUM)


@triton.jit
def row_spec_kernel(
    k_ptr, zr_ptr, zi_ptr, sr_ptr, si_ptr, peak_ptr,
    far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr,
    LK, N2, scale,
    A: tl.constexpr, BD: tl.constexpr, REAL_IN: tl.constexpr, CONJ: tl.constexpr,
    PREC: tl.constexpr, DOT16: tl.constexpr, PEAK: tl.constexpr = False,
):
    """Filter spectrum in stored order, times ``scale`` (conjugated if ``CONJ``): planar fp32 (H, N).

    Short path (REAL_IN): row ``h`` of the real filter (H, LK), zero-padded; ``PEAK`` also writes the
    row's largest ``max(|Re|, |Im|)`` (times ``scale`` > 0) to ``peak_ptr[h]``, which bounds the
    on-chip convolution's product (:func:`row_conv_kernel`). Long path: row ``program_id(1)`` of the
    column-transformed filter. Replaces torch's rfft and the permutation.
    """
    h = tl.program_id(0).to(tl.int64)
    r = tl.program_id(1)
    M: tl.constexpr = A * BD
    j = tl.arange(0, A)[:, None] * BD + tl.arange(0, BD)[None, :]
    far, fai, fbr, fbi, twr, twi = _load_row_factors(far_ptr, fai_ptr, fbr_ptr, fbi_ptr, twr_ptr, twi_ptr, A, BD)
    if REAL_IN:
        x = tl.load(k_ptr + h * LK + j, mask=j < LK, other=0.0).to(tl.float32)
        zr, zi = _row_fwd(x, x, far, fai, fbr, fbi, twr, twi, True, PREC, DOT16)
    else:
        zoff = (h * N2 + r) * M + j
        zr, zi = _row_fwd(_ld(zr_ptr, zoff), _ld(zi_ptr, zoff), far, fai, fbr, fbi, twr, twi, False, PREC, DOT16)
    soff = h * (N2 * M) + r * M + j
    tl.store(sr_ptr + soff, zr * scale)
    if PEAK:
        tl.store(peak_ptr + h, _absmax(zr, zi, False) * scale)
    if CONJ:
        tl.store(si_ptr + soff, zi * (-scale))
    else:
        tl.store(si_ptr + soff, zi * scale)


@triton.jit
def col2_fwd_kernel(
    u_ptr, pre_ptr, zr_ptr, zi_ptr, fqr_ptr, fqi_ptr, fpr_ptr, fpi_ptr, twr_ptr, twi_ptr, L,
    Q: tl.constexpr, P: tl.constexpr, N1: tl.constexpr, BC: tl.constexpr,
    HAS_PRE: tl.constexpr, PREC: tl.constexpr, DOT16: tl.constexpr,
):
    """:func:`col_fwd_kernel` in two on-chip steps for ``N2 = Q*P``; one program per BC columns.

    With ``n2 = p + P*q`` and ``k2 = kq + Q*kp``: a length-Q DFT over q (``F_Q @ X`` on the tile
    ``X[q, c*P + p]``), the twiddle ``W_N2^(p*kq)``, a reshape to rows ``(kq, c)`` and a length-P DFT
    over p (``@ F_P``), then the twiddle ``W_N^(n1*k2)``. Each input and output point moves once.
    """
    N2: tl.constexpr = Q * P
    N: tl.constexpr = N2 * N1
    NCB: tl.constexpr = N1 // BC
    pid = tl.program_id(0).to(tl.int64)  # column blocks of one sequence are neighbours in launch order
    bh = pid // NCB
    c0 = (pid % NCB) * BC
    q = tl.arange(0, Q)[:, None]
    col = tl.arange(0, BC * P)[None, :]
    p = col % P
    n = c0 + col // P + N1 * (p + P * q)
    x = _load_real(u_ptr, pre_ptr, bh * L + n, n < L, HAS_PRE)
    yr = _mm(_load_square(fqr_ptr, Q, Q), x, PREC, DOT16)
    yi = _mm(_load_square(fqi_ptr, Q, Q), x, PREC, DOT16)
    twr = tl.load(twr_ptr + q * P + p)  # rows are kq now
    twi = tl.load(twi_ptr + q * P + p)
    tr = tl.reshape(yr * twr - yi * twi, (Q * BC, P))
    ti = tl.reshape(yr * twi + yi * twr, (Q * BC, P))
    fpr = _load_square(fpr_ptr, P, P)
    fpi = _load_square(fpi_ptr, P, P)
    zr = _mm(tr, fpr, PREC, DOT16) - _mm(ti, fpi, PREC, DOT16)
    zi = _mm(tr, fpi, PREC, DOT16) + _mm(ti, fpr, PREC, DOT16)
    rr = tl.arange(0, Q * BC)[:, None]
    cc = c0 + rr % BC
    k2 = rr // BC + Q * tl.arange(0, P)[None, :]
    _store_twiddled(zr_ptr, zi_ptr, (bh * N2 + k2) * N1 + cc, zr, zi, cc * k2, N)


@triton.jit
def col2_inv_kernel(
    zr_ptr, zi_ptr, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
    fqr_ptr, fqi_ptr, fpr_ptr, fpi_ptr, twr_ptr, twi_ptr, H, L,
    Q: tl.constexpr, P: tl.constexpr, N1: tl.constexpr, BC: tl.constexpr,
    HAS_PRE: tl.constexpr, HAS_D: tl.constexpr, HAS_POST: tl.constexpr, PREC: tl.constexpr, DOT16: tl.constexpr,
    STORE_Y: tl.constexpr = True, STORE_Z: tl.constexpr = False, STORE_Y2: tl.constexpr = False,
    STORE_Y3: tl.constexpr = False, DSUM: tl.constexpr = False,
):
    """Inverse of :func:`col2_fwd_kernel` (adjoint steps in reverse order), real part, fused epilogue.

    Only rows ``q < Q/2`` can hold outputs below L; the store is masked to ``n < L``.
    """
    N2: tl.constexpr = Q * P
    N: tl.constexpr = N2 * N1
    NCB: tl.constexpr = N1 // BC
    pid = tl.program_id(0).to(tl.int64)
    bh = pid // NCB
    h = bh % H
    c0 = (pid % NCB) * BC
    rr = tl.arange(0, Q * BC)[:, None]
    cc = c0 + rr % BC
    k2 = rr // BC + Q * tl.arange(0, P)[None, :]
    zoff = (bh * N2 + k2) * N1 + cc
    zr = _ld(zr_ptr, zoff)
    zi = _ld(zi_ptr, zoff)
    ar, ai = _rotate(zr, zi, cc * k2, N, TWO_PI)
    fpr = _load_square(fpr_ptr, P, P)
    fpi = _load_square(fpi_ptr, P, P)
    yr = tl.reshape(_mm(ar, fpr, PREC, DOT16) + _mm(ai, fpi, PREC, DOT16), (Q, BC * P))
    yi = tl.reshape(_mm(ai, fpr, PREC, DOT16) - _mm(ar, fpi, PREC, DOT16), (Q, BC * P))
    q = tl.arange(0, Q)[:, None]
    col = tl.arange(0, BC * P)[None, :]
    p = col % P
    twr = tl.load(twr_ptr + q * P + p)  # rows are kq here
    twi = tl.load(twi_ptr + q * P + p)
    tr = yr * twr + yi * twi
    ti = yi * twr - yr * twi
    acc = _mm(_load_square(fqr_ptr, Q, Q), tr, PREC, DOT16) + _mm(_load_square(fqi_ptr, Q, Q), ti, PREC, DOT16)
    n = c0 + col // P + N1 * (p + P * q)
    mask = n < L
    off = bh * L + n
    _gated_epilogue(acc, u_ptr, pre_ptr, d_ptr, post_ptr, y_ptr, z_ptr, m2_ptr, y2_ptr, zin_ptr, y3_ptr, dsum_ptr,
                    h, off, mask, pid, HAS_PRE, HAS_D, HAS_POST, STORE_Y, STORE_Z, STORE_Y2, STORE_Y3, DSUM)
