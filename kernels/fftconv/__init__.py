"""Long FFT convolution: the dispatch point, the PyTorch reference and the Triton path.

``fftconv`` runs the Triton Monarch-FFT kernels (forward and backward) when :func:`use_triton` says so. The
dispatch sees two ops (:func:`dispatch_name`): on-chip convolutions (16-bit inputs, ``L <= ON_CHIP_MAX_L``,
2048 before Hopper: :func:`.routing.on_chip_max_l`), where the kernels beat cuFFT and run by default on CUDA,
and the rest, where they are slower so far and need ``GENOMIX_TRITON_OPS=fftconv`` (BENCHMARKS.md). Those run
on cuFFT with the elementwise work fused into Triton kernels (op ``fftconv-cufft``, :mod:`.cufft_fused`;
16-bit calls from 32K to 4M there split each transform into Triton tensor-core levels at the time-domain ends
and a cuFFT level between them, :mod:`.two_level`; their forwards of batches from 32K to 128K pair batch
entries as one complex row and run all three levels and the product in Triton, :mod:`.three_level`) on CUDA,
and on the PyTorch reference :func:`fftconv_ref` elsewhere. Shapes are (batch, channels, length).
:func:`fftconv_update` is one new position of the causal form, for generation (:mod:`.step`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .prepared import PreparedFilter, fftconv_prepared, prepare_filter
from .reference import fftconv_ref
from .routing import ON_CHIP_MAX_L, dispatch_name, route
from .step import fftconv_update

if TYPE_CHECKING:
    from .plan import Tuning

__all__ = ["ON_CHIP_MAX_L", "PreparedFilter", "dispatch_name", "fftconv", "fftconv_prepared", "fftconv_ref",
           "fftconv_triton", "fftconv_update", "prepare_filter"]


def _check(u: torch.Tensor, k: torch.Tensor, D, pregate, postgate, bidirectional: bool) -> None:
    for name, t in (("u", u), ("k", k), ("D", D), ("pregate", pregate), ("postgate", postgate)):
        if t is not None and not t.is_floating_point():
            raise TypeError(f"fftconv: {name} must be a floating-point tensor (fp32, bf16 or fp16), got {t.dtype}")
    if u.dim() != 3 or min(u.shape) < 1:
        raise ValueError(f"fftconv: u must be (batch, channels, length), each at least 1, got {tuple(u.shape)}")
    B, H, L = u.shape
    want_k = (H, 2 * L) if bidirectional else (H, L)
    if tuple(k.shape) != want_k:
        form = "bidirectional (H, 2L) = concat(k_fwd, k_rev)" if bidirectional else "causal (H, L)"
        raise ValueError(f"fftconv: {form} filter must be {want_k} for u {tuple(u.shape)}, got {tuple(k.shape)}")
    if D is not None and tuple(D.shape) != (H,):
        raise ValueError(f"fftconv: D must be ({H},), got {tuple(D.shape)}")
    _check_gates("fftconv", (B, H, L), pregate, postgate)


def _check_gates(caller: str, shape: tuple[int, int, int], pregate, postgate) -> None:
    """Both gates, where given, are shaped like u (``shape``)."""
    for name, gate in (("pregate", pregate), ("postgate", postgate)):
        if gate is not None and tuple(gate.shape) != shape:
            raise ValueError(f"{caller}: {name} must be {shape} like u, got {tuple(gate.shape)}")


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

    ``tuning``: a :class:`.plan.Tuning`, the name of one in ``plan.VARIANTS`` ("v1", "v2", "v3"), or None
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
    k_sumsq: torch.Tensor | None = None,
) -> torch.Tensor:
    """``postgate * (irfft(rfft(u*pregate, 2L) * rfft(k, 2L))[..., :L] + u*pregate*D)``.

    u, pregate, postgate: (B, H, L); k: (H, L) causal, or (H, 2L) = concat(k_fwd, k_rev) with
    ``bidirectional=True`` (a non-causal form: ``k_rev[m - 1]`` weighs the input m positions ahead, m >= 1;
    M2-BERT's ``conj(rfft(k_rev))`` puts ``k_rev[m]`` there and adds ``k_rev[0]`` at lag 0); D: (H,).
    Any L >= 1; fp32/bf16/fp16 inputs with
    fp32 accumulation; output in u's dtype. For 16-bit inputs the long-sequence (cuFFT) path keeps its
    spectra in range-scaled fp16 and the on-chip kernels use fp16 tensor-core operands;
    ``fp32_intermediate=True`` makes both fp32-accurate (fp32 spectra, three-pass tf32 products).
    ``k_sumsq``: optionally each row's sum of squares of k, (H,) fp32, as the implicit filter computes it
    while writing k (:func:`genomix.kernels.implicit_filter.implicit_filter_with_sumsq`); the half-precision
    spectra's range scaling then needs no pass over k of its own. Other paths ignore it.
    """
    _check(u, k, D, pregate, postgate, bidirectional)
    if k_sumsq is not None and (k_sumsq.shape != (k.shape[0],) or k_sumsq.dtype != torch.float32):
        raise ValueError(f"fftconv: k_sumsq must be ({k.shape[0]},) fp32, got {tuple(k_sumsq.shape)} {k_sumsq.dtype}")
    path = route(u, k, D, pregate, postgate)
    if path == "triton":
        return fftconv_triton(u, k, D, pregate, postgate, bidirectional, fp32_intermediate)
    if path == "cufft":
        from .cufft_fused import fftconv_cufft  # imports triton: only when this path is taken

        return fftconv_cufft(u, k, D, pregate, postgate, bidirectional, fp32_intermediate, k_sumsq)
    return fftconv_ref(u, k, D, pregate, postgate, bidirectional, fp32_intermediate)
