"""The long FFT convolution on cuFFT with its elementwise work fused into Triton kernels.

Same formula, inputs and gradients as :func:`.reference.fftconv_ref`. The size-2L real transforms run as
cuFFT complex transforms of size L on the same buffers viewed as complex ("packed" spectra,
:mod:`.packed_kernels`), which on an H200 take about half the time of torch's real transforms and need
no clone of the inverse's input. Everything around them is fused into Triton passes: the gated,
zero-padded input is written once (:mod:`.epilogue_kernels`); unpacking the spectra, their product (or
the batch-summed cross spectrum of the filter gradient) and repacking for the inverse are one pass; the
inverse runs unnormalised with its 1/n, the skip term and the gates applied by one epilogue pass that
writes the output in its final dtype (forward) or both input gradients (backward); the skip weight's
gradient is summed while the backward pads the gated input.

Between forward and backward it keeps its inputs (and the pre-gate output, when the post-gate needs a
gradient), the filter's packed spectrum when it is half precision, and when the call is small
(:data:`SAVE_SPECTRA_MAX_ELEMENTS`) both spectra, so the backward runs three or four transforms instead
of five.

Spectra of 16-bit inputs are half precision (complex32, cuFFT's fp16 transforms): each row is scaled by
a power of two chosen from its L2 norm so that no value of any transform stage can exceed
:data:`HALF_RANGE` (the arithmetic in two small kernels, :mod:`.scale_kernels`), and the scale is undone
in fp32 after the inverse transform. This halves the bytes of every pass and every transient buffer;
``fp32_intermediate=True`` keeps fp32 spectra.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import triton

from .. import dispatch
from ..transpose import unit_stride_rows
from . import three_level, two_level
from .epilogue_kernels import DOT_NONE, DOT_OTHER, DOT_SQUARE, epilogue_kernel, pad_product_kernel
from .packed_kernels import packed_product_kernel
from .reference import _uncombine, combined_filter
from .scale_kernels import product_scales_kernel, row_range_kernel

# torch warns once per process that complex32 is experimental; the handful of ops used here (views,
# empty, cuFFT transforms, copies) are the supported ones, and the GPU check covers them.
warnings.filterwarnings("ignore", message="ComplexHalf support is experimental")

#: Time steps per program; 4 warps move 1024 fp32 values per program in 16-byte vectors.
BLOCK, NUM_WARPS = 1024, 4
#: Time steps per program of the row-norm pass, which only reads: 4x the padding passes' block, so that a
#: bf16 row's program moves as many bytes as an fp32 one's would at 1024 (the 1024-step pass read bf16
#: rows at ~2.7 TB/s, fp32 ones at ~4.4 TB/s; H200, 1M).
SUMSQ_BLOCK = 4096
#: Rows (or channels) per program of the range-scale kernels (:mod:`.scale_kernels`), and the block partial
#: sums they read at a time.
SCALE_ROWS, SCALE_PARTS = 128, 32
#: Frequency pairs per program of the packed product (each pair: four complex loads per input, two stores),
#: its warps, and the output rows each program takes (its twiddles are computed once for all of them).
#: Swept on an H200 at (1, 256, 1M) (``kernels/bench_packed_product.py``): complex32 0.83 ms (3.9 TB/s)
#: against 1.16 ms at 8 warps; complex64 1.53-1.56 ms (4.2 TB/s); every shape within 4 % of the best. In
#: two-level word order (``kernels/bench_two_level.py --products``, fourteenth session) 16 rows instead of 8
#: took 0.861 -> 0.783 ms at (32, 256, 32K) and 0.845 -> 0.819 ms at (1, 256, 1M).
PACKED_BLOCK, PACKED_WARPS, PACKED_ROWS = 256, 4, 16

#: Inputs whose spectra are kept in half precision unless ``fp32_intermediate`` is asked for: their
#: output is rounded to 16 bits anyway, and fp16 spectra halve the bytes of every pass and every
#: transient buffer (cuFFT's fp16 transforms need power-of-two sizes: such rows are padded to one).
HALF_SPECTRA_INPUTS = (torch.bfloat16, torch.float16)
#: Half-precision rows are scaled by powers of two so that no value of a spectrum, nor of any stage of
#: the transforms that make or invert it, exceeds this bound (fp16 overflows above 65504); see
#: :func:`_row_range`.
HALF_RANGE = 2.0 ** 14


def _bh_strides(t: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else (t.stride(0), t.stride(1))


def _launch_pad_product(a, b, n, *, other=None, other_gate=None, square=False, scale=None, dtype=torch.float32,
                        store=True, block=BLOCK):
    """(padded rows or None, per-block sums (B, H, nblk) or None): see :func:`pad_product_dot`."""
    a, b, other, other_gate = (unit_stride_rows(t) for t in (a, b, other, other_gate))
    batch, channels, length = a.shape
    out = torch.empty(batch, channels, n, dtype=dtype, device=a.device) if store else None
    nblk = triton.cdiv(n if store else length, block)
    dot = DOT_SQUARE if square else (DOT_OTHER if other is not None else DOT_NONE)
    dots = torch.empty(batch, channels, nblk, dtype=torch.float32, device=a.device) if dot != DOT_NONE else None
    first = next(t for t in (out, dots) if t is not None)
    pad_product_kernel[(batch * channels * nblk,)](
        a, a if b is None else b, first, first if other is None else other,
        first if other_gate is None else other_gate, first if dots is None else dots,
        first if scale is None else scale, channels, length, n, nblk, *_bh_strides(a), *_bh_strides(b),
        *_bh_strides(other), *_bh_strides(other_gate), HAS_B=b is not None, HAS_SCALE=scale is not None,
        HAS_GATE=other_gate is not None, STORE=store, DOT=dot, BLOCK=block, num_warps=NUM_WARPS,
    )
    return out, dots


def pad_product(a: torch.Tensor, b: torch.Tensor | None, n: int, scale: torch.Tensor | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, n) rows ``a * b * scale`` in the first L = a.shape[-1] steps, zeros after (n >= L), in
    ``dtype``; ``scale`` is None or one fp32 factor per row, a contiguous (B, H) tensor."""
    return _launch_pad_product(a, b, n, scale=scale, dtype=dtype)[0]


def pad_product_dot(a: torch.Tensor, b: torch.Tensor | None, n: int, other: torch.Tensor,
                    other_gate: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                    dtype: torch.dtype = torch.float32, store: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`pad_product` (None unless ``store``) and, per row, ``sum over time of a * b * other *
    other_gate`` (B, H) fp32 (unscaled a * b), where ``other`` and ``other_gate`` (None: no factor) are
    (B, H, L) tensors like ``a``, each read in its own dtype: the four factors meet in fp32, so no product
    of two of them is rounded to 16 bits first (where the sum cancels, that rounding cost the skip
    weight's gradient up to 2e-2 of its norm: H200 GPU check, B = 1, H = 3, L = 100003)."""
    if any(t is not None and t.shape != a.shape for t in (other, other_gate)):
        raise ValueError(f"pad_product_dot: other and other_gate must be {tuple(a.shape)} tensors")
    padded, dots = _launch_pad_product(a, b, n, other=other, other_gate=other_gate, scale=scale, dtype=dtype,
                                       store=store)
    return padded, dots.sum(dim=2)


def epilogue(
    y: torch.Tensor, n_inv: float | torch.Tensor, a: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor | None,
    m1: torch.Tensor | None, out1: torch.Tensor, m2: torch.Tensor | None = None, out2: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> None:
    """Write ``zv = y[..., :L] * n_inv + a * b * D`` (L = a.shape[-1]) as ``out1 = zv * m1``, and if given
    ``out2 = zv * m2`` and ``z = zv``, each in its own dtype (``b``/``D``/``m1`` None: no factor / no term).
    ``n_inv`` is one number or one fp32 factor per row, a contiguous (B, H) tensor.

    Outputs are (B, H, L) tensors or channel slices of larger ones, all with the same strides."""
    if not y.is_contiguous():
        raise ValueError("epilogue: y must be a contiguous (B, H, N >= L) tensor (an inverse FFT's output)")
    outputs = [t for t in (out1, out2, z) if t is not None]
    if any(t.stride() != out1.stride() or t.stride(-1) != 1 for t in outputs):
        raise ValueError("epilogue: outputs must share strides, with a unit stride in time")
    a, b, m1, m2 = (unit_stride_rows(t) for t in (a, b, m1, m2))
    batch, channels, length = a.shape
    nblk = triton.cdiv(length, BLOCK)
    row_ninv = isinstance(n_inv, torch.Tensor)
    epilogue_kernel[(batch * channels * nblk,)](
        y, n_inv if row_ninv else y, a, a if b is None else b, a if D is None else D, a if m1 is None else m1,
        a if m2 is None else m2, out1, out1 if out2 is None else out2, out1 if z is None else z,
        channels, length, nblk, 1.0 if row_ninv else n_inv, y.stride(1), *_bh_strides(a), *_bh_strides(b),
        *_bh_strides(m1), *_bh_strides(m2), *_bh_strides(out1), ROW_NINV=row_ninv, HAS_B=b is not None,
        HAS_D=D is not None, HAS_M1=m1 is not None, HAS_M2=m2 is not None, STORE_Z=z is not None,
        BLOCK=BLOCK, num_warps=NUM_WARPS,
    )


#: Largest batch x channels x length one pass transforms at once. Longer convolutions run over channel
#: groups, so each of the ~5 transient (B, h, 2L) fp32/complex buffers of a pass stays bounded: at L = 4M
#: that is what lets a HyenaDNA training step fit in 80 GB.
INFERENCE_ELEMENTS_PER_PASS = 1 << 28
#: Training calls also bound channels x length per group: the backward's filter-sized transients (the
#: filter's spectrum kept from the forward, the batch-summed cross spectrum, dk) do not shrink with the
#: batch, and at batch 1 they are most of its memory. A split forward keeps no filter spectrum (each
#: group's backward recomputes it), which costs time. H200, B·H·L = 256M, bf16, two levels
#: (kernels/bench_fftconv.py, fourteenth session), the call's own peak memory (above what the caller holds)
#: over the reference's: at 1M (H·L = 2^28, 4 groups) 0.24x instead of 0.56x (7.0 GiB in one group), at
#: 4M 0.24x instead of 0.64x, for forward+backward 3.54x / 3.60x the reference's speed instead of 4.46x /
#: 3.34x (square level); 32K and 256K (H·L <= 2^26) stay in one group at 0.39x / 0.36x. Splitting those
#: as well (B·H·L <= 2^26) took 32K's forward+backward from 3.37x to 2.70x for memory it did not need.
TRAINING_FILTER_ELEMENTS_PER_PASS = 1 << 26


def _channel_groups(u: torch.Tensor, training: bool = False) -> list[slice]:
    batch, channels, length = u.shape
    step = INFERENCE_ELEMENTS_PER_PASS // max(1, batch * length)
    if training:
        step = min(step, TRAINING_FILTER_ELEMENTS_PER_PASS // max(1, length))
    step = max(1, min(channels, step))
    return [slice(h, min(h + step, channels)) for h in range(0, channels, step)]


def _rows(t: torch.Tensor | None, group: slice) -> torch.Tensor | None:
    """Channels ``group`` of a (B, H, L) tensor or of an (H, ...) parameter; None stays None."""
    if t is None:
        return None
    return t[group] if t.dim() < 3 else t[:, group]


def _fft(z: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Unnormalised complex transform along the last axis. cuFFT runs complex32 natively; other
    devices have no half-precision FFT, so there it runs in complex64 and is rounded back (the CPU tests
    thereby cover the kernels' fp16 spectra and range scaling, the GPU check cuFFT's own arithmetic)."""
    emulated = z.dtype == torch.complex32 and z.device.type != "cuda"
    w = z.to(torch.complex64) if emulated else z
    out = torch.fft.ifft(w, norm="forward") if inverse else torch.fft.fft(w)
    return out.to(torch.complex32) if emulated else out


def real_spectrum(x_padded: torch.Tensor) -> torch.Tensor:
    """Packed spectrum (..., N/2) complex64 (complex32 for fp16 rows) of real rows (..., N), N even: one
    complex transform of half the size on the same buffer viewed as complex (:mod:`.packed_kernels`)."""
    return _fft(torch.view_as_complex(x_padded.unflatten(-1, (-1, 2))), inverse=False)


def real_inverse(packed: torch.Tensor) -> torch.Tensor:
    """Real rows (..., N) fp32 (fp16 for complex32) of the unnormalised inverse transform of a packed
    Hermitian spectrum."""
    return torch.view_as_real(_fft(packed, inverse=True)).flatten(-2)


#: The integer word each complex dtype moves as in :mod:`.packed_kernels`.
_COMPLEX_WORDS = {torch.complex64: torch.int64, torch.complex32: torch.int32}


def _complex_words(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor's values as one integer word each (same shape, strides in complex elements)."""
    return torch.view_as_real(t).view(_COMPLEX_WORDS[t.dtype]).squeeze(-1)


#: A spectrum broadcast over the batch (a filter's) larger than this share of the L2 cache is read with the
#: output rows numbered channel-major, so it comes from HBM once per channel; smaller ones stay in L2 anyway
#: and keep batch-major rows (a program's rows then lie next to each other in memory). H200, one run
#: (kernels/fftconv/NOTES.md, twelfth session): channel-major took the forward 5.55 -> 5.47 ms at 256K (a
#: 256 MB spectrum) and 4.94-5.07 -> 4.89 ms at 32K (32 MB), but 3.04 -> 3.08 ms at 4K (2 MB).
BROADCAST_L2_SHARE = 0.25


def _channel_major_rows(b: torch.Tensor, batch: int, n_sum: int) -> bool:
    """Whether :func:`packed_product` numbers its rows channel-major: see BROADCAST_L2_SHARE."""
    broadcast = b.shape[0] == 1 and batch > 1 and n_sum == 1
    return broadcast and b[0].numel() * b.element_size() > BROADCAST_L2_SHARE * dispatch.l2_cache_bytes(b.device)


def packed_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, conj_b: bool = False,
                   factor: torch.Tensor | None = None, inner_tile: tuple[int, int] | None = None) -> torch.Tensor:
    """``out`` = packed spectrum of ``factor * unpack(a) * unpack(b)`` (``conj`` of b if ``conj_b``), each
    (·, h, M), complex64 or complex32, computed in fp32; ``factor``: None or one fp32 number per row of
    ``a``, a contiguous (B, h) tensor.

    ``b`` with batch 1 is broadcast over a's batch (a filter spectrum). ``out`` with batch 1 and a with
    batch B sums the B products (a batch-summed cross spectrum, as the filter gradient needs). ``out``
    may be ``a`` itself (in place) when their batches match. ``inner_tile`` (TA, TB): the spectra are in the
    two-level word order of :mod:`.row_kernels` with a TA·TB-point Triton level instead of natural order."""
    batch, channels, m = a.shape
    n_sum = batch // out.shape[0]
    if out.shape[0] * n_sum != batch or b.shape[0] not in (1, batch) or (n_sum > 1 and b.shape[0] != batch):
        raise ValueError(f"packed_product: batches a {batch}, b {b.shape[0]}, out {out.shape[0]} do not combine")
    if a.dtype not in _COMPLEX_WORDS or any(t.dtype != a.dtype or t.stride(-1) != 1 for t in (a, b, out)):
        raise ValueError("packed_product: complex64 or complex32 spectra of one dtype, unit stride along frequency")
    if factor is not None and (factor.shape != (batch, channels) or not factor.is_contiguous()):
        raise ValueError(f"packed_product: factor must be a contiguous {(batch, channels)} tensor")
    aw, bw, outw = (_complex_words(t) for t in (a, b, out))
    b_batch_stride = 0 if b.shape[0] == 1 and batch > 1 else bw.stride(0)
    n_index = m // 2 + 1
    nblk = triton.cdiv(n_index, PACKED_BLOCK)
    n_rows = out.shape[0] * channels
    rows_per_program = min(PACKED_ROWS, n_rows)
    packed_product_kernel[(triton.cdiv(n_rows, rows_per_program) * nblk,)](
        aw, bw, outw, aw if factor is None else factor, channels, m, n_index, nblk, n_rows, rows_per_program, n_sum,
        2 * math.pi / (2 * m),
        aw.stride(0), aw.stride(1), b_batch_stride, bw.stride(1), outw.stride(0), outw.stride(1),
        CONJ_B=conj_b, HAS_FACTOR=factor is not None, HALF=a.dtype == torch.complex32,
        INNER_A=inner_tile[0] if inner_tile else 0, INNER_B=inner_tile[1] if inner_tile else 0,
        H_MAJOR=_channel_major_rows(b, batch, n_sum), BLOCK=PACKED_BLOCK,
        num_warps=PACKED_WARPS,
    )
    return out


@dataclass(frozen=True)
class _Plan:
    """Transform size and spectrum precision of one call: n = 2L for fp32 spectra; for half-precision
    spectra the next power of two >= 2L (cuFFT's fp16 transforms need one; zero padding beyond 2L - 1
    changes nothing in the first L outputs)."""

    L: int
    half: bool

    @property
    def n(self) -> int:
        return 2 * (1 << (self.L - 1).bit_length()) if self.half else 2 * self.L

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.half else torch.float32


@dataclass
class _Signal:
    """The packed spectrum of real rows; for half spectra also the power-of-two factor the rows were
    multiplied by before the transform and their L2 norms (each (B or 1, h) fp32), else None."""

    spectrum: torch.Tensor
    scale: torch.Tensor | None = None
    norm: torch.Tensor | None = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return self.spectrum, self.scale, self.norm

    def rows(self, group: slice) -> _Signal:
        """Channels ``group`` of a filter's signal (batch 1): every part is per channel."""
        return _Signal(*(None if t is None else t[:, group] for t in self.tensors()))


def _row_range(plan: _Plan, a: torch.Tensor, b: torch.Tensor | None = None, sumsq: torch.Tensor | None = None,
               impulse: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(L2 norms, range scales) of the rows ``a * b`` (B, h, taps) for half spectra; (None, None) for fp32.
    ``sumsq``: the rows' sums of squares, (B·h,) fp32, when the caller has them (no pass over the rows).
    ``impulse`` (h,): a value added to one sample of each row of channel h; the norms are then the bound
    |row| + |impulse| (triangle inequality), which every use of them below takes as an upper bound.

    The scale is the largest power of two that keeps the scaled row's spectrum, and every stage of its
    transform, within HALF_RANGE: each such value is a sum of the row's samples times unit twiddles, so it
    is at most their L1 norm, and ``|x|_1 <= sqrt(taps) |x|_2`` (with the impulse, ``|x|_1 + |impulse| <=
    sqrt(taps) (|x|_2 + |impulse|)``). Powers of two: scaling is exact and only moves the range. One pass
    reads the rows for block sums of squares, one small kernel finishes them."""
    if not plan.half:
        return None, None
    if sumsq is not None:
        partials = sumsq.reshape(*a.shape[:2], 1)
    else:
        partials = _launch_pad_product(a, b, a.shape[-1], square=True, store=False, block=SUMSQ_BLOCK)[1]
    rows, nblk = partials.shape[0] * partials.shape[1], partials.shape[2]
    norm = torch.empty(partials.shape[:2], dtype=torch.float32, device=a.device)
    scale = torch.empty_like(norm)
    row_range_kernel[(triton.cdiv(rows, SCALE_ROWS),)](
        partials, norm if impulse is None else impulse, norm, scale, rows, a.shape[1], nblk,
        HALF_RANGE / math.sqrt(a.shape[-1]), HAS_IMPULSE=impulse is not None, BLOCK_ROWS=SCALE_ROWS,
        BLOCK_PARTS=SCALE_PARTS, num_warps=NUM_WARPS,
    )
    return norm, scale


def _signal(plan: _Plan, a: torch.Tensor, b: torch.Tensor | None) -> _Signal:
    """The packed spectrum of the zero-padded rows ``a * b`` (B, h, L), range-scaled for half spectra."""
    norm, scale = _row_range(plan, a, b)
    return _Signal(real_spectrum(pad_product(a, b, plan.n, scale, plan.dtype)), scale, norm)


def _filter_signal(plan: _Plan, k: torch.Tensor, bidirectional: bool, k_sumsq: torch.Tensor | None = None) -> _Signal:
    """Packed spectrum (1, h, n/2) of the size-n circular filter; the causal filter is zero-padded by one pass.
    ``k_sumsq``: k's rows' sums of squares, if known (:func:`_row_range`)."""
    norm, scale = _row_range(plan, k.unsqueeze(0), sumsq=k_sumsq)
    if bidirectional:
        padded = combined_filter(k.float(), plan.L, plan.n, True)
        if scale is not None:
            padded = padded * scale[0, :, None]
        padded = padded.to(plan.dtype).unsqueeze(0)
    else:
        padded = pad_product(k.unsqueeze(0), None, plan.n, scale, plan.dtype)
    return _Signal(real_spectrum(padded), scale, norm)


def _spectral_product(plan: _Plan, a: _Signal, b: _Signal, out: torch.Tensor, conj_b: bool = False):
    """:func:`packed_product` of two signals into ``out`` (batch-summed when ``out`` has batch 1). Returns
    what the inverse transform of ``out`` must be multiplied by: 1/n, or for half spectra one factor per
    output row ((B or 1, h) fp32).

    Half spectra: the inverse's stages are bounded by the sum of |out|, which Cauchy-Schwarz and
    Parseval bound by ``2n |a|_2 |b|_2`` (the 2: packing adds two bins), summed over the batch when
    summed; ``out`` is scaled by a power of two that keeps that under HALF_RANGE."""
    if not plan.half:
        packed_product(a.spectrum, b.spectrum, out, conj_b)
        return 1.0 / plan.n
    factor, n_inv = _half_product_scales(plan, a, b, batch_summed=out.shape[0] != a.spectrum.shape[0])
    packed_product(a.spectrum, b.spectrum, out, conj_b, factor)
    return n_inv


def _half_product_scales(plan: _Plan, a: _Signal, b: _Signal, batch_summed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(factor per row of a, n_inv per output row) of a half-precision spectral product: see
    :func:`_spectral_product`. ``a`` has the full batch; ``b`` the same or 1 (broadcast)."""
    batch, channels = a.norm.shape
    factor = torch.empty(batch, channels, dtype=torch.float32, device=a.norm.device)
    n_inv = torch.empty(1 if batch_summed else batch, channels, dtype=torch.float32, device=a.norm.device)
    b_batch_stride = 0 if b.norm.shape[0] == 1 else channels
    product_scales_kernel[(triton.cdiv(channels, SCALE_ROWS),)](
        a.norm.contiguous(), b.norm.contiguous(), a.scale.contiguous(), b.scale.contiguous(), factor, n_inv, batch,
        channels, b_batch_stride, HALF_RANGE / (2 * plan.n), 1.0 / plan.n, SUMMED=batch_summed,
        BLOCK_H=SCALE_ROWS, num_warps=NUM_WARPS,
    )
    return factor, n_inv


#: Largest batch x channels x length whose gated input's packed spectrum (8 bytes per element at most) the
#: forward keeps for the backward, which then runs one transform fewer. Above it (e.g. HyenaDNA at L = 1M:
#: 1 GiB per layer in fp16) the backward recomputes it, so long-context training memory does not grow with
#: the batch. The filter's spectrum is kept too when it is half precision (channels x length x 4 bytes: as
#: large as the fp32 filter itself) and the call runs in one channel group: the backward then needs
#: neither its padding pass nor its transform. An fp32 filter spectrum (twice the filter) is kept only
#: under this bound, so fp32 calls at long lengths keep the reference's memory.
SAVE_SPECTRA_MAX_ELEMENTS = 1 << 26


def _forward(u, k, D, pregate, postgate, bidirectional: bool, plan: _Plan, keep_y: bool, keep_x: bool,
             keep_filter: bool, two_levels: bool = False, k_sumsq: torch.Tensor | None = None,
             training: bool = False, filter_signal: _Signal | None = None):
    """The output; if ``keep_y`` the pre-postgate output in u's dtype (for the postgate's gradient); the
    signals of the gated input (if ``keep_x``) and of the filter (if ``keep_filter``), else None each
    (keeping needs one channel group). ``two_levels``: run :mod:`.two_level`'s forward (the caller asks
    :func:`two_level.applies`), or :mod:`.three_level`'s where it applies and no filter spectrum is kept;
    ``training``: channel groups of a training call (:func:`_channel_groups`); ``filter_signal``: the
    filter's signal for all channels, as :func:`prepared_filter_signal` made it for this call's shape, used
    instead of transforming ``k``."""
    groups = _channel_groups(u, training)
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    y = torch.empty(u.shape, dtype=u.dtype, device=u.device) if keep_y else None
    kept_x = kept_filter = None
    if two_levels:  # keeps at most the filter's (two-level) spectrum
        for g in groups:
            if filter_signal is None and not keep_filter and three_level.applies(plan, u.shape[0]):
                three_level.forward_group(plan, _rows(u, g), _rows(k, g), _rows(D, g), _rows(pregate, g),
                                          _rows(postgate, g), bidirectional, _rows(out, g), _rows(y, g),
                                          _rows(k_sumsq, g))
                continue
            kept_filter = two_level.forward_group(plan, _rows(u, g), _rows(k, g), _rows(D, g), _rows(pregate, g),
                                                  _rows(postgate, g), bidirectional, _rows(out, g), _rows(y, g),
                                                  keep_filter, _rows(k_sumsq, g),
                                                  None if filter_signal is None else filter_signal.rows(g))
        return out, y, None, kept_filter
    for g in groups:
        x = _signal(plan, _rows(u, g), _rows(pregate, g))
        if filter_signal is None:
            kf = _filter_signal(plan, _rows(k, g), bidirectional, _rows(k_sumsq, g))
        else:
            kf = filter_signal.rows(g)
        product = torch.empty_like(x.spectrum) if keep_x else x.spectrum
        n_inv = _spectral_product(plan, x, kf, product)
        y_full = real_inverse(product)
        del product
        kept_x, kept_filter = (x if keep_x else None), (kf if keep_filter else None)
        del x, kf
        epilogue(y_full, n_inv, _rows(u, g), _rows(pregate, g), _rows(D, g), _rows(postgate, g), _rows(out, g),
                 z=_rows(y, g))
        del y_full
    return out, y, kept_x, kept_filter


def _plan(u: torch.Tensor, fp32_intermediate: bool) -> _Plan:
    return _Plan(u.shape[-1], u.dtype in HALF_SPECTRA_INPUTS and not fp32_intermediate)


class FFTConvCuFFTFn(torch.autograd.Function):
    """``postgate * (conv(u*pregate, k) + u*pregate*D)`` with cuFFT transforms and fused elementwise passes."""

    @staticmethod
    def forward(ctx, u, k, D, pregate, postgate, bidirectional, fp32_intermediate, k_sumsq):  # type: ignore[override]
        plan = _plan(u, fp32_intermediate)
        one_group = len(_channel_groups(u, training=True)) == 1
        small = u.numel() <= SAVE_SPECTRA_MAX_ELEMENTS
        two_levels = two_level.applies(plan)  # the forward's levels are the backward's
        # a three-level forward saves more than the backward's recomputed two-level filter spectrum costs
        keep_filter = one_group and (small or plan.half) and not (two_levels and three_level.applies(plan, u.shape[0]))
        out, y, x, kf = _forward(u, k, D, pregate, postgate, bidirectional, plan,
                                 postgate is not None and ctx.needs_input_grad[4],
                                 one_group and small, keep_filter, two_levels, k_sumsq, training=True)
        ctx.bidirectional, ctx.plan, ctx.two_levels = bidirectional, plan, two_levels
        kept = [t for signal in (x, kf) for t in (signal.tensors() if signal else (None, None, None))]
        ctx.save_for_backward(u, k, D, pregate, postgate, y, *kept)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        u, k, D, pregate, postgate, y, *kept = ctx.saved_tensors
        x, kf = (_Signal(*kept[i:i + 3]) if kept[i] is not None else None for i in (0, 3))
        need = ctx.needs_input_grad
        need_dpre = pregate is not None and need[3]
        d_post = None
        if postgate is not None and need[4]:
            d_post = torch.mul(grad, y, out=torch.empty_like(postgate))
        du = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        d_pre = torch.empty(u.shape, dtype=pregate.dtype, device=u.device) if need_dpre else None
        dk = torch.empty_like(k) if need[1] else None
        dD = torch.empty_like(D) if D is not None and need[2] else None
        for g in _channel_groups(u, training=True):
            group = (ctx.plan, ctx.bidirectional, grad[:, g], *(_rows(t, g) for t in (u, k, D, pregate, postgate)),
                     *(_rows(t, g) for t in (du, dk, dD, d_pre)))
            if ctx.two_levels:
                two_level.backward_group(*group, kf=kf)
            else:
                _backward_group(*group, x, kf)
        return du, dk, dD, d_pre, d_post, None, None, None


def _backward_group(plan: _Plan, bidirectional: bool, grad, u, k, D, pregate, postgate, du, dk, dD, d_pre,
                    x: _Signal | None = None, kf: _Signal | None = None) -> None:
    """Gradients of one channel group, written into the given slices (``dk``/``dD``/``d_pre`` None: not
    needed); the forward's signals are used when given, else recomputed."""
    half, n = plan.half, plan.n
    g_norm, g_scale = _row_range(plan, grad, postgate)
    # the gradient at the pre-postgate output, zero-padded (and range-scaled)
    g_padded = pad_product(grad, postgate, n, g_scale, plan.dtype)
    g = _Signal(real_spectrum(g_padded), g_scale, g_norm)
    del g_padded
    need_x = dk is not None and x is None
    if dD is not None or need_x:
        x_norm, x_scale = _row_range(plan, u, pregate) if need_x else (None, None)
        x_padded, dots = pad_product_dot(u, pregate, n, grad, postgate, x_scale, plan.dtype, store=need_x)
        if dD is not None:
            dD.copy_(dots.sum(dim=0))
        if need_x:
            x = _Signal(real_spectrum(x_padded), x_scale, x_norm)
        del x_padded
    if dk is not None:
        cross = g.spectrum.new_empty((1, *g.spectrum.shape[1:]))
        n_inv = _spectral_product(plan, g, x, cross, conj_b=True)
        del x
        dk_rows = real_inverse(cross)
        del cross
        if bidirectional:
            torch.mul(_uncombine(dk_rows[0], plan.L, True), n_inv[0, :, None] if half else n_inv, out=dk)
        else:  # the first L lags, scaled and cast in one pass (the epilogue without a skip term reads no input)
            epilogue(dk_rows, n_inv, dk.unsqueeze(0), None, None, None, dk.unsqueeze(0))
        del dk_rows
    if kf is None:
        kf = _filter_signal(plan, k, bidirectional)
    n_inv = _spectral_product(plan, g, kf, g.spectrum, conj_b=True)
    dx_full = real_inverse(g.spectrum)
    del g
    epilogue(dx_full, n_inv, grad, postgate, D, pregate, du, m2=u if d_pre is not None else None, out2=d_pre)


def _routes_filter_spectrum(plan: _Plan, batch: int) -> bool:
    """Whether a forward of this plan and batch transforms the filter on its own, so that a spectrum made
    once can stand in for it: not on three levels, which transform the filter inside the fused levels."""
    return not (two_level.applies(plan) and three_level.applies(plan, batch))


def prepared_filter_signal(k: torch.Tensor, D: torch.Tensor | None, like: torch.Tensor, bidirectional: bool = False,
                           fp32_intermediate: bool = False, k_sumsq: torch.Tensor | None = None) -> _Signal | None:
    """The filter's signal (all channels) that an inference forward of inputs shaped and typed like ``like``
    (B, H, L) computes from (k, D) on its way, for :func:`forward_prepared` to reuse across calls; None where
    that forward has no separate filter transform (three levels: the caller keeps calling
    :func:`fftconv_cufft`). On two levels the skip weight D is part of the spectrum; on one level the epilogue
    applies it."""
    plan = _plan(like, fp32_intermediate)
    if not _routes_filter_spectrum(plan, like.shape[0]):
        return None
    with torch.no_grad():
        if two_level.applies(plan):
            return two_level._filter_spectrum(k, plan, bidirectional, k_sumsq, skip=D)
        return _filter_signal(plan, k, bidirectional, k_sumsq)


def forward_prepared(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None, filter_signal: _Signal,
                     pregate: torch.Tensor | None = None, postgate: torch.Tensor | None = None,
                     bidirectional: bool = False, fp32_intermediate: bool = False) -> torch.Tensor:
    """:func:`fftconv_cufft`'s inference forward with the filter's signal from :func:`prepared_filter_signal`
    (made for u's batch and dtype) instead of transforming k again. No gradients."""
    plan = _plan(u, fp32_intermediate)
    return _forward(u, k, D, pregate, postgate, bool(bidirectional), plan, keep_y=False, keep_x=False,
                    keep_filter=False, two_levels=two_level.applies(plan), filter_signal=filter_signal)[0]


def fftconv_cufft(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
    fp32_intermediate: bool = False,
    k_sumsq: torch.Tensor | None = None,
) -> torch.Tensor:
    """The cuFFT-plus-fused-kernels path of :func:`genomix.kernels.fftconv.fftconv` (fp32/bf16/fp16 inputs).

    Spectra of 16-bit inputs are half precision (range-scaled fp16) unless ``fp32_intermediate``; fp32
    inputs always use fp32 spectra. Under ``no_grad`` (or with no input needing a gradient) nothing is
    kept for a backward. Long 16-bit calls take the two-level transforms of :mod:`.two_level`."""
    inputs = (u, k, D, pregate, postgate)
    if dispatch.records_graph(*inputs):
        return FFTConvCuFFTFn.apply(*inputs, bool(bidirectional), bool(fp32_intermediate), k_sumsq)
    plan = _plan(u, fp32_intermediate)
    return _forward(*inputs, bool(bidirectional), plan, keep_y=False, keep_x=False, keep_filter=False,
                    two_levels=two_level.applies(plan), k_sumsq=k_sumsq)[0]
