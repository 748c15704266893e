"""Triton kernels around cuFFT for long FFT convolutions: everything the convolution does besides the
transforms and the spectral product, fused into one pass before and one pass after them.

``pad_product``: ``out[b, h, :L] = a * b`` in fp32 and ``out[b, h, L:N] = 0`` -- the gated, zero-padded
input of a size-2L real FFT, written once (PyTorch needs a cast, a multiply and rfft's own padded copy);
optionally with per-block sums of ``a * b * c`` for a third row tensor c (the skip weight's gradient).
``epilogue``: ``z = y[:L] * n_inv + a * b * D``, then ``z * m1`` and optionally ``z * m2`` and ``z``
itself, each in its output's dtype -- the skip term, the 1/n of the inverse transform (run unnormalised)
and the output gate in the forward; the skip term and both input gradients in the backward.

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
def _gated(a_ptr, b_ptr, bi, hi, ts, mask, sab, sah, sbb, sbh, HAS_B: tl.constexpr):
    """a (times b) at (bi, hi, ts) in fp32, zero where masked."""
    a = tl.load(a_ptr + bi * sab + hi * sah + ts, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        a *= tl.load(b_ptr + bi * sbb + hi * sbh + ts, mask=mask, other=0.0).to(tl.float32)
    return a


@triton.jit
def pad_product_kernel(a_ptr, b_ptr, out_ptr, c_ptr, dot_ptr, H, L, N, nblk, sab, sah, sbb, sbh,
                       HAS_B: tl.constexpr, HAS_DOT: tl.constexpr, BLOCK: tl.constexpr):
    """With HAS_DOT also ``dot[pid] = sum(a * b * c)`` over the block, c being rows of length N: the
    per-block partial sums of the skip weight's gradient, reduced deterministically by the caller."""
    pid = tl.program_id(0)
    row, bi, hi, ts = _row(pid, nblk, H, BLOCK)
    value = _gated(a_ptr, b_ptr, bi, hi, ts, ts < L, sab, sah, sbb, sbh, HAS_B)
    tl.store(out_ptr + row * N + ts, value, mask=ts < N)
    if HAS_DOT:
        other = tl.load(c_ptr + row * N + ts, mask=ts < L, other=0.0)
        tl.store(dot_ptr + pid, tl.sum(value * other, axis=0))


@triton.jit
def epilogue_kernel(y_ptr, a_ptr, b_ptr, d_ptr, m1_ptr, m2_ptr, out1_ptr, out2_ptr, z_ptr,
                    H, L, nblk, n_inv, sy, sab, sah, sbb, sbh, sm1b, sm1h, sm2b, sm2h, sob, soh,
                    HAS_B: tl.constexpr, HAS_D: tl.constexpr, HAS_M1: tl.constexpr, HAS_M2: tl.constexpr,
                    STORE_Z: tl.constexpr, BLOCK: tl.constexpr):
    row, bi, hi, ts = _row(tl.program_id(0), nblk, H, BLOCK)
    mask = ts < L
    z = tl.load(y_ptr + row * sy + ts, mask=mask, other=0.0).to(tl.float32) * n_inv
    if HAS_D:
        skip = tl.load(d_ptr + hi).to(tl.float32)
        z += skip * _gated(a_ptr, b_ptr, bi, hi, ts, mask, sab, sah, sbb, sbh, HAS_B)
    out = bi * sob + hi * soh + ts
    if STORE_Z:
        tl.store(z_ptr + out, z.to(z_ptr.dtype.element_ty), mask=mask)
    first = z
    if HAS_M1:
        first = z * tl.load(m1_ptr + bi * sm1b + hi * sm1h + ts, mask=mask, other=0.0).to(tl.float32)
    tl.store(out1_ptr + out, first.to(out1_ptr.dtype.element_ty), mask=mask)
    if HAS_M2:
        second = z * tl.load(m2_ptr + bi * sm2b + hi * sm2h + ts, mask=mask, other=0.0).to(tl.float32)
        tl.store(out2_ptr + out, second.to(out2_ptr.dtype.element_ty), mask=mask)
