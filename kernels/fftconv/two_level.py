"""The long convolution's forward as a two-level FFT: Triton for the levels next to the time domain,
cuFFT for the middle ones.

The one-level cuFFT path (:mod:`.cufft_fused`) runs three full length-M transforms per forward, and cuFFT
makes each of them in three passes over HBM at M = 2^20 (fp16): ~70 % of the forward's time. Here the
packed length-M transform is split as M = n1·n2 (four-step FFT, :mod:`.row_kernels` has the algebra), each
level one pass:

1. :func:`first_level` (Triton): the gated, range-scaled input read from the time domain (its zero-padded
   half is masked, not read), n2-point DFTs over the strided index j2 on tensor cores and the twiddles,
   written as rows contiguous in j1;
2. cuFFT: n1-point transforms of those contiguous rows (a strided transform of the natural layout
   measured 2.8 ms at 1M against 0.6 ms contiguous on an H200: torch and cuFFT copy it), leaving the
   spectrum in "two-level word order";
3. the same for the filter, with the skip weight D added at lag 0 (conv(x, k) + D·x = conv(x, k + D·δ));
4. :func:`.cufft_fused.packed_product` in that word order: the product with the range factor, in place;
5. cuFFT's n1-point inverse transforms;
6. :func:`last_level` (Triton): the inverse n2-point DFTs and the epilogue (1/n and the range scales, gates,
   outputs in their dtypes), written to the time domain.

Half-precision spectra only (16-bit inputs): the range scaling of :mod:`.cufft_fused` bounds every stage,
including the Triton levels' fp16 dot operands. Calls at 32K <= M <= 4M take it by default (:func:`applies`),
training calls included: :func:`backward_group` computes their gradients on two levels as well.
kernels/fftconv/NOTES.md ("Two-level forward" and later sessions) has the measurements.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os

import torch
import triton
import triton.language as tl

from ..dispatch import environment
from ..transpose import unit_stride_rows
from . import cufft_fused as one_level
from .reference import _uncombine, combined_filter
from .row_kernels import first_level_kernel, last_level_kernel

#: Triton level tile: n2 = TILE·TILE points (TILE-point DFTs as fp16 dots, which need TILE >= 16), or
#: TILE·2·TILE from WIDE_MIN_POINTS on.
TILE = 16
#: Packed lengths from which the Triton level has TILE × 2·TILE points: n1 halves, which keeps cuFFT's
#: level at one pass at M = 4M (H200, 1 GiB of fp16 rows: 8K-point rows 0.77 ms, 16K-point rows 1.42 ms
#: in two passes; fourteenth session).
WIDE_MIN_POINTS = 1 << 22
#: Launch shape and arithmetic of the first and of the last Triton level, each pair (first, last):
#: - COLUMNS: columns per program (each tile load reads KB contiguous words per j2; a wide level takes half
#:   as many, so that its programs hold as many points), ROW_WARPS: warps per program;
#: - DOTS: fp16 dots per complex matrix product: 1 (the real embedding of the complex matrix against the
#:   interleaved parts), 3 (Gauss) or 4 (chained);
#: - MAXNREG: register caps (None: the compiler's choice; 128 lets 4 programs share an SM);
#: - HALF_MATH: the elementwise work before and between the dots (twiddle products, Gauss sums) in fp16
#:   (packed half2 instructions) instead of fp32.
#: H200, B·H·L = 256M, bf16 (kernels/bench_two_level.py, fourteenth session), forward at 1M / 256K: these
#: settings 5.58 / 4.28 ms; uncapped 5.88 / 4.51; fp32 elementwise work 5.70 / 4.37; 8 columns 6.09 / 4.70;
#: three dots 5.79 / 4.41. At 32K: 8 warps uncapped 4.36, 32 columns on 8 warps 4.44, caps of 168 and 96
#: 4.15 and 4.58, against 3.98 ms. At 4M (wide level): 6.82 ms; 8 columns (4 wide) 8.92, uncapped 7.32.
#: One dot per product against four (twentieth session, bench_two_level.py --sweep): forward 5.63 -> 5.44 ms at 1M
#: (first level 0.83 -> 0.74, last 0.90 -> 0.81), 3.94 -> 3.80 at 32K, 6.82 -> 6.62 at 4M.
COLUMNS, INVERSE_COLUMNS, ROW_WARPS = 16, 16, 4
DOTS, INVERSE_DOTS = 1, 1
MAXNREG, INVERSE_MAXNREG = 128, 128
HALF_MATH, INVERSE_HALF_MATH = True, True
#: Packed lengths M = next_pow2(L) whose calls take this path by default. H200, B·H·L = 256M, bf16, two levels
#: forced against one in the same session (fourteenth, kernels/bench_two_level.py and bench_fftconv.py):
#: faster at M = 2^15 (forward 3.98 against 4.83 ms, forward+backward 3.37x against 2.84x the reference),
#: 2^18, 2^20 and 2^22 (forward 8.32 against 9.36 ms with the square level, 6.82 with the wide one;
#: forward+backward 3.34x against 2.91x with the square level); slower at 2^12 (5.21 against 3.04 ms: too
#: little to amortise the extra passes).
MIN_POINTS, MAX_POINTS = 1 << 15, 1 << 22
#: "0" turns the path off, "1" on for every half-precision call long enough for two levels (M >= 2·TILE²);
#: unset: the default range above.
ENV_SWITCH = "GENOMIX_FFTCONV_TWO_LEVEL"


def applies(plan: one_level._Plan) -> bool:
    """Whether a call of this plan runs on two levels (forward, and backward if it trains): half spectra
    and, unless :data:`ENV_SWITCH` says otherwise, MIN_POINTS <= M <= MAX_POINTS."""
    switch, m = os.environ.get(ENV_SWITCH), plan.n // 2
    if switch == "0" or not plan.half or m < 2 * TILE * TILE:
        return False
    return switch == "1" or MIN_POINTS <= m <= MAX_POINTS


def switched_on(on: bool = True) -> contextlib.AbstractContextManager:
    """Within the block, :data:`ENV_SWITCH` is on (or off), then restored."""
    return environment({ENV_SWITCH: "1" if on else "0"})


@functools.lru_cache(maxsize=8)
def _matrices(T: int, device: torch.device, dots: int) -> torch.Tensor:
    """fp16: the T-point DFT matrix F and its adjoint in the slot order of :mod:`.row_kernels`, for ``dots``
    dots per complex product: (2, 2T, 2T) real embeddings (1), (2, 3, T, T) Gauss parts (3) or four-dot
    parts (4)."""
    idx = torch.arange(T, dtype=torch.float64)
    F = torch.exp(-2j * math.pi * torch.outer(idx, idx) / T)
    if dots == 1:
        def parts(m: torch.Tensor) -> torch.Tensor:
            w = torch.empty(2 * T, 2 * T, dtype=torch.float64)
            w[0::2, 0::2], w[0::2, 1::2], w[1::2, 0::2], w[1::2, 1::2] = m.real, m.imag, -m.imag, m.real
            return w
    elif dots == 3:
        def parts(m: torch.Tensor) -> torch.Tensor:
            return torch.stack((m.real, m.real + m.imag, m.imag - m.real))
    elif dots == 4:
        def parts(m: torch.Tensor) -> torch.Tensor:
            return torch.stack((m.real, m.imag, -m.imag))
    else:
        raise ValueError(f"dots per complex product: 1, 3 or 4, not {dots}")
    return torch.stack([parts(F), parts(F.conj())]).to(device, torch.float16).contiguous()


@functools.lru_cache(maxsize=4)
def _inner_twiddles(TA: int, TB: int, device: torch.device) -> torch.Tensor:
    """(2, TB, TA) fp32: ω_n2^(b·c), n2 = TA·TB, as [re, im][b, c]."""
    tw = torch.exp(-2j * math.pi * torch.outer(torch.arange(TB, dtype=torch.float64),
                                               torch.arange(TA, dtype=torch.float64)) / (TA * TB))
    return torch.stack([tw.real, tw.imag]).to(device, torch.float32).contiguous()


@functools.lru_cache(maxsize=4)
def _outer_twiddles(n1: int, TA: int, TB: int, device: torch.device) -> torch.Tensor:
    """(TB + TA, n1) complex64 factors of the twiddles ω_M^(k2·j1), M = n1·TA·TB, k2 = c + TA·d, as int64
    words: rows d < TB hold ω_M^(d·TA·j1), rows TB + c hold ω_M^(c·j1)."""
    j1 = torch.arange(n1, dtype=torch.float64)[None, :]
    rows = torch.cat([torch.arange(TB, dtype=torch.float64) * TA, torch.arange(TA, dtype=torch.float64)])[:, None]
    table = torch.exp(-2j * math.pi * rows * j1 / (n1 * TA * TB)).to(torch.complex64)
    return torch.view_as_real(table.to(device)).view(torch.int64).squeeze(-1).contiguous()


def _level(n2: int) -> tuple[int, int]:
    """(TA, TB) of an n2-point Triton level."""
    return TILE, n2 // TILE


def _split(plan: one_level._Plan) -> tuple[int, int]:
    """(n1, n2): cuFFT's and the Triton level's sizes of the packed length M = n / 2."""
    m = plan.n // 2
    n2 = TILE * TILE * (2 if m >= max(WIDE_MIN_POINTS, 4 * TILE * TILE) else 1)  # n1 >= 2 either way
    return m // n2, n2


def _math(half: bool) -> tl.dtype:
    """The dtype of the levels' elementwise work between the dots (see HALF_MATH)."""
    return tl.float16 if half else tl.float32


def _launch(n1: int, n2: int, device: torch.device, inverse: bool) -> tuple[tuple, dict, int]:
    """(table arguments, constexprs and launch options, programs per row) of either Triton level."""
    TA, TB = _level(n2)
    dots, columns, maxnreg, half_math = ((INVERSE_DOTS, INVERSE_COLUMNS, INVERSE_MAXNREG, INVERSE_HALF_MATH) if inverse
                                         else (DOTS, COLUMNS, MAXNREG, HALF_MATH))
    tables = (_matrices(TA, device, dots), _matrices(TB, device, dots), _inner_twiddles(TA, TB, device),
              _outer_twiddles(n1, TA, TB, device))
    columns = max(1, columns * TILE // TB)  # a wide level's programs hold as many points as a square one's
    options = dict(TA=TA, TB=TB, KB=columns, DOTS=dots, EVEN=n1 % columns == 0, MATH=_math(half_math),
                   num_warps=ROW_WARPS)
    if maxnreg is not None:
        options["maxnreg"] = maxnreg
    return tables, options, triton.cdiv(n1, columns)


def first_level(a: torch.Tensor, b: torch.Tensor | None, scale: torch.Tensor | None, plan: one_level._Plan,
                pairs: int = 0, split: tuple[int, int] | None = None,
                impulse: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, n2, n1) complex32: the rows ``a * b * scale`` (B, H, length), zero-padded to n and packed, after
    the transform's first level (rows contiguous in j1, ready for the n1-point transforms). With ``pairs``
    > 0 the batch entries p and p + pairs are paired instead (real and imaginary parts of one n-point row,
    :func:`.row_kernels.first_level_kernel`): (pairs, H, n2, n1) with n1·n2 = n, ``split`` (n1, n2).
    ``impulse`` (H,): added to every row of its channel at time 0, before the scale."""
    a, b = unit_stride_rows(a), unit_stride_rows(b)
    batch, channels, length = a.shape
    n1, n2 = split or _split(plan)
    out = torch.empty(pairs or batch, channels, n2, n1, dtype=torch.complex32, device=a.device)
    tables, options, n_blk = _launch(n1, n2, a.device, inverse=False)
    first_level_kernel[(out.shape[0] * channels * n_blk,)](
        a, a if b is None else b, a if scale is None else scale, a if impulse is None else impulse,
        one_level._complex_words(out), *tables, channels, length, n1, n_blk, pairs, batch,
        *one_level._bh_strides(a), *one_level._bh_strides(b), HAS_B=b is not None, HAS_SCALE=scale is not None,
        HAS_IMPULSE=impulse is not None, PAIRED=pairs > 0, **options,
    )
    return out


def last_level(rows: torch.Tensor, n_inv: torch.Tensor, m1: torch.Tensor | None, out1: torch.Tensor,
               m2: torch.Tensor | None = None, out2: torch.Tensor | None = None,
               z: torch.Tensor | None = None, pairs: int = 0) -> None:
    """The inverse transform's last level on ``rows`` (B, H, n2, n1) complex32 after the inverse n1-point
    transforms, then :func:`.cufft_fused.epilogue`'s outputs (one ``n_inv`` factor per row; gates ``m1``,
    ``m2``, outputs ``out1`` (B, H, length), ``out2`` and ``z``) without a skip term: the two- and
    three-level forwards fold it into the filter's spectrum (:func:`_filter_spectrum`). With ``pairs`` > 0
    ``rows`` are (pairs, H, n2, n1) paired rows (:func:`first_level`) and ``n_inv`` has one factor per
    (batch entry, channel)."""
    m1, m2 = (unit_stride_rows(t) for t in (m1, m2))
    if any(t is not None and t.stride() != out1.stride() for t in (out2, z)):
        raise ValueError("last_level: outputs must share strides")
    if not rows.is_contiguous() or rows.shape[-2] % TILE:
        raise ValueError(f"last_level: contiguous (B, H, n2, n1) rows with {TILE} | n2, got {tuple(rows.shape)}")
    batch, channels, length = out1.shape
    n2, n1 = rows.shape[-2:]
    tables, options, n_blk = _launch(n1, n2, rows.device, inverse=True)
    last_level_kernel[(rows.shape[0] * channels * n_blk,)](
        one_level._complex_words(rows), n_inv, *tables, out1 if m1 is None else m1, out1 if m2 is None else m2,
        out1, out1 if out2 is None else out2, out1 if z is None else z, channels, length, n1, n_blk, pairs, batch,
        *one_level._bh_strides(m1), *one_level._bh_strides(m2), *one_level._bh_strides(out1),
        HAS_M1=m1 is not None, HAS_M2=m2 is not None, STORE_Z=z is not None, PAIRED=pairs > 0, **options,
    )


def _signal(plan: one_level._Plan, a: torch.Tensor, b: torch.Tensor | None) -> one_level._Signal:
    """The two-level spectrum (B, h, n2, n1) of the zero-padded rows ``a * b``, range-scaled."""
    norm, scale = one_level._row_range(plan, a, b)
    return _spectrum(plan, a, b, scale, norm)


def _spectrum(plan: one_level._Plan, a: torch.Tensor, b: torch.Tensor | None, scale: torch.Tensor | None,
              norm: torch.Tensor | None, impulse: torch.Tensor | None = None) -> one_level._Signal:
    """Both levels of the transform of the rows ``(a * b + impulse·δ) * scale``, kept with the range they were
    scaled by."""
    rows = first_level(a, b, scale, plan, impulse=impulse)
    return one_level._Signal(one_level._fft(rows, inverse=False), scale, norm)


def _filter_spectrum(k: torch.Tensor, plan: one_level._Plan, bidirectional: bool,
                     k_sumsq: torch.Tensor | None = None, skip: torch.Tensor | None = None) -> one_level._Signal:
    """The filter's spectrum (1, h, n2, n1) in two-level word order (packed, range-scaled; ``k_sumsq``: k's
    rows' sums of squares, if known); bidirectional filters (h, 2L) as their combined length-n row.

    ``skip`` (h,): the skip weight D, folded into the filter as lag 0 (``conv(x, k) + D·x = conv(x, k + D·δ)``),
    so the last level need not read the signal and its gate a second time for the skip term: at 1M that read
    cost 0.09 ms of the last level's 0.80 without gates and 0.73 of 1.54 ms with both gates (H200,
    kernels/fftconv/NOTES.md "Twenty-first session")."""
    norm, scale = one_level._row_range(plan, k.unsqueeze(0), sumsq=k_sumsq, impulse=skip)
    rows = combined_filter(k.float(), plan.L, plan.n, True) if bidirectional else k  # lag 0 at index 0 either way
    return _spectrum(plan, rows.unsqueeze(0), None, scale, norm, skip)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, H, n2, n1) rows as (B, H, M) packed spectra (a view)."""
    return x.flatten(-2)


def _product_inverse(plan: one_level._Plan, a: one_level._Signal, b: one_level._Signal, out: torch.Tensor,
                     conj_b: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, n_inv): the range-scaled product of two two-level spectra, formed in ``out`` (batch-summed
    when ``out`` has batch 1), after cuFFT's inverse level (:func:`last_level` finishes it), and the
    factor its rows must be multiplied by."""
    factor, n_inv = one_level._half_product_scales(plan, a, b, batch_summed=out.shape[0] != a.spectrum.shape[0])
    one_level.packed_product(_flat(a.spectrum), _flat(b.spectrum), _flat(out), conj_b, factor,
                             inner_tile=_level(a.spectrum.shape[-2]))
    return one_level._fft(out, inverse=True), n_inv


def forward_group(plan: one_level._Plan, u, k, D, pregate, postgate, bidirectional: bool, out, y,
                  keep_filter: bool = False, k_sumsq: torch.Tensor | None = None,
                  kf: one_level._Signal | None = None) -> one_level._Signal | None:
    """One channel group of the forward: writes ``out`` (and ``y``, the pre-postgate output, if given);
    returns the filter's spectrum if ``keep_filter`` (for :func:`backward_group`), else None. The skip term
    ``D`` rides in the filter's spectrum (:func:`_filter_spectrum`), which the backward then uses as it is;
    ``kf``: that spectrum already made (for these channels), instead of transforming ``k`` and ``D``."""
    x = _signal(plan, u, pregate)
    if kf is None:
        kf = _filter_spectrum(k, plan, bidirectional, k_sumsq, skip=D)
    y_rows, n_inv = _product_inverse(plan, x, kf, x.spectrum)
    del x
    last_level(y_rows, n_inv, postgate, out, z=y)
    return kf if keep_filter else None


def backward_group(plan: one_level._Plan, bidirectional: bool, grad, u, k, D, pregate, postgate, du, dk, dD,
                   d_pre, kf: one_level._Signal | None = None) -> None:
    """Gradients of one channel group on two levels, written into the given slices (``dk``/``dD``/``d_pre``
    None: not needed), as :func:`.cufft_fused._backward_group` computes them on one; ``kf``: the forward's
    filter spectrum with ``D`` folded in (:func:`forward_group`), recomputed when None. The input's gradient
    takes its skip term through it: correlating with k + D·δ adds D times the gradient."""
    g = _signal(plan, grad, postgate)
    if dD is not None:  # sum over time of (u * pregate) * (grad * postgate), unscaled, in fp32
        dD.copy_(one_level.pad_product_dot(u, pregate, u.shape[-1], grad, postgate, store=False)[1].sum(dim=0))
    if dk is not None:
        x = _signal(plan, u, pregate)
        cross = g.spectrum.new_empty((1, *g.spectrum.shape[1:]))
        dk_rows, n_inv = _product_inverse(plan, g, x, cross, conj_b=True)
        del x, cross
        if bidirectional:  # every lag of the combined row, then split into the two filters
            lags = dk_rows.new_empty((1, dk.shape[0], plan.n), dtype=torch.float32)
            last_level(dk_rows, n_inv, None, lags)
            dk.copy_(_uncombine(lags[0], plan.L, True))
        else:  # the first L lags, scaled and cast
            last_level(dk_rows, n_inv, None, dk.unsqueeze(0))
        del dk_rows
    if kf is None:
        kf = _filter_spectrum(k, plan, bidirectional, skip=D)
    dx_rows, n_inv = _product_inverse(plan, g, kf, g.spectrum, conj_b=True)
    del g
    last_level(dx_rows, n_inv, pregate, du, m2=u if d_pre is not None else None, out2=d_pre)
