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
from .reference import _uncombine, combined_filter, records_graph

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
    m1: torch.Tensor | None, out1: torch.Tensor, m2: torch.Tensor | None = None, out2: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> None:
    """Write ``zv = y[..., :L] * n_inv + a * b * D`` (L = a.shape[-1]) as ``out1 = zv * m1``, and if given
    ``out2 = zv * m2`` and ``z = zv``, each in its own dtype (``b``/``D``/``m1`` None: no factor / no term).

    Outputs are (B, H, L) tensors or channel slices of larger ones, all with the same strides."""
    if not y.is_contiguous():
        raise ValueError("epilogue: y must be a contiguous (B, H, N >= L) tensor (an inverse FFT's output)")
    outputs = [t for t in (out1, out2, z) if t is not None]
    if any(t.stride() != out1.stride() or t.stride(-1) != 1 for t in outputs):
        raise ValueError("epilogue: outputs must share strides, with a unit stride in time")
    a, b, m1, m2 = (_unit_time_stride(t) for t in (a, b, m1, m2))
    batch, channels, length = a.shape
    nblk = triton.cdiv(length, BLOCK)
    epilogue_kernel[(batch * channels * nblk,)](
        y, a, a if b is None else b, a if D is None else D, a if m1 is None else m1, a if m2 is None else m2,
        out1, out1 if out2 is None else out2, out1 if z is None else z,
        channels, length, nblk, n_inv, y.stride(1), *_bh_strides(a), *_bh_strides(b), *_bh_strides(m1),
        *_bh_strides(m2), *_bh_strides(out1), HAS_B=b is not None, HAS_D=D is not None,
        HAS_M1=m1 is not None, HAS_M2=m2 is not None, STORE_Z=z is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
    )


#: Largest batch x channels x length one pass transforms at once. Longer convolutions run over channel
#: groups, so each of the ~5 transient (B, h, 2L) fp32/complex buffers of a pass stays <= 2 GiB: at
#: L = 4M that is what lets a HyenaDNA training step fit in 80 GB. At L <= 1M with 256 channels (batch 1)
#: nothing is split.
MAX_ELEMENTS_PER_PASS = 1 << 28


def _channel_groups(u: torch.Tensor) -> list[slice]:
    batch, channels, length = u.shape
    step = max(1, min(channels, MAX_ELEMENTS_PER_PASS // max(1, batch * length)))
    return [slice(h, min(h + step, channels)) for h in range(0, channels, step)]


def _rows(t: torch.Tensor | None, group: slice) -> torch.Tensor | None:
    """Channels ``group`` of a (B, H, L) tensor or of an (H, ...) parameter; None stays None."""
    if t is None:
        return None
    return t[group] if t.dim() < 3 else t[:, group]


def _filter_spectrum(k: torch.Tensor, L: int, bidirectional: bool) -> torch.Tensor:
    """rfft of the size-2L circular filter in fp32; the causal filter is zero-padded by one fused pass."""
    if bidirectional:
        return torch.fft.rfft(combined_filter(k.float(), L, 2 * L, True))
    return torch.fft.rfft(pad_product(k.unsqueeze(0), None, 2 * L)[0])


def _forward(u, k, D, pregate, postgate, bidirectional: bool, keep_y: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output and, if ``keep_y``, the pre-postgate output in u's dtype (for the postgate's gradient)."""
    L = u.shape[-1]
    n = 2 * L
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    y = torch.empty(u.shape, dtype=u.dtype, device=u.device) if keep_y else None
    for g in _channel_groups(u):
        spectrum = torch.fft.rfft(pad_product(_rows(u, g), _rows(pregate, g), n), n=n)
        spectrum.mul_(_filter_spectrum(_rows(k, g), L, bidirectional))
        y_full = torch.fft.irfft(spectrum, n=n, norm="forward")  # unnormalised: the 1/n is in the epilogue
        del spectrum
        epilogue(y_full, 1.0 / n, _rows(u, g), _rows(pregate, g), _rows(D, g), _rows(postgate, g), _rows(out, g),
                 z=_rows(y, g))
        del y_full
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
        need = ctx.needs_input_grad
        need_dpre = pregate is not None and need[3]
        d_post = None
        if postgate is not None and need[4]:
            d_post = torch.mul(grad, y, out=torch.empty_like(postgate))
        du = torch.empty(u.shape, dtype=u.dtype, device=u.device)
        d_pre = torch.empty(u.shape, dtype=pregate.dtype, device=u.device) if need_dpre else None
        dk = torch.empty_like(k) if need[1] else None
        dD = torch.empty_like(D) if D is not None and need[2] else None
        for g in _channel_groups(u):
            _backward_group(ctx.bidirectional, grad[:, g], *(_rows(t, g) for t in (u, k, D, pregate, postgate)),
                            *(_rows(t, g) for t in (du, dk, dD, d_pre)))
        return du, dk, dD, d_pre, d_post, None


def _backward_group(bidirectional: bool, grad, u, k, D, pregate, postgate, du, dk, dD, d_pre) -> None:
    """Gradients of one channel group, written into the given slices (``dk``/``dD``/``d_pre`` None: not needed)."""
    L = u.shape[-1]
    n = 2 * L
    g_padded = pad_product(grad, postgate, n)  # the gradient at the pre-postgate output, zero-padded
    g_spectrum = torch.fft.rfft(g_padded, n=n)
    if dk is not None or dD is not None:
        x_padded = pad_product(u, pregate, n)
        if dD is not None:
            dD.copy_(torch.einsum("bhl,bhl->h", g_padded[..., :L], x_padded[..., :L]))
        cross = torch.fft.rfft(x_padded, n=n) if dk is not None else None
        del x_padded
        if cross is not None:
            dkc = torch.fft.irfft(cross.conj_physical_().mul_(g_spectrum), n=n, norm="forward").sum(dim=0)
            del cross
            dk.copy_(_uncombine(dkc, L, bidirectional) * (1.0 / n))
    g_spectrum.mul_(_filter_spectrum(k, L, bidirectional).conj_physical_())
    dx_full = torch.fft.irfft(g_spectrum, n=n, norm="forward")
    del g_spectrum
    epilogue(dx_full, 1.0 / n, g_padded[..., :L], None, D, pregate, du, m2=u if d_pre is not None else None,
             out2=d_pre)


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
    if records_graph(*inputs):
        return FFTConvCuFFTFn.apply(*inputs, bool(bidirectional))
    return _forward(*inputs, bool(bidirectional), keep_y=False)[0]
