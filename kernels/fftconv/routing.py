"""Which path an fftconv call takes: the on-chip Triton kernels, cuFFT with fused Triton passes, or the
PyTorch reference (one rule for :func:`fftconv` and for filters prepared once, :mod:`.prepared`)."""
from __future__ import annotations

import torch

from ..dispatch import use_triton

#: Longest L whose whole 2L-point transform one program keeps on chip (16-bit inputs, plan "short_max"
#: 8192). Measured on an H200 at L = 4096, B*H = 65536, bf16, with fp16 range scaling: 3.37x the reference
#: forward, 3.47x forward+backward (BENCHMARKS.md, "One range reduction per on-chip program").
#: Past it the Monarch kernels lose to cuFFT (0.87x and 0.60x the reference at 256K and 1M when measured).
ON_CHIP_MAX_L = 4096


#: Inputs the cuFFT path with fused Triton elementwise kernels takes (float64 stays on the reference).
_CUFFT_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def dispatch_name(u: torch.Tensor) -> str:
    """``"fftconv-short"`` for convolutions done whole on chip (16-bit, short), else ``"fftconv"``."""
    on_chip = u.shape[-1] <= ON_CHIP_MAX_L and u.dtype in (torch.float16, torch.bfloat16)
    return "fftconv-short" if on_chip else "fftconv"


def route(u: torch.Tensor, *tensors: torch.Tensor | None) -> str:
    """``"triton"`` (:func:`fftconv_triton`: the on-chip kernels, or the Monarch kernels where opted in),
    ``"cufft"`` (:func:`.cufft_fused.fftconv_cufft`) or ``"reference"`` for a call on ``u`` whose other
    inputs are ``tensors``."""
    if use_triton(u, *tensors, op=dispatch_name(u)):
        return "triton"
    if u.dtype in _CUFFT_FUSED_DTYPES and use_triton(u, *tensors, op="fftconv-cufft"):
        return "cufft"
    return "reference"
