"""Triton kernels around cuFFT for long FFT convolutions: everything the convolution does besides the
transforms and the spectral product, fused into one pass before and one pass after them.

``pad_product``: ``out[b, h, :L] = a * b * scale[b, h]`` and ``out[b, h, L:N] = 0`` -- the gated,
zero-padded (and, for half-precision spectra, range-scaled) input of a size-N real FFT, written once in
the transform's precision (PyTorch needs a cast, a multiply and rfft's own padded copy); optionally with
per-block sums of ``a * b * other * gate`` for another gated row tensor (the skip weight's gradient: the
input's gated samples against the gradient's, every factor read in its own dtype and multiplied in fp32)
or of ``(a * b)^2`` (the row norms the range scaling is derived from), the latter without writing
anything.
``epilogue``: ``z = y[:L] * n_inv + a * b * D`` (``n_inv`` one number, or one per row when the spectra
were range-scaled), then ``z * m1`` and optionally ``z * m2`` and ``z`` itself, each in its output's
dtype -- the skip term, the 1/n of the inverse transform (run unnormalised) and the output gate in the
forward; the skip term and both input gradients in the backward.
The two-level convolution (:mod:`.two_level`) has no such passes: its first and last transform levels
(:mod:`.row_kernels`) read the gated input and run :func:`write_outputs` themselves (its skip term rides in
the filter's spectrum).

Rows are (batch, channel) pairs; every tensor has its own (batch, channel) strides (the outputs one set
for all) and a unit stride in time, so channel slices of larger tensors are read and written in place.
Programs are numbered row-major over (row, time block) on grid axis 0, so batch x channels may exceed
the 65535 limit of the other axes.
"""
from __future__ import annotations

import triton
import triton.language as tl



@triton.jit
def _row(pid, nblk, H, BLOCK: tl.constexpr):
    """(row, batch index, channel index, time offsets) of program ``pid``, indices as int64."""
    row = (pid // nblk).to(tl.int64)
    ts = (pid % nblk) * BLOCK + tl.arange(0, BLOCK)
    return row, row // H, row % H, ts


@triton.jit
def gated(a_ptr, b_ptr, bi, hi, ts, mask, sab, sah, sbb, sbh, HAS_B: tl.constexpr):
    """a (times b) at (bi, hi, ts) in fp32, zero where masked."""
    a = tl.load((a_ptr + (bi * sab + hi * sah)) + ts, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        a *= tl.load((b_ptr + (bi * sbb + hi * sbh)) + ts, mask=mask, other=0.0).to(tl.float32)
    return a


#: ``pad_product_kernel``'s block sums: none, ``a * b * other * gate`` (DOT_OTHER) or ``(a * b)^2`` (DOT_SQUARE).
DOT_NONE, DOT_OTHER, DOT_SQUARE = 0, 1, 2


@triton.jit
def pad_product_kernel(a_ptr, b_ptr, out_ptr, other_ptr, gate_ptr, dot_ptr, scale_ptr, H, L, N, nblk, sab, sah,
                       sbb, sbh, sob, soh, sgb, sgh, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr,
                       HAS_GATE: tl.constexpr, STORE: tl.constexpr, DOT: tl.constexpr, BLOCK: tl.constexpr):
    """With DOT the block's sum over the unscaled ``a * b`` (times ``other * gate``, rows of length >= L
    with their own strides, or squared) goes to ``dot[pid]``: per-block partial sums, reduced
    deterministically by the caller."""
    pid = tl.program_id(0)
    row, bi, hi, ts = _row(pid, nblk, H, BLOCK)
    value = gated(a_ptr, b_ptr, bi, hi, ts, ts < L, sab, sah, sbb, sbh, HAS_B)
    if DOT == 1:
        other = gated(other_ptr, gate_ptr, bi, hi, ts, ts < L, sob, soh, sgb, sgh, HAS_GATE)
        tl.store(dot_ptr + pid, tl.sum(value * other, axis=0))
    if DOT == 2:
        tl.store(dot_ptr + pid, tl.sum(value * value, axis=0))
    if STORE:
        if HAS_SCALE:
            value *= tl.load(scale_ptr + row)
        tl.store(out_ptr + row * N + ts, value.to(out_ptr.dtype.element_ty), mask=ts < N)


@triton.jit
def finish_epilogue(z, ts, mask, bi, hi, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr,
            sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h, sob, soh, HAS_B: tl.constexpr, HAS_D: tl.constexpr,
            HAS_M1: tl.constexpr, HAS_M2: tl.constexpr, STORE_Z: tl.constexpr):
    """The epilogue's outputs from the scaled convolution ``z`` at times ``ts`` (any shape) of row (bi, hi):
    the skip term, then :func:`write_outputs`."""
    if HAS_D:
        skip = tl.load(d_ptr + hi).to(tl.float32)
        z += skip * gated(a_ptr, b_ptr, bi, hi, ts, mask, sab, sah, sbb, sbh, HAS_B)
    write_outputs(z, ts, mask, bi, hi, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr, sm1b, sm1h, sm2b, sm2h, sob, soh,
                  HAS_M1, HAS_M2, STORE_Z)


@triton.jit
def write_outputs(z, ts, mask, bi, hi, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr, sm1b, sm1h, sm2b, sm2h, sob, soh,
                  HAS_M1: tl.constexpr, HAS_M2: tl.constexpr, STORE_Z: tl.constexpr):
    """``z`` (with STORE_Z), ``z * m1`` and (HAS_M2) ``z * m2`` at times ``ts`` of row (bi, hi), each in its
    output's dtype (HAS_M1 off: ``z`` itself)."""
    out = bi * sob + hi * soh
    if STORE_Z:
        tl.store((z_ptr + out) + ts, z.to(z_ptr.dtype.element_ty), mask=mask)
    first = z
    if HAS_M1:
        first = z * tl.load((m1_ptr + (bi * sm1b + hi * sm1h)) + ts, mask=mask, other=0.0).to(tl.float32)
    tl.store((out1_ptr + out) + ts, first.to(out1_ptr.dtype.element_ty), mask=mask)
    if HAS_M2:
        second = z * tl.load((m2_ptr + (bi * sm2b + hi * sm2h)) + ts, mask=mask, other=0.0).to(tl.float32)
        tl.store((out2_ptr + out) + ts, second.to(out2_ptr.dtype.element_ty), mask=mask)


@triton.jit
def epilogue_kernel(y_ptr, ninv_ptr, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr,
                    H, L, nblk, n_inv, sy, sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h, sob, soh,
                    ROW_NINV: tl.constexpr, HAS_B: tl.constexpr, HAS_D: tl.constexpr, HAS_M1: tl.constexpr,
                    HAS_M2: tl.constexpr, STORE_Z: tl.constexpr, BLOCK: tl.constexpr):
    """``ninv_ptr`` (ROW_NINV) holds one factor per row, contiguous over (batch, channel); else ``n_inv``."""
    row, bi, hi, ts = _row(tl.program_id(0), nblk, H, BLOCK)
    mask = ts < L
    if ROW_NINV:
        n_inv = tl.load(ninv_ptr + row)
    z = tl.load(y_ptr + row * sy + ts, mask=mask, other=0.0).to(tl.float32) * n_inv
    finish_epilogue(z, ts, mask, bi, hi, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr,
            sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h, sob, soh, HAS_B, HAS_D, HAS_M1, HAS_M2, STORE_Z)
