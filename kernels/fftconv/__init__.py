"""Long FFT convolution: the dispatch point, the PyTorch reference and the Triton path.

``fftconv`` runs the Triton Monarch-FFT kernels (forward and backward) when :func:`use_triton` says
so for ``op="fftconv"`` and :func:`fftconv_ref` otherwise. On CUDA that needs an opt-in
(``GENOMIX_TRITON_OPS=fftconv``): the kernels are slower than cuFFT so far (BENCHMARKS.md). Shapes are (batch, channels, length).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..dispatch import use_triton
from .reference import fftconv_ref

if TYPE_CHECKING:
    from .plan import Tuning

__all__ = ["fftconv", "fftconv_ref", "fftconv_triton"]


def _check(u: torch.Tensor, k: torch.Tensor, D, pregate, postgate, bidirectional: bool) -> None:
    if u.dim() != 3 or u.shape[-1] < 1:
        raise ValueError(f"fftconv: u must be (batch, channels, length >= 1), got {tuple(u.shape)}")
    B, H, L = u.shape
    want_k = (H, 2 * L) if bidirectional else (H, L)
    if tuple(k.shape) != want_k:
        form = "bidirectional (H, 2L) = concat(k_fwd, k_rev)" if bidirectional else "causal (H, L)"
        raise ValueError(f"fftconv: {form} filter must be {want_k} for u {tuple(u.shape)}, got {tuple(k.shape)}")
    if D is not None and tuple(D.shape) != (H,):
        raise ValueError(f"fftconv: D must be ({H},), got {tuple(D.shape)}")
    for name, gate in (("pregate", pregate), ("postgate", postgate)):
        if gate is not None and tuple(gate.shape) != (B, H, L):
            raise ValueError(f"fftconv: {name} must be {(B, H, L)} like u, got {tuple(gate.shape)}")


def fftconv_triton(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
    fp32_intermediate: bool = False,
    tuning: Tuning | str | None = None,
) -> torch.Tensor:
    """The Triton path of :func:`fftconv` (differentiable in u, k, D and both gates).

    ``tuning``: a :class:`.plan.Tuning`, the name of one in ``plan.VARIANTS`` ("v1", "v2"), or None
    for :func:`.plan.current_tuning` (``plan.DEFAULT_VARIANT`` unless ``GENOMIX_FFTCONV_VARIANT``).
    """
    from .autograd import FFTConvFn  # imports triton: only when this path is taken
    from .plan import VARIANTS, current_tuning

    if tuning is None:
        tuning = current_tuning()
    elif isinstance(tuning, str):
        tuning = VARIANTS[tuning]

    def c(t):
        return None if t is None else t.contiguous()

    return FFTConvFn.apply(
        c(u), c(k), c(D), c(pregate), c(postgate), bool(bidirectional), bool(fp32_intermediate), tuning
    )


def fftconv(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
    fp32_intermediate: bool = False,
) -> torch.Tensor:
    """``postgate * (irfft(rfft(u*pregate, 2L) * rfft(k, 2L))[..., :L] + u*pregate*D)``.

    u, pregate, postgate: (B, H, L); k: (H, L) causal, or (H, 2L) = concat(k_fwd, k_rev) with
    ``bidirectional=True`` (M2's non-causal form); D: (H,). Any L >= 1; fp32/bf16/fp16 inputs with
    fp32 accumulation; output in u's dtype. ``fp32_intermediate=True`` makes the Triton path use
    fp32-accurate (three-pass tf32) tensor-core products even for 16-bit inputs.
    """
    _check(u, k, D, pregate, postgate, bidirectional)
    if use_triton(u, k, D, pregate, postgate, op="fftconv"):
        return fftconv_triton(u, k, D, pregate, postgate, bidirectional, fp32_intermediate)
    return fftconv_ref(u, k, D, pregate, postgate, bidirectional, fp32_intermediate)
