"""How a length-L convolution is laid out for the Monarch-FFT kernels, and the constant matrices.

The FFT size is ``N = max(256, next_pow2(2L))``. Up to ``max_row`` points (default 4096) one program
keeps a whole sequence on chip as an ``A x Bd`` tile (``N = A*Bd``): a DFT along the rows (``F_A @ X``),
a twiddle, a DFT along the columns (``X @ F_Bd``), the pointwise product with the filter spectrum and
the adjoint steps back ("short" path, one kernel). Beyond that, ``N = N2 * N1`` with index
``n = n1 + N1*n2``: a column pass does the length-N2 DFT over ``n2`` (dense, on tensor cores) plus the
twiddle ``W_N^(n1*k2)``, a row pass runs the on-chip transform/multiply/inverse over each length-N1 row,
and a column pass inverts the first step and writes only the first L outputs ("long" path).

The transforms leave frequencies in a permuted order; :func:`spectrum_order` gives, for each stored
position, the frequency it holds, so the filter spectrum is permuted once (v1: torch rfft and a
gather; v2: computed by the same kernels, which leave it in that order) and the kernels never
un-permute anything.

:class:`Tuning` says which of the v2 changes a call uses (16-bit tensor-core operands, bf16 Z, the
two-step column DFT, the Triton filter spectrum) and its launch shapes; ``DEFAULT_VARIANT`` picks the
one used when a call names none.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch

from .reference import combined_filter

MIN_N = 256            # smallest tile the tensor-core dot accepts is 16 x 16
MAX_ROW = int(os.environ.get("GENOMIX_FFTCONV_MAX_ROW", "4096"))  # largest row one program keeps on chip
MIN_N2 = 32            # column-pass DFT length: its padded half must fill a 16-row dot
# (a, bd) of each on-chip row size; 8192 (short path only, 16-bit dot operands: 112 KB of shared
# memory on sm_90; with fp32 operands it overflows)
_ROW_SHAPES = {256: (16, 16), 512: (16, 32), 1024: (32, 32), 2048: (32, 64), 4096: (64, 64), 8192: (128, 64)}


@dataclass(frozen=True)
class Tuning:
    """Which v2 changes a call uses, and the launch shapes a GPU sweep can vary.

    ``dots16``: 16-bit tensor-core operands (fp32 accumulation), bf16, or fp16 with ``dots_fp16``
    (three more mantissa bits; overflows past 65504, so it needs inputs of moderate scale).
    ``bf16_z``: the column-pass intermediate Z stored in bf16. Both apply to 16-bit inputs only
    (fp32 inputs and ``fp32_intermediate`` keep fp32 operands at tf32x3 and an fp32 Z).
    ``two_level``: column DFTs of ``n2 >= two_level_min_n2`` points in two on-chip steps (256: both
    steps then fill a 16-point tensor-core tile; the CPU tests lower it to reach the kernels at small
    sizes). ``triton_spectrum``: the filter spectrum by the convolution's own transforms.
    ``col_elems``: complex points per two-step column program (``BC = col_elems // n2`` columns).
    ``row_warps = 0``: 4 warps up to 1024-point rows, else 8. ``short_max``: largest FFT done by the
    one-program short path (8192 = a 128x64 tile, with 16-bit operands only). ``max_row``: row length
    of the multi-pass path (0: ``MAX_ROW``); 2048 moves 256K to a 256-point (two-step) column pass.
    Short path only: ``half_tiles`` skips the half of the first forward and last inverse DFT step that
    multiplies zero padding or computes discarded outputs (tiles of 32 rows or more); ``pair_batch``
    convolves two batch elements of one channel per program as one complex row (B >= 2).
    """

    dots16: bool = False
    dots_fp16: bool = False
    bf16_z: bool = False
    two_level: bool = False
    triton_spectrum: bool = False
    two_level_min_n2: int = 256
    col_elems: int = 4096
    col_warps: int = 8
    row_warps: int = 0
    short_max: int = 4096
    max_row: int = 0
    half_tiles: bool = False
    pair_batch: bool = False


VARIANTS: dict[str, Tuning] = {
    "v1": Tuning(),
    "v2": Tuning(dots16=True, dots_fp16=True, two_level=True, triton_spectrum=True, short_max=8192),
    "v3": Tuning(dots16=True, dots_fp16=True, two_level=True, triton_spectrum=True, short_max=8192,
                 half_tiles=True, pair_batch=True),
}
# v2 keeps Z in fp32 and uses fp16 rather than bf16 operands: measured on CPU (float64 reference,
# gated bidirectional, bf16 inputs) bf16 operands raise the worst relative error from 3.3e-3 to
# 1.2e-2 and a bf16 Z to 1.0e-2, both past the 1e-2 budget; fp16 operands leave it at 3.4e-3.
# The variant a call uses unless it passes one (GENOMIX_FFTCONV_VARIANT overrides). v2 since 2026-12-01:
# correct on an H200 (bf16 <= 1.7e-3, fp32 <= 1.2e-6, forward and all gradients) and faster than v1 at
# every measured L (4.2 / 19.6 / 36.1 ms vs 17.0 / 28.6 / 59.8 ms at 4K / 256K / 1M). v3 since 2026-12-02
# (seventh session): v2 plus the short path's half tiles and batch pairs, which change only the short path;
# at 4K (B = H = 256, bf16) 2.48 ms forward / 7.34 ms forward+backward against v2's 4.20 / 12.67 in the
# same run, correct on the H200 (bf16 <= 2.4e-3, fp32 <= 5.8e-7 with an odd batch and B = 1).
DEFAULT_VARIANT = "v3"


def plan_for(L: int, tuning: Tuning, prec: str) -> Plan:
    """The plan of one call: ``tuning.short_max`` applies only with 16-bit dot operands."""
    sixteen = tuning.dots16 and prec == "tf32"
    return make_plan(L, max_row=tuning.max_row or None, short_max=tuning.short_max if sixteen else None)


def current_tuning() -> Tuning:
    """The tuning of ``GENOMIX_FFTCONV_VARIANT`` if set, else of ``DEFAULT_VARIANT``."""
    name = os.environ.get("GENOMIX_FFTCONV_VARIANT", DEFAULT_VARIANT)
    if name not in VARIANTS:
        raise ValueError(f"fftconv: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[name]


def col_split(n2: int) -> tuple[int, int]:
    """``n2 = Q * P`` for the two-step column DFT, Q <= P, both powers of two."""
    q = 1 << ((n2.bit_length() - 1) // 2)
    return q, n2 // q


@dataclass(frozen=True)
class Plan:
    """FFT size ``n`` split as ``n2`` column points times ``n1 = a*bd`` row points (``n2 == 1``: short)."""

    L: int
    n: int
    n2: int
    n1: int
    a: int
    bd: int

    @property
    def short(self) -> bool:
        return self.n2 == 1


def next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def make_plan(L: int, max_row: int | None = None, short_max: int | None = None) -> Plan:
    """Pick the FFT size and its split for sequences of length ``L`` (>= 1).

    ``short_max``: largest FFT kept whole on chip by one program (default: ``max_row``; 8192 only
    with 16-bit dot operands, see :func:`plan_for`).
    """
    max_row = MAX_ROW if max_row is None else max_row
    if max_row not in _ROW_SHAPES or max_row > 4096:
        raise ValueError(f"fftconv: max_row must be one of {sorted(_ROW_SHAPES)[:-1]}, got {max_row}")
    short_max = max_row if short_max is None else max(max_row, short_max)
    n = max(MIN_N, next_pow2(2 * L))
    if n <= short_max:
        n2, n1 = 1, n
    else:
        n = max(n, MIN_N2 * MIN_N)
        n2 = max(MIN_N2, n // max_row)
        n1 = n // n2
    a, bd = _ROW_SHAPES[n1]
    return Plan(L=L, n=n, n2=n2, n1=n1, a=a, bd=bd)


def row_order(a: int, bd: int) -> torch.Tensor:
    """Frequency held at each position ``ka*bd + kb`` of a row transform: ``ka + a*kb``."""
    ka = torch.arange(a).unsqueeze(1)
    kb = torch.arange(bd).unsqueeze(0)
    return (ka + a * kb).reshape(-1)


def spectrum_order(plan: Plan) -> torch.Tensor:
    """Frequency held at each stored position ``k2*n1 + j`` (int64, length ``n``)."""
    inner = row_order(plan.a, plan.bd)
    k2 = torch.arange(plan.n2).unsqueeze(1)
    return (k2 + plan.n2 * inner.unsqueeze(0)).reshape(-1)


def _dft(m: int, sign: float = -1.0) -> torch.Tensor:
    j = torch.arange(m, dtype=torch.float64)
    ang = sign * 2.0 * math.pi * torch.remainder(torch.outer(j, j), m) / m
    return torch.polar(torch.ones_like(ang), ang)


def _twiddle(rows: int, cols: int) -> torch.Tensor:
    """``W_{rows*cols}^(r*c)`` on a (rows, cols) grid."""
    r = torch.arange(rows, dtype=torch.float64).unsqueeze(1)
    c = torch.arange(cols, dtype=torch.float64).unsqueeze(0)
    m = rows * cols
    return torch.polar(torch.ones(rows, cols, dtype=torch.float64), -2.0 * math.pi * torch.remainder(r * c, m) / m)


@functools.lru_cache(maxsize=32)
def constants(
    plan_key: tuple[int, int, int], device: torch.device, dtype16: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """DFT matrices and twiddles (real and imaginary parts) for a plan's row tile and column pass.

    ``plan_key`` is ``(n2, a, bd)``. The row twiddle is ``W_{a*bd}^(b*ka)`` on the ``a x bd`` tile;
    ``fc`` is the dense n2-point DFT, ``fq``/``fp``/``t2`` (``t2 = W_n2^(kq*p)``, (Q, P)) the two-step
    one. Twiddles are fp32; the DFT matrices are fp32, or ``dtype16`` (16-bit dot operands).
    """
    n2, a, bd = plan_key
    mats = [("fa", _dft(a)), ("fb", _dft(bd))]
    twids = [("tw", _twiddle(a, bd))]
    if n2 > 1:
        mats.append(("fc", _dft(n2)))
        q, p = col_split(n2)
        mats += [("fq", _dft(q)), ("fp", _dft(p))]
        twids.append(("t2", _twiddle(q, p)))
    out: dict[str, torch.Tensor] = {}
    for name, mat in mats + twids:
        dtype = dtype16 if dtype16 is not None and name.startswith("f") else torch.float32
        out[name + "r"] = mat.real.to(dtype).contiguous().to(device)
        out[name + "i"] = mat.imag.to(dtype).contiguous().to(device)
    return out


_CHUNK_ELEMS = 1 << 26  # channels are processed in chunks of about this many spectrum points


@functools.lru_cache(maxsize=32)
def _hermitian_index(plan: Plan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each stored position: the rfft bin holding its frequency, and +1/-1 for conjugation.

    Cached per (plan, device): the profile at L=1M showed rebuilding it on the host and copying it
    over on every call costing about 2 ms per copy.
    """
    order = spectrum_order(plan).to(device)
    upper = order > plan.n // 2
    return torch.where(upper, plan.n - order, order), torch.where(upper, -1.0, 1.0)


def _stored_positions(plan: Plan) -> torch.Tensor:
    """Stored position of each frequency ``0..n-1``: the inverse of :func:`spectrum_order`."""
    pos = torch.empty(plan.n, dtype=torch.long)
    pos[spectrum_order(plan)] = torch.arange(plan.n)
    return pos


@functools.lru_cache(maxsize=32)
def _negated_positions(plan: Plan, device: torch.device) -> torch.Tensor:
    """For each stored position: the stored position of the negated frequency ``(n - f) mod n``."""
    return _stored_positions(plan)[(plan.n - spectrum_order(plan)) % plan.n].to(device)


def hermitian_part(sr: torch.Tensor, si: torch.Tensor, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W[f] + conj(W[-f])) / 2`` of a planar spectrum in stored order: the spectrum of the real part
    of ``W``'s inverse transform. Removes the ``i * T`` that batch-paired cross spectra carry."""
    neg = _negated_positions(plan, sr.device)
    return (sr + sr[:, neg]) * 0.5, (si - si[:, neg]) * 0.5


@functools.lru_cache(maxsize=32)
def _rfft_positions(plan: Plan, device: torch.device) -> torch.Tensor:
    """Stored position of each frequency ``0..n/2`` (cached per device)."""
    return _stored_positions(plan)[: plan.n // 2 + 1].to(device)


def filter_spectrum(
    k: torch.Tensor, plan: Plan, bidirectional: bool, conj: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filter's spectrum in the kernels' stored order, scaled by 1/n: planar fp32 (H, n).

    Computed once per call and shared by the whole batch; the channels go in chunks so that the
    temporary full-length filter and its rfft stay small next to the two outputs.
    """
    H = k.shape[0]
    idx, sign = _hermitian_index(plan, k.device)
    if conj:
        sign = -sign
    sr = torch.empty(H, plan.n, device=k.device, dtype=torch.float32)
    si = torch.empty_like(sr)
    step = max(1, _CHUNK_ELEMS // plan.n)
    for h0 in range(0, H, step):
        kc = combined_filter(k[h0:h0 + step].float(), plan.L, plan.n, bidirectional)
        spec = torch.fft.rfft(kc, n=plan.n)[:, idx] / plan.n
        sr[h0:h0 + step] = spec.real
        si[h0:h0 + step] = spec.imag * sign
    return sr, si


def filter_grad(sr: torch.Tensor, si: torch.Tensor, plan: Plan, bidirectional: bool) -> torch.Tensor:
    """dk from the batch-summed cross spectrum ``sum_b conj(X_b) G_b`` (stored order, planar).

    Its inverse DFT is the circular cross-correlation ``dkc[j] = sum g[t] x[t-j]``; the causal filter
    takes lags ``0..L-1`` and the reversed half of a bidirectional one the lags ``n-L..n-1`` flipped.
    """
    H, L = sr.shape[0], plan.L
    pos = _rfft_positions(plan, sr.device)
    dk = torch.empty(H, 2 * L if bidirectional else L, device=sr.device, dtype=torch.float32)
    step = max(1, _CHUNK_ELEMS // plan.n)
    for h0 in range(0, H, step):
        dkc = torch.fft.irfft(torch.complex(sr[h0:h0 + step, pos], si[h0:h0 + step, pos]), n=plan.n)
        dk[h0:h0 + step, :L] = dkc[:, :L]
        if bidirectional:
            dk[h0:h0 + step, L:] = dkc[:, plan.n - L:].flip(-1)
    return dk
