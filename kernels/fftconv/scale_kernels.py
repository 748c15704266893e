"""Triton kernels for the range scales of half-precision spectra (:mod:`.cufft_fused`).

Each fp16 row is multiplied by a power of two before its transform, and each spectral product by another,
so that no transform stage can exceed ``HALF_RANGE`` (see ``cufft_fused._row_range`` and
``cufft_fused._spectral_product`` for the bounds). The arithmetic is a handful of operations on (B, H)
vectors; as torch operations it was ~30 launches per convolution, which cost more host time than the
convolution's kernels at small sizes and ~0.05 ms of tiny kernels on the GPU per call (HyenaDNA's 1M
profile: ~0.4 ms for its 8 convolutions). Here it
is two kernels: one turns a row norm pass's block partial sums into norms and range scales, one turns two
signals' norms and scales into the product's per-row factors and inverse normalisations.

Powers of two are taken from the exponent bits (exact, no log2 rounding at powers of two), with the
exponent clamped to [-100, 100] as zero or non-finite norms need.
"""
from __future__ import annotations

import triton
import triton.language as tl

#: Exponent bias and clamp of the powers of two.
_BIAS = tl.constexpr(127)
_CLAMP = tl.constexpr(100)
_LARGEST = tl.constexpr(2.0 ** _CLAMP.value)


@triton.jit
def pow2_floor(x):
    """The largest power of two <= x for positive finite x, as an fp32 vector; the exponent is clamped to
    [-100, 100] (x = +inf or NaN gives 2^100, x = 0 or subnormal 2^-100)."""
    exponent = (x.to(tl.int32, bitcast=True) >> 23) & 0xFF
    exponent = tl.minimum(tl.maximum(exponent, _BIAS - _CLAMP), _BIAS + _CLAMP)
    return (exponent << 23).to(tl.float32, bitcast=True)


@triton.jit
def pow2_floor_ratio(num, den):
    """pow2_floor(num / den) for num > 0; den = 0 (a zero row, or a masked lane) gives the clamp's 2^100
    without dividing by zero."""
    nonzero = den > 0
    return tl.where(nonzero, pow2_floor(num / tl.where(nonzero, den, 1.0)), _LARGEST)


@triton.jit
def row_range_kernel(partials_ptr, impulse_ptr, norm_ptr, scale_ptr, rows, H, nblk, range_per_sqrt_taps,
                     HAS_IMPULSE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_PARTS: tl.constexpr):
    """norm[r] = sqrt(sum of partials[r, :nblk]) (summed in a fixed order), plus |impulse[r mod H]| with
    HAS_IMPULSE (a bound on the norm of the row with that value added to one sample), and
    scale[r] = pow2_floor(range_per_sqrt_taps / norm[r]) for BLOCK_ROWS rows."""
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    part = tl.arange(0, BLOCK_PARTS)
    total = tl.zeros((BLOCK_ROWS,), dtype=tl.float32)
    for start in range(0, nblk, BLOCK_PARTS):
        mask = (row[:, None] < rows) & (start + part[None, :] < nblk)
        block = tl.load(partials_ptr + row[:, None].to(tl.int64) * nblk + start + part[None, :], mask=mask, other=0.0)
        total += tl.sum(block, axis=1)
    norm = tl.sqrt(total)
    if HAS_IMPULSE:
        norm += tl.abs(tl.load(impulse_ptr + row % H, mask=row < rows, other=0.0).to(tl.float32))
    tl.store(norm_ptr + row, norm, mask=row < rows)
    tl.store(scale_ptr + row, pow2_floor_ratio(range_per_sqrt_taps, norm), mask=row < rows)


@triton.jit
def product_scales_kernel(a_norm_ptr, b_norm_ptr, a_scale_ptr, b_scale_ptr, factor_ptr, n_inv_ptr, batch, H,
                          b_batch_stride, range_per_2n, inv_n, SUMMED: tl.constexpr, BLOCK_H: tl.constexpr):
    """For the product of signals a (batch, H) and b (batch or 1, H; ``b_batch_stride`` 0 broadcasts it):
    out_scale = pow2_floor(range_per_2n / bound) with bound = |a| |b| per row, or summed over the batch
    (SUMMED: one output row per channel); factor[o, h] = out_scale / (a.scale b.scale) per input row and
    n_inv = inv_n / out_scale per output row."""
    h = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    valid = h < H
    if SUMMED:
        bound = tl.zeros((BLOCK_H,), dtype=tl.float32)
        for o in range(batch):
            a_norm = tl.load(a_norm_ptr + o * H + h, mask=valid, other=0.0)
            bound += a_norm * tl.load(b_norm_ptr + o * b_batch_stride + h, mask=valid, other=0.0)
        out_scale = pow2_floor_ratio(range_per_2n, bound)
        tl.store(n_inv_ptr + h, inv_n / out_scale, mask=valid)
    for o in range(batch):
        a_scale = tl.load(a_scale_ptr + o * H + h, mask=valid, other=1.0)
        b_scale = tl.load(b_scale_ptr + o * b_batch_stride + h, mask=valid, other=1.0)
        if not SUMMED:
            a_norm = tl.load(a_norm_ptr + o * H + h, mask=valid, other=0.0)
            b_norm = tl.load(b_norm_ptr + o * b_batch_stride + h, mask=valid, other=0.0)
            out_scale = pow2_floor_ratio(range_per_2n, a_norm * b_norm)
            tl.store(n_inv_ptr + o * H + h, inv_n / out_scale, mask=valid)
        tl.store(factor_ptr + o * H + h, out_scale / (a_scale * b_scale), mask=valid)


@triton.jit
def pair_product_scales_kernel(x_norm_ptr, x_scale_ptr, k_norm_ptr, k_scale_ptr, factor_ptr, n_inv_ptr, batch,
                               pairs, H, range_per_2n, inv_n, BLOCK: tl.constexpr):
    """For rows paired as real and imaginary parts (batch entries p and p + ``pairs``, each range-scaled by
    its own x.scale) times one real filter per channel: g = pow2_floor(range_per_2n / (|z| |k|)) with |z|
    = sqrt((s1 |x1|)^2 + (s2 |x2|)^2) the scaled pair's norm and |k| the filter's unscaled one (bound as
    in ``product_scales_kernel``); factor[p, h] = g / k.scale[h] and n_inv[b, h] = inv_n / (g x.scale[b, h])
    for both entries of the pair (0 for a zero entry)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = i < pairs * H
    p, h = i // H, i % H
    second = p + pairs
    has_second = valid & (second < batch)
    s1 = tl.load(x_scale_ptr + i, mask=valid, other=1.0)
    s2 = tl.load(x_scale_ptr + second * H + h, mask=has_second, other=1.0)
    x1 = tl.load(x_norm_ptr + i, mask=valid, other=0.0)
    x2 = tl.load(x_norm_ptr + second * H + h, mask=has_second, other=0.0)
    z1, z2 = s1 * x1, s2 * x2
    k_norm = tl.load(k_norm_ptr + h, mask=valid, other=0.0)
    g = pow2_floor_ratio(range_per_2n, tl.sqrt(z1 * z1 + z2 * z2) * k_norm)
    tl.store(factor_ptr + i, g / tl.load(k_scale_ptr + h, mask=valid, other=1.0), mask=valid)
    # a zero entry's outputs are exactly zero, not its partner's rounding times a tiny factor
    tl.store(n_inv_ptr + i, tl.where(x1 > 0, inv_n / (g * s1), 0.0), mask=valid)
    tl.store(n_inv_ptr + second * H + h, tl.where(x2 > 0, inv_n / (g * s2), 0.0), mask=has_second)
