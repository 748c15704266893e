"""Launchers and the autograd Function of the Triton implicit filter.

:class:`ImplicitFilterFn` computes what :func:`.reference.implicit_filter_ref` does with the layers
already stacked (the caller stacks them: :func:`.implicit_filter_triton`). For the backward it keeps its
(small) inputs and each sine layer's pre-activation, (n + 1) x L x R fp32 (50 MB a filter at M2's 64K,
0.8 GB at HyenaDNA's 1M, where the model recomputes the filter inside its backward anyway); the
reference keeps about twice that.
"""
from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable

from ..dispatch import interpreting
from .triton_kernels import (implicit_filter_dh_kernel, implicit_filter_fwd_kernel, implicit_filter_layer_bwd_kernel,
                             implicit_filter_out_grad_kernel)

#: Positions per program and warps of the forward (the MLP in registers, then C/BLOCK_C projection tiles)
#: and of the backward kernels; channels per projection tile, both ways. From H200 sweeps (BENCHMARKS.md,
#: "Implicit filter"): 4 warps beat 8; 128-position forward blocks (each program reloads ~100 KB of weights)
#: took 0.70 against 0.99 ms at 1M (twelfth session); 32-position backward blocks lost.
FWD_BLOCK_L, FWD_WARPS = 128, 4
BWD_BLOCK_L, BWD_WARPS = 64, 4
BLOCK_C = 64
#: Persistent programs of a layer's backward per streaming multiprocessor, and the cap on position
#: splits of dW_out (both set how many partial rows torch sums afterwards).
PROGRAMS_PER_SM = 2
OUT_GRAD_SPLITS = 64
#: Widest filter order and feature count the kernels take (wider filters, e.g. M2-BERT's order 128, use
#: the reference: at 128 the forward's tiles need more shared memory than an SM has).
MAX_ORDER, MAX_FEATURES = 64, 64


def padded(width: int) -> int:
    """A width rounded up to a power of two of at least 16 (tl.dot's smallest dimension)."""
    return max(16, triton.next_power_of_2(width))


def _programs(device: torch.device, blocks: int) -> int:
    """Persistent programs for ``blocks`` position blocks: a couple per SM on a GPU, few in the interpreter."""
    if device.type == "cuda":
        return max(1, min(blocks, PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count))
    return max(1, min(blocks, 3))


def _fast_math(tf32: bool) -> bool:
    """MUFU sine/cosine (inline PTX, GPU only) under 16-bit autocast; exact libdevice ones otherwise."""
    return tf32 and not interpreting()


def _pointer(tensor: torch.Tensor | None, stand_in: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a stand-in when it is absent or empty (never read, but must be a valid pointer)."""
    return tensor if tensor is not None and tensor.numel() else stand_in


def _layer_backward(dh: torch.Tensor, pre: torch.Tensor, freqs: torch.Tensor, weight: torch.Tensor, below: torch.Tensor,
                    layer: int, dh_below: torch.Tensor | None, tf32: bool) -> torch.Tensor:
    """Gradients of sine layer ``layer`` (its (R, K) weight, then bias and frequency, summed over the
    programs' partial rows), writing dL/d(its input) into ``dh_below`` unless it is the first layer."""
    length, order = dh.shape
    width = weight.shape[1]
    programs = _programs(dh.device, triton.cdiv(length, BWD_BLOCK_L))
    partials = torch.empty((programs, order * width + 2 * order), dtype=torch.float32, device=dh.device)
    first = layer == 0
    implicit_filter_layer_bwd_kernel[(programs,)](
        dh, pre[layer], freqs[layer], below, freqs[max(layer - 1, 0)], weight, _pointer(dh_below, dh), partials,
        length, order, width, FIRST=first, BLOCK_L=BWD_BLOCK_L, R_PAD=padded(order), K_PAD=padded(width),
        TF32=tf32, ASM=_fast_math(tf32), num_warps=BWD_WARPS,
    )
    return partials.sum(0)


class ImplicitFilterFn(torch.autograd.Function):
    """The (C, L) filter from features z (L, E), times t (L,), stacked sine layers and the projection."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, t: torch.Tensor, w0: torch.Tensor, inner: torch.Tensor,  # type: ignore[override]
                biases: torch.Tensor, freqs: torch.Tensor, out_weight: torch.Tensor, rates: torch.Tensor | None,
                shift: float, tf32: bool, save: bool, row_sumsq: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, each channel's sum of k^2 (C,) if ``row_sumsq``, else an empty tensor; not differentiable).
        ``save``: a backward will follow (decided by the caller: grad mode is off inside ``forward``)."""
        length, features = z.shape
        channels, order = out_weight.shape
        n_inner = inner.shape[0]
        programs = triton.cdiv(length, FWD_BLOCK_L)
        k = torch.empty((channels, length), dtype=torch.float32, device=z.device)
        pre = torch.empty((n_inner + 1, length, order) if save else (0,), dtype=torch.float32, device=z.device)
        partials = torch.empty((channels, programs) if row_sumsq else (0,), dtype=torch.float32, device=z.device)
        implicit_filter_fwd_kernel[(programs,)](
            z, t, w0, _pointer(inner, w0), biases, freqs, out_weight, _pointer(rates, t), k, _pointer(pre, k),
            _pointer(partials, k), length, channels, features, order, float(shift),
            N_INNER=n_inner, MODULATE=rates is not None, SAVE=save, SUMSQ=row_sumsq, BLOCK_L=FWD_BLOCK_L,
            BLOCK_C=BLOCK_C, E_PAD=padded(features), R_PAD=padded(order), TF32=tf32, ASM=_fast_math(tf32),
            num_warps=FWD_WARPS,
        )
        ctx.save_for_backward(z, t, w0, inner, freqs, out_weight, rates, pre)
        ctx.shift, ctx.tf32 = float(shift), tf32
        sumsq = partials.sum(dim=1) if row_sumsq else partials
        ctx.mark_non_differentiable(sumsq)
        return k, sumsq

    @staticmethod
    @once_differentiable
    def backward(ctx, dk: torch.Tensor, _dsumsq: torch.Tensor | None):  # type: ignore[override]
        z, t, w0, inner, freqs, out_weight, rates, pre = ctx.saved_tensors
        if dk.stride(-1) != 1:
            dk = dk.contiguous()
        length = z.shape[0]
        channels, order = out_weight.shape
        n_inner = inner.shape[0]
        common = dict(MODULATE=rates is not None, BLOCK_L=BWD_BLOCK_L, BLOCK_C=BLOCK_C, R_PAD=padded(order),
                      TF32=ctx.tf32, num_warps=BWD_WARPS)
        rate_arg = _pointer(rates, t)
        splits = max(1, min(OUT_GRAD_SPLITS, triton.cdiv(length, BWD_BLOCK_L)))
        out_partials = torch.empty((splits, channels, order), dtype=torch.float32, device=z.device)
        implicit_filter_out_grad_kernel[(triton.cdiv(channels, BLOCK_C), splits)](
            pre[n_inner], freqs[n_inner], t, rate_arg, dk, out_partials, length, channels, order, ctx.shift,
            dk.stride(0), ASM=_fast_math(ctx.tf32), **common,
        )
        dh = torch.empty((length, order), dtype=torch.float32, device=z.device)
        implicit_filter_dh_kernel[(triton.cdiv(length, BWD_BLOCK_L),)](
            t, rate_arg, out_weight, dk, dh, length, channels, order, ctx.shift, dk.stride(0), **common,
        )
        # Back through the sine layers, last first; dh ping-pongs between two (L, R) buffers.
        spare = torch.empty_like(dh) if n_inner else None
        d_inner, d_biases, d_freqs = [], [], []
        for layer in range(n_inner, -1, -1):
            weight, below = (inner[layer - 1], pre[layer - 1]) if layer else (w0, z)
            sums = _layer_backward(dh, pre, freqs, weight, below, layer, spare if layer else None, ctx.tf32)
            d_weight, d_bias, d_freq = sums.split([weight.numel(), order, order])
            d_biases.append(d_bias)
            d_freqs.append(d_freq)
            if layer:
                d_inner.append(d_weight.view(order, order))
                dh, spare = spare, dh
            else:
                d_w0 = d_weight.view(w0.shape)
        d_inner_stacked = torch.stack(d_inner[::-1]) if d_inner else torch.zeros_like(inner)
        return (None, None, d_w0, d_inner_stacked, torch.stack(d_biases[::-1]), torch.stack(d_freqs[::-1]),
                out_partials.sum(0), None, None, None, None, None)
