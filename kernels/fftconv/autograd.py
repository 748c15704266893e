"""Autograd function of the Triton fftconv: forward and backward both run on the Monarch-FFT kernels.

With ``x = u*pregate``, ``z = conv(x, k) + x*D`` and ``y = postgate*z``, and ``g = dy*postgate``:
``dx = corr(g, k) + g*D`` (the forward kernels with the conjugate spectrum), ``du = dx*pregate``,
``dpregate = dx*u``, ``dpostgate = dy*z`` (z recomputed, not stored), ``dD = sum g*x`` and
``dk`` from the batch-summed cross spectrum of x and g. Nothing of size (B, H, N) is kept between
forward and backward: only the inputs are saved and the filter spectrum is recomputed (by the
Triton transforms when the tuning says so, else by torch's rfft).
"""
from __future__ import annotations

import torch

from .ops import conv_apply, cross_spectrum, filter_spectrum_triton
from .plan import Plan, Tuning, filter_grad, filter_spectrum, plan_for


def _precision(dtype: torch.dtype, fp32_intermediate: bool) -> str:
    """tf32 dots for 16-bit inputs; three-pass tf32 (about fp32 accuracy) for fp32 or when asked."""
    return "tf32x3" if fp32_intermediate or dtype in (torch.float32, torch.float64) else "tf32"


def _spectrum(
    k: torch.Tensor, plan: Plan, bidirectional: bool, prec: str, tuning: Tuning, conj: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filter spectrum in stored order, by the Triton transforms or torch's rfft per the tuning."""
    if tuning.triton_spectrum:
        return filter_spectrum_triton(k, plan, bidirectional, prec, tuning, conj)
    return filter_spectrum(k, plan, bidirectional, conj)


class FFTConvFn(torch.autograd.Function):
    """``postgate * (conv(u*pregate, k) + u*pregate*D)``, causal or bidirectional."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, u, k, D, pregate, postgate, bidirectional: bool, fp32_intermediate: bool, tuning: Tuning
    ):
        prec = _precision(u.dtype, fp32_intermediate)
        plan = plan_for(u.shape[-1], tuning, prec)
        spec = _spectrum(k, plan, bidirectional, prec, tuning)
        y = conv_apply(u, pregate, D, postgate, spec, plan, u.dtype, prec, tuning)
        ctx.save_for_backward(u, k, D, pregate, postgate)
        ctx.conf = (plan, prec, bidirectional, tuning)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, k, D, pre, post = ctx.saved_tensors
        plan, prec, bidirectional, tuning = ctx.conf
        dy = dy.contiguous()
        need_u, need_k, need_d, need_pre, need_post = ctx.needs_input_grad[:5]
        du = dk = dD = dpre = dpost = None
        if need_u or need_pre:
            cspec = _spectrum(k, plan, bidirectional, prec, tuning, conj=True)
            dx = conv_apply(dy, post, D, None, cspec, plan, torch.float32, prec, tuning)
            del cspec
            if need_u:
                du = (dx if pre is None else dx * pre.float()).to(u.dtype)
            if need_pre:
                dpre = (dx * u.float()).to(pre.dtype)
            del dx
        if need_post:
            spec = _spectrum(k, plan, bidirectional, prec, tuning)
            z = conv_apply(u, pre, D, None, spec, plan, torch.float32, prec, tuning)
            del spec
            dpost = (dy.float() * z).to(post.dtype)
            del z
        if need_d:
            x = u.float() if pre is None else u.float() * pre.float()
            g = dy.float() if post is None else dy.float() * post.float()
            dD = (g * x).sum(dim=(0, 2)).to(D.dtype)
            del x, g
        if need_k:
            sr, si = cross_spectrum(u, pre, dy, post, plan, prec, tuning)
            dk = filter_grad(sr, si, plan, bidirectional).to(k.dtype)
        return du, dk, dD, dpre, dpost, None, None, None
