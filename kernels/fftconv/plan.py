"""How a length-L convolution is laid out for the Monarch-FFT kernels, and the constant matrices.

The FFT size is ``N = max(256, next_pow2(2L))``. Up to ``max_row`` points (default 4096) one program
keeps a whole sequence on chip as an ``A x Bd`` tile (``N = A*Bd``): a DFT along the rows (``F_A @ X``),
a twiddle, a DFT along the columns (``X @ F_Bd``), the pointwise product with the filter spectrum and
the adjoint steps back ("short" path, one kernel). Beyond that, ``N = N2 * N1`` with index
``n = n1 + N1*n2``: a column pass does the length-N2 DFT over ``n2`` (dense, on tensor cores) plus the
twiddle ``W_N^(n1*k2)``, a row pass runs the on-chip transform/multiply/inverse over each length-N1 row,
and a column pass inverts the first step and writes only the first L outputs ("long" path).

The transforms leave frequencies in a permuted order; :func:`spectrum_order` gives, for each stored
position, the frequency it holds, so the filter spectrum is permuted once in PyTorch and the kernels
never un-permute anything.
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
_ROW_SHAPES = {256: (16, 16), 512: (16, 32), 1024: (32, 32), 2048: (32, 64), 4096: (64, 64)}  # 64x128 overflows shared memory


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


def make_plan(L: int, max_row: int | None = None) -> Plan:
    """Pick the FFT size and its split for sequences of length ``L`` (>= 1)."""
    max_row = MAX_ROW if max_row is None else max_row
    if max_row not in _ROW_SHAPES:
        raise ValueError(f"fftconv: max_row must be one of {sorted(_ROW_SHAPES)}, got {max_row}")
    n = max(MIN_N, next_pow2(2 * L))
    if n <= max_row:
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


@functools.lru_cache(maxsize=32)
def constants(plan_key: tuple[int, int, int], device: torch.device) -> dict[str, torch.Tensor]:
    """DFT matrices (real and imaginary parts, fp32) for a plan's row tile and column pass.

    ``plan_key`` is ``(n2, a, bd)``. The row twiddle is ``W_{a*bd}^(b*ka)`` on the ``a x bd`` tile.
    """
    n2, a, bd = plan_key
    out: dict[str, torch.Tensor] = {}
    fa, fb = _dft(a), _dft(bd)
    ka = torch.arange(a, dtype=torch.float64).unsqueeze(1)
    b = torch.arange(bd, dtype=torch.float64).unsqueeze(0)
    tw = torch.polar(torch.ones(a, bd, dtype=torch.float64), -2.0 * math.pi * torch.remainder(ka * b, a * bd) / (a * bd))
    for name, mat in (("fa", fa), ("fb", fb), ("tw", tw)) + ((("fc", _dft(n2)),) if n2 > 1 else ()):
        out[name + "r"] = mat.real.to(torch.float32).contiguous().to(device)
        out[name + "i"] = mat.imag.to(torch.float32).contiguous().to(device)
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


@functools.lru_cache(maxsize=32)
def _rfft_positions(plan: Plan, device: torch.device) -> torch.Tensor:
    """Stored position of each frequency ``0..n/2`` (the inverse permutation, cached per device)."""
    pos = torch.empty(plan.n, dtype=torch.long)
    pos[spectrum_order(plan)] = torch.arange(plan.n)
    return pos[: plan.n // 2 + 1].to(device)


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
