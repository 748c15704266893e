"""Autograd function of the Triton fftconv: forward and backward both run on the Monarch-FFT kernels.

With ``x = u*pregate``, ``z = conv(x, k) + x*D`` and ``y = postgate*z``, and ``g = dy*postgate``:
``dx = corr(g, k) + g*D`` (the forward kernels with the conjugate spectrum), ``du = dx*pregate``,
``dpregate = dx*u``, ``dpostgate = dy*z``, ``dD = sum g*x`` and ``dk`` from the batch-summed cross
spectrum of x and g.

Forward: one apply pass writes y and, when the postgate needs a gradient, z (in u's dtype) from the
same registers; z is saved so the backward needs no second convolution. Backward: one apply pass on
``(dy, postgate)`` with the conjugate spectrum writes du, dpregate and dpostgate in their own dtypes
and per-row partial sums of ``g*x`` (dD: one small reduction over the (B, H) partials), then the
cross-spectrum pass for dk. Nothing of size (B, H, N) is kept between forward and backward: the
inputs (and z) are saved and the filter spectrum is recomputed (by the Triton transforms when the
tuning says so, else by torch's rfft).
"""
from __future__ import annotations

import torch

from .ops import conv_apply, cross_spectrum, filter_spectrum_triton, spectrum_peak
from .plan import Plan, Tuning, filter_grad, filter_spectrum, plan_for


def _precision(dtype: torch.dtype, fp32_intermediate: bool) -> str:
    """tf32 dots for 16-bit inputs; three-pass tf32 (about fp32 accuracy) for fp32 or when asked."""
    return "tf32x3" if fp32_intermediate or dtype in (torch.float32, torch.float64) else "tf32"


def _spectrum(
    k: torch.Tensor, plan: Plan, bidirectional: bool, prec: str, tuning: Tuning, conj: bool = False
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
    """The filter spectrum in stored order, by the Triton transforms or torch's rfft per the tuning, and
    for on-chip plans each channel's :func:`.ops.spectrum_peak` (None otherwise)."""
    if tuning.triton_spectrum:
        peak = torch.empty(k.shape[0], device=k.device, dtype=torch.float32) if plan.short else None
        return filter_spectrum_triton(k, plan, bidirectional, prec, tuning, conj, peak=peak), peak
    spec = filter_spectrum(k, plan, bidirectional, conj)
    return spec, spectrum_peak(*spec) if plan.short else None


class FFTConvFn(torch.autograd.Function):
    """``postgate * (conv(u*pregate, k) + u*pregate*D)``, causal or bidirectional."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, u, k, D, pregate, postgate, bidirectional: bool, fp32_intermediate: bool, tuning: Tuning
    ):
        prec = _precision(u.dtype, fp32_intermediate)
        plan = plan_for(u.shape[-1], tuning, prec)
        spec, peak = _spectrum(k, plan, bidirectional, prec, tuning)
        z = torch.empty_like(u) if postgate is not None and ctx.needs_input_grad[4] else None
        y = conv_apply(u, pregate, D, postgate, spec, plan, u.dtype, prec, tuning, z=z, peak=peak)
        ctx.save_for_backward(u, k, D, pregate, postgate, z)
        ctx.conf = (plan, prec, bidirectional, tuning)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, k, D, pre, post, z = ctx.saved_tensors
        plan, prec, bidirectional, tuning = ctx.conf
        # The kernels read rows with unit time stride at offset (b*H + h)*L. dy often arrives as the
        # transpose of a (B, L, H) gradient (time stride H): read in place, every program would touch
        # one 32-byte sector per element, so one coalesced copy that both passes below read is cheaper.
        dy = dy.contiguous()
        need_u, need_k, need_d, need_pre, need_post = ctx.needs_input_grad[:5]
        need_pre = need_pre and pre is not None
        need_post = need_post and post is not None
        need_d = need_d and D is not None
        du = torch.empty_like(u) if need_u else None
        dpre = torch.empty_like(pre) if need_pre else None
        dpost = torch.empty_like(post) if need_post else None
        dk = dD = None
        if need_u or need_pre or need_d:
            # One pass: dx = corr(dy*post) + dy*post*D, du = dx*pre, dpre = dx*u, dpost = dy*z and the
            # dD partials sum(dy*post * u*pre) per row.
            dsum = torch.empty(D.shape, device=u.device, dtype=torch.float32) if need_d else None
            cspec, peak = _spectrum(k, plan, bidirectional, prec, tuning, conj=True)
            conv_apply(dy, post, D, pre, cspec, plan, u.dtype, prec, tuning, out=du, store_y=need_u,
                       m2=u if need_pre or need_d else None, out2=dpre,
                       zin=z if need_post else None, out3=dpost, dsum=dsum, peak=peak)
            del cspec
            if need_d:
                dD = dsum.to(D.dtype)
        elif need_post:
            torch.mul(dy, z, out=dpost)
        if need_k:
            sr, si = cross_spectrum(u, pre, dy, post, plan, prec, tuning)
            dk = filter_grad(sr, si, plan, bidirectional).to(k.dtype)
        return du, dk, dD, dpre, dpost, None, None, None
