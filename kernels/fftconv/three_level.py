"""The long convolution's forward as three FFT levels, all in Triton, for batches: rows paired as the real
and imaginary parts of one complex row, so the spectral product needs no partner bins and fuses into the
middle level.

The two-level path (:mod:`.two_level`) packs a row's consecutive samples into complex words. Recovering the
real spectrum from such a packed transform needs each bin's mirror bin (M − k), which lives in another
row of cuFFT's middle level; so cuFFT's transform, the product and cuFFT's inverse are three passes over
HBM (at 32K, 2.1 of its 4.0 ms). With two batch entries p and p + P of one channel as the real and
imaginary parts of one n-point complex row z = x_p + i·x_(p+P), the convolution with a real filter k is
itself complex-linear: z ⊛ k = (x_p ⊛ k) + i·(x_(p+P) ⊛ k), so the product is bin by bin, and each row of
the middle level can be transformed, multiplied and transformed back in registers. With n = n1·n2:

1. :func:`.two_level.first_level` (paired): the gated, range-scaled samples of both entries, n2-point DFTs
   and twiddles, rows contiguous in j1 (the same kernel as two levels, the same bytes);
2. :func:`middle` (:func:`.row_kernels.middle_level_kernel`): n1-point DFTs, the product with the filter's
   spectrum, the inverse DFTs, in place: one read and one write instead of three of each;
3. :func:`.two_level.last_level` (paired): the inverse n2-point DFTs and the epilogue of both entries.

The filter's spectrum is the same first level (imaginary parts zero) and the middle level without the
product. Each entry keeps its own power-of-two range scale (the two parts of a word mix in every butterfly,
so rows of very different norms would otherwise lose the small one to the large one's rounding); the
product takes one factor per pair that bounds the inverse (:func:`_pair_scales`).

Taken by the forwards of 16-bit inputs with batch >= 2 and n in [2^16, 2^18] (L in (16K, 128K]), the
middle level 16 × 16, 16 × 32 or 16 × 64 points. The backward stays on two levels; a training forward
taken here keeps no filter spectrum for it (the backward recomputes the two-level one, which costs less
than the three-level forward saves). kernels/fftconv/NOTES.md ("Fifteenth session") has the measurements.
"""
from __future__ import annotations

import os

import torch
import triton

from . import cufft_fused as one_level
from . import two_level
from .reference import combined_filter
from .row_kernels import middle_level_kernel
from .scale_kernels import pair_product_scales_kernel

#: Paired lengths n (complex points per row, n = 2·next_pow2(L)) this path takes.
MIN_POINTS, MAX_POINTS = 1 << 16, 1 << 18
#: Middle level: rows per program of a 16 × 16-point level (wider levels take proportionally fewer: 8 at
#: 16 × 32, 4 at 16 × 64), warps, register cap. H200, B·H·L = 256M (kernels/bench_two_level.py --middles,
#: fifteenth session): 1.10 / 1.11 / 1.46 ms at 32K / 64K / 128K; 8 rows 1.27 / 1.40 / 5.06, 32 rows on 8
#: warps capped 1.31 / 1.24 / 1.42, uncapped 1.80 / 1.82 / 2.01, a 168-register cap 1.18 / 1.23 / 1.56.
MIDDLE_ROWS, MIDDLE_WARPS, MIDDLE_MAXNREG = 16, 4, 128
#: Dots per complex product in the middle level (see :data:`.two_level.DOTS`), by the width TB of its 16 × TB
#: points. H200, whole forward (kernels/bench_two_level.py --middles 16,4,128,4 16,4,128,1, twenty-first
#: session): one dot 2.88 / 3.09 ms at 32K / 64K (16 × 16, 16 × 32) against 3.01 / 3.15 with four; at 128K
#: (16 × 64) the one-dot middle spills (624 B offline against 80 B) and took 2.96 ms against 1.47 with four.
MIDDLE_DOTS = {16: 1, 32: 1, 64: 4}
#: "0" turns the path off (calls fall back to two levels).
ENV_SWITCH = "GENOMIX_FFTCONV_THREE_LEVEL"
#: Pairs of scale factors per program of :func:`_pair_scales`.
SCALE_BLOCK = 256


def applies(plan: one_level._Plan, batch: int) -> bool:
    """Whether a forward call of this plan and batch runs on three levels (asked only for calls that run
    on two levels, :func:`.two_level.applies`: switching those off switches these off too)."""
    return (os.environ.get(ENV_SWITCH) != "0" and plan.half and batch >= 2
            and MIN_POINTS <= plan.n <= MAX_POINTS)


def _split(n: int) -> tuple[int, int]:
    """(n1, n2): the middle level's and the end levels' sizes of an n-point paired row. The end levels stay
    16 × 16 points and the middle takes the rest (16 × n1/16): a paired end level reads and writes runs of
    as many consecutive samples as it has columns (16 two-byte samples at 16 × 16 points, half that at
    16 × 32: the 64K forward's first level 0.85 -> 1.08 ms and its last 0.93 -> 1.52 ms, H200)."""
    n2 = two_level.TILE * two_level.TILE
    return n // n2, n2


def middle(rows: torch.Tensor, filter_spectrum: torch.Tensor | None = None,
           factor: torch.Tensor | None = None) -> torch.Tensor:
    """In place on ``rows`` (pairs, H, n2, n1) complex32 (:func:`.two_level.first_level`, paired): the
    product with ``filter_spectrum`` (1, H, n2, n1, from this function without a filter) times ``factor``
    (pairs, H) between the n1-point transform and its inverse; without a filter the spectrum itself."""
    pairs, channels, n2, n1 = rows.shape
    TA, TB = two_level._level(n1)
    kb = max(1, MIDDLE_ROWS * two_level.TILE // TB)
    if n2 % kb:
        raise ValueError(f"middle: {n2} rows per channel do not split into blocks of {kb}")
    n_blk = n2 // kb
    words = one_level._complex_words(rows)
    product = filter_spectrum is not None
    dots = MIDDLE_DOTS[TB]
    middle_level_kernel[(pairs * channels * n_blk,)](
        words, one_level._complex_words(filter_spectrum) if product else words, factor if product else words,
        two_level._matrices(TA, rows.device, dots), two_level._matrices(TB, rows.device, dots),
        two_level._inner_twiddles(TA, TB, rows.device), channels, n2, n_blk, pairs,
        PRODUCT=product, TA=TA, TB=TB, KB=kb, DOTS=dots, MATH=two_level._math(two_level.HALF_MATH),
        num_warps=MIDDLE_WARPS, maxnreg=MIDDLE_MAXNREG,
    )
    return rows


def _filter_spectrum(k: torch.Tensor, plan: one_level._Plan, bidirectional: bool,
                     k_sumsq: torch.Tensor | None, skip: torch.Tensor | None = None) -> one_level._Signal:
    """The filter's n-point spectrum (1, h, n2, n1) in the middle level's bin order, range-scaled; k (h, L),
    or (h, 2L) bidirectional as its combined length-n row; ``skip`` (h,): D folded in as lag 0 (see
    :func:`.two_level._filter_spectrum`)."""
    norm, scale = one_level._row_range(plan, k.unsqueeze(0), sumsq=k_sumsq, impulse=skip)
    rows = combined_filter(k.float(), plan.L, plan.n, True) if bidirectional else k
    spectrum = two_level.first_level(rows.unsqueeze(0), None, scale, plan, pairs=1, split=_split(plan.n),
                                     impulse=skip)
    return one_level._Signal(middle(spectrum), scale, norm)


def _pair_scales(plan: one_level._Plan, x: one_level._Signal, kf: one_level._Signal,
                 pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(factor per pair and channel, n_inv per batch entry and channel): see
    :func:`.scale_kernels.pair_product_scales_kernel`."""
    batch, channels = x.norm.shape
    factor = torch.empty(pairs, channels, dtype=torch.float32, device=x.norm.device)
    n_inv = torch.empty(batch, channels, dtype=torch.float32, device=x.norm.device)
    pair_product_scales_kernel[(triton.cdiv(pairs * channels, SCALE_BLOCK),)](
        x.norm.contiguous(), x.scale.contiguous(), kf.norm.contiguous(), kf.scale.contiguous(), factor, n_inv,
        batch, pairs, channels, one_level.HALF_RANGE / (2 * plan.n), 1.0 / plan.n, BLOCK=SCALE_BLOCK,
        num_warps=4,
    )
    return factor, n_inv


def forward_group(plan: one_level._Plan, u, k, D, pregate, postgate, bidirectional: bool, out, y,
                  k_sumsq: torch.Tensor | None = None) -> None:
    """One channel group of the forward on three levels: writes ``out`` (and ``y``, the pre-postgate
    output, if given)."""
    pairs = (u.shape[0] + 1) // 2
    split = _split(plan.n)
    norm, scale = one_level._row_range(plan, u, pregate)
    rows = two_level.first_level(u, pregate, scale, plan, pairs=pairs, split=split)
    kf = _filter_spectrum(k, plan, bidirectional, k_sumsq, skip=D)
    factor, n_inv = _pair_scales(plan, one_level._Signal(rows, scale, norm), kf, pairs)
    middle(rows, kf.spectrum, factor)
    del kf
    two_level.last_level(rows, n_inv, postgate, out, z=y, pairs=pairs)
