"""A fixed filter's spectrum made once and reused by many inference calls.

An inference loop (scoring variants, embedding windows) runs the same model, hence the same long filters,
over many inputs of one shape. Each :func:`fftconv` call transforms its filter again: at L = 1M and batch 1
that is a third of the call on the cuFFT path (the filter is as large as the input; BENCHMARKS.md, "A fixed
filter's spectrum kept between calls"). :func:`prepare_filter` runs that transform once, on the path the
calls will take, and :func:`fftconv_prepared` then convolves each input with it. Paths whose filter
transform is fused into the convolution (the on-chip kernels, three levels) keep the filter itself, and a
prepared call is then a plain :func:`fftconv` call: the same result everywhere, faster where it can be.

Prepared filters carry no gradient: they are for inference. The caller owns their validity: a prepared
filter does not see later changes to ``k`` or ``D`` (the models' :func:`genomix.models.fixed_filters`
checks their parameters' versions for them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dispatch import records_graph
from .reference import forward_with_spectrum, reference_filter_spectrum
from .routing import route


@dataclass(frozen=True, eq=False)
class PreparedFilter:
    """A filter (k, D) ready for :func:`fftconv_prepared` on inputs of ``shape`` (B, H, L), ``dtype`` and
    ``device``. ``path``: "reference" or "cufft" (``spectrum`` holds that path's filter spectrum) or "call"
    (no separable transform on that path: ``k`` is kept and each call is a plain :func:`fftconv`)."""

    shape: tuple[int, int, int]
    dtype: torch.dtype
    device: torch.device
    bidirectional: bool
    fp32_intermediate: bool
    path: str
    D: torch.Tensor | None
    k: torch.Tensor | None = None
    k_sumsq: torch.Tensor | None = None
    spectrum: object = None

    def check(self, u: torch.Tensor) -> None:
        """Raise ValueError unless ``u`` is an input this filter was prepared for."""
        if tuple(u.shape) != self.shape or u.dtype != self.dtype or u.device != self.device:
            raise ValueError(f"fftconv_prepared: the filter was prepared for u of shape {self.shape}, {self.dtype} "
                             f"on {self.device}; got {tuple(u.shape)}, {u.dtype} on {u.device}: prepare it again "
                             "for this shape (the path and its spectrum depend on them)")


def prepare_filter(k: torch.Tensor, D: torch.Tensor | None = None, *, like: torch.Tensor, bidirectional: bool = False,
                   fp32_intermediate: bool = False, k_sumsq: torch.Tensor | None = None) -> PreparedFilter:
    """The filter ``k`` (and skip weight ``D``) prepared for :func:`fftconv_prepared` calls on inputs shaped,
    typed and placed like ``like`` (B, H, L), with the arguments :func:`fftconv` would get.

    Memory: the kept spectrum is about the filter's own size (cuFFT path: H x L complex fp16 for 16-bit
    inputs, complex fp32 otherwise; the reference: H x (L + 1) complex fp32)."""
    from . import _check  # the package's argument checks (it imports this module)

    _check(like, k, D, None, None, bidirectional)
    path = route(like, k, D)
    common = dict(shape=tuple(like.shape), dtype=like.dtype, device=like.device, bidirectional=bool(bidirectional),
                  fp32_intermediate=bool(fp32_intermediate))
    D = None if D is None else D.detach()
    k, k_sumsq = k.detach(), None if k_sumsq is None else k_sumsq.detach()
    if path == "reference":
        return PreparedFilter(path=path, D=D, spectrum=reference_filter_spectrum(k, like.dtype, bidirectional),
                              **common)
    if path == "cufft":
        from .cufft_fused import prepared_filter_signal  # imports triton: only when this path is taken

        signal = prepared_filter_signal(k, D, like, bidirectional, fp32_intermediate, k_sumsq)
        if signal is not None:
            return PreparedFilter(path=path, D=D, spectrum=signal, **common)
    return PreparedFilter(path="call", D=D, k=k, k_sumsq=k_sumsq, **common)


def fftconv_prepared(u: torch.Tensor, prepared: PreparedFilter, pregate: torch.Tensor | None = None,
                     postgate: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`fftconv` of ``u`` (and its gates) with a filter from :func:`prepare_filter`, for inference: no
    gradient flows (a ValueError says so when one would be recorded)."""
    from . import _check_gates

    prepared.check(u)
    _check_gates("fftconv_prepared", prepared.shape, pregate, postgate)
    if records_graph(u, pregate, postgate):
        raise ValueError("fftconv_prepared is for inference: its filter carries no gradient, and u or a gate "
                         "requires one here; call fftconv, or run under torch.no_grad()")
    if prepared.path == "reference":
        return forward_with_spectrum(u, prepared.spectrum, prepared.D, pregate, postgate)
    if prepared.path == "cufft":
        from .cufft_fused import forward_prepared

        return forward_prepared(u, None, prepared.D, prepared.spectrum, pregate, postgate, prepared.bidirectional,
                                prepared.fp32_intermediate)
    from . import fftconv

    return fftconv(u, prepared.k, prepared.D, pregate, postgate, prepared.bidirectional, prepared.fp32_intermediate,
                   prepared.k_sumsq)
