"""Which path an fftconv call takes: the on-chip Triton kernels, cuFFT with fused Triton passes, or the
PyTorch reference (one rule for :func:`fftconv` and for filters prepared once, :mod:`.prepared`)."""
from __future__ import annotations

import torch

from .. import dispatch
from ..dispatch import use_triton

#: Longest L whose whole 2L-point transform one program keeps on chip (16-bit inputs, plan "short_max"
#: 8192). Measured on an H200 at L = 4096, B*H = 65536, bf16, with fp16 range scaling: 3.37x the reference
#: forward, 3.47x forward+backward (BENCHMARKS.md, "One range reduction per on-chip program").
#: Past it the Monarch kernels lose to cuFFT (0.87x and 0.60x the reference at 256K and 1M when measured).
ON_CHIP_MAX_L = 4096
#: The same on GPUs before Hopper (A100, A10, L4, RTX 30/40). There ptxas keeps the 8192-point programs'
#: 128 x 64 tiles in registers only by spilling: 1.2-2.8 KB per thread in the forward (row_conv_kernel) and
#: 1.4-9.4 KB in the backward (row_xspec_kernel, 32 registers on sm_80), against 64 B on sm_90; the 4096-point
#: programs (L <= 2048) spill at most ~1 KB, in the backward (BENCHMARKS.md, "Kernel portability").
#: Longer 16-bit calls there take the cuFFT path, as fp32 ones do. Chosen from those builds (kernels/
#: portability.py, offline): no pre-Hopper GPU has timed either path here.
PRE_HOPPER_ON_CHIP_MAX_L = 2048


def on_chip_max_l(u: torch.Tensor) -> int:
    """The longest L the on-chip kernels take for ``u``'s device (:data:`ON_CHIP_MAX_L`, or
    :data:`PRE_HOPPER_ON_CHIP_MAX_L` on a CUDA GPU before sm_90; off CUDA, the interpreter's tests keep the
    former)."""
    capability = dispatch.compute_capability(u)
    return PRE_HOPPER_ON_CHIP_MAX_L if capability is not None and capability < (9, 0) else ON_CHIP_MAX_L


#: Inputs the cuFFT path with fused Triton elementwise kernels takes (float64 stays on the reference).
_CUFFT_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def dispatch_name(u: torch.Tensor) -> str:
    """``"fftconv-short"`` for convolutions done whole on chip (16-bit, L up to :func:`on_chip_max_l`), else
    ``"fftconv"``."""
    on_chip = u.dtype in (torch.float16, torch.bfloat16) and u.shape[-1] <= on_chip_max_l(u)
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
