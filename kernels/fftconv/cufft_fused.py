"""The long FFT convolution on cuFFT with its elementwise work fused into Triton kernels.

Same formula, inputs and gradients as :func:`.reference.fftconv_ref`; the transforms are torch's
(cuFFT), and everything around them runs in the two kernels of :mod:`.epilogue_kernels`: the gated,
zero-padded input is written once, the inverse transform runs unnormalised with its 1/n folded into the
epilogue, and the skip term and gates are applied in one pass that writes the output in its final dtype
(forward) or both input gradients (backward). Like the reference it keeps only its inputs (and the
pre-gate output, when the post-gate needs a gradient) between forward and backward.

At L = 1M on an H200 the reference spends ~5.4 ms per HyenaDNA layer on these elementwise passes
(casts, gate products, rfft's padded copy, the 1/n scaling, the skip term, the output gate), against
three cuFFT transforms of ~4 ms each (BENCHMARKS.md, "HyenaDNA end to end").
"""
from __future__ import annotations

import torch
import triton

from .epilogue_kernels import epilogue_kernel, pad_product_kernel
from .reference import _uncombine, combined_filter

#: Time steps per program; 4 warps move 1024 fp32 values per program in 16-byte vectors.
BLOCK, NUM_WARPS = 1024, 4


def _unit_time_stride(t: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _bh_strides(t: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else (t.stride(0), t.stride(1))


def pad_product(a: torch.Tensor, b: torch.Tensor | None, n: int) -> torch.Tensor:
    """(B, H, n) fp32: ``a * b`` in the first L = a.shape[-1] steps of each row, zeros after (n >= L)."""
    a, b = _unit_time_stride(a), _unit_time_stride(b)
    batch, channels, length = a.shape
    out = torch.empty(batch, channels, n, dtype=torch.float32, device=a.device)
    nblk = triton.cdiv(n, BLOCK)
    pad_product_kernel[(batch * channels * nblk,)](
        a, a if b is None else b, out, channels, length, n, nblk, *_bh_strides(a), *_bh_strides(b),
        HAS_B=b is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )
    return out


def epilogue(
    y: torch.Tensor, n_inv: float, a: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor | None,
    m1: torch.Tensor | None, out1_dtype: torch.dtype, m2: torch.Tensor | None = None,
    out2_dtype: torch.dtype | None = None, z_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``z = y[..., :L] * n_inv + a * b * D`` (L = a.shape[-1]); returns ``(z * m1, z * m2, z)`` in the
    given dtypes (``m1``/``b``/``D`` None: factor 1 / no term; ``m2``/``z_dtype`` None: not computed)."""
    if not y.is_contiguous():
        raise ValueError("epilogue: y must be a contiguous (B, H, N >= L) tensor (an inverse FFT's output)")
    a, b, m1, m2 = (_unit_time_stride(t) for t in (a, b, m1, m2))
    batch, channels, length = a.shape
    shape = (batch, channels, length)
    out1 = torch.empty(shape, dtype=out1_dtype, device=a.device)
    out2 = torch.empty(shape, dtype=out2_dtype, device=a.device) if m2 is not None else None
    z = torch.empty(shape, dtype=z_dtype, device=a.device) if z_dtype is not None else None
    nblk = triton.cdiv(length, BLOCK)
    epilogue_kernel[(batch * channels * nblk,)](
        y, a, a if b is None else b, a if D is None else D, a if m1 is None else m1, a if m2 is None else m2,
        out1, out1 if out2 is None else out2, out1 if z is None else z,
        channels, length, nblk, n_inv, y.stride(1), *_bh_strides(a), *_bh_strides(b), *_bh_strides(m1),
        *_bh_strides(m2), HAS_B=b is not None, HAS_D=D is not None, HAS_M1=m1 is not None,
        HAS_M2=m2 is not None, STORE_Z=z is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )
    return out1, out2, z


def _filter_spectrum(k: torch.Tensor, L: int, bidirectional: bool) -> torch.Tensor:
    """rfft of the size-2L circular filter in fp32; the causal filter is zero-padded by one fused pass."""
    if bidirectional:
        return torch.fft.rfft(combined_filter(k.float(), L, 2 * L, True))
    return torch.fft.rfft(pad_product(k.unsqueeze(0), None, 2 * L)[0])


def _forward(u, k, D, pregate, postgate, bidirectional: bool, keep_y: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output and, if ``keep_y``, the pre-postgate output in u's dtype (for the postgate's gradient)."""
    L = u.shape[-1]
    n = 2 * L
    spectrum = torch.fft.rfft(pad_product(u, pregate, n), n=n)
    spectrum.mul_(_filter_spectrum(k, L, bidirectional))
    y_full = torch.fft.irfft(spectrum, n=n, norm="forward")  # unnormalised: the 1/n is in the epilogue
    del spectrum
    out, _, y = epilogue(y_full, 1.0 / n, u, pregate, D, postgate, u.dtype, z_dtype=u.dtype if keep_y else None)
    return out, y


class FFTConvCuFFTFn(torch.autograd.Function):
    """``postgate * (conv(u*pregate, k) + u*pregate*D)`` with cuFFT transforms and fused elementwise passes."""

    @staticmethod
    def forward(ctx, u, k, D, pregate, postgate, bidirectional):  # type: ignore[override]
        out, y = _forward(u, k, D, pregate, postgate, bidirectional, postgate is not None and ctx.needs_input_grad[4])
        ctx.bidirectional = bidirectional
        ctx.save_for_backward(u, k, D, pregate, postgate, y)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        u, k, D, pregate, postgate, y = ctx.saved_tensors
        L = u.shape[-1]
        n = 2 * L
        need_dk, need_dD = ctx.needs_input_grad[1], D is not None and ctx.needs_input_grad[2]
        d_post = None
        if postgate is not None and ctx.needs_input_grad[4]:
            d_post = torch.mul(grad, y, out=torch.empty_like(postgate))
        g_padded = pad_product(grad, postgate, n)  # the gradient at the pre-postgate output, zero-padded
        g_spectrum = torch.fft.rfft(g_padded, n=n)
        dk = dD = None
        if need_dk or need_dD:
            x_padded = pad_product(u, pregate, n)
            if need_dD:
                dD = torch.einsum("bhl,bhl->h", g_padded[..., :L], x_padded[..., :L]).to(D.dtype)
            cross = torch.fft.rfft(x_padded, n=n) if need_dk else None
            del x_padded
            if cross is not None:
                dkc = torch.fft.irfft(cross.conj_physical_().mul_(g_spectrum), n=n, norm="forward").sum(dim=0)
                del cross
                dk = (_uncombine(dkc, L, ctx.bidirectional) * (1.0 / n)).to(k.dtype)
        g_spectrum.mul_(_filter_spectrum(k, L, ctx.bidirectional).conj_physical_())
        dx_full = torch.fft.irfft(g_spectrum, n=n, norm="forward")
        del g_spectrum
        need_dpre = pregate is not None and ctx.needs_input_grad[3]
        du, d_pre, _ = epilogue(
            dx_full, 1.0 / n, g_padded[..., :L], None, D, pregate, u.dtype,
            m2=u if need_dpre else None, out2_dtype=pregate.dtype if need_dpre else None,
        )
        return du, dk, dD, d_pre, d_post, None


def fftconv_cufft(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
    bidirectional: bool = False,
) -> torch.Tensor:
    """The cuFFT-plus-fused-kernels path of :func:`genomix.kernels.fftconv.fftconv` (fp32/bf16/fp16 inputs).

    Under ``no_grad`` (or with no input needing a gradient) nothing is kept for a backward."""
    inputs = (u, k, D, pregate, postgate)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return FFTConvCuFFTFn.apply(*inputs, bool(bidirectional))
    return _forward(*inputs, bool(bidirectional), keep_y=False)[0]
