"""Launchers and the autograd Function of the Triton implicit filter.

:class:`ImplicitFilterFn` computes what :func:`.reference.implicit_filter_ref` does with the layers
already stacked (the caller stacks them: :func:`.implicit_filter_triton`). Between forward and backward
it keeps only its (small) inputs: the MLP is recomputed by the backward kernel, so a filter costs no
activation memory however long it is (the reference keeps ~(2n + 2) (L, R) tensors, 1.3 GiB a layer
at L = 1M).
"""
from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable

from .triton_kernels import implicit_filter_fwd_kernel, implicit_filter_mlp_bwd_kernel, implicit_filter_out_grad_kernel

#: Positions per program and warps (forward: MLP in registers, then C/BLOCK_C projection tiles).
FWD_BLOCK_L, FWD_WARPS = 64, 4
#: Backward: positions per step of a persistent program (halved for R > 64 to keep its (BLOCK_L, R)
#: tiles in registers), and warps.
BWD_BLOCK_L, BWD_WARPS = 64, 8
#: Channels per projection tile, both ways.
BLOCK_C = 64
#: Persistent backward programs per streaming multiprocessor, and the cap on position splits of dW_out.
PROGRAMS_PER_SM = 2
OUT_GRAD_SPLITS = 64
#: tl.dot precision of the sine layers (exact fp32: their outputs are phases, see triton_kernels).
MLP_PRECISION = "ieee"
#: Widest filter order and feature count the kernels take (wider filters use the reference).
MAX_ORDER, MAX_FEATURES = 128, 64


def padded(width: int) -> int:
    """A width rounded up to a power of two of at least 16 (tl.dot's smallest dimension)."""
    return max(16, triton.next_power_of_2(width))


def _programs(device: torch.device, blocks: int) -> int:
    """Persistent programs for ``blocks`` position blocks: a couple per SM on a GPU, few in the interpreter."""
    if device.type == "cuda":
        return max(1, min(blocks, PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count))
    return max(1, min(blocks, 3))


def _pointer(tensor: torch.Tensor, stand_in: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a stand-in when it is empty (no inner layers: never read, but must be a valid pointer)."""
    return tensor if tensor.numel() else stand_in


def _precision(tf32: bool) -> str:
    return "tf32" if tf32 else "ieee"


class ImplicitFilterFn(torch.autograd.Function):
    """The (C, L) filter from features z (L, E), times t (L,), stacked sine layers and the projection."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, t: torch.Tensor, w0: torch.Tensor, inner: torch.Tensor,  # type: ignore[override]
                biases: torch.Tensor, freqs: torch.Tensor, out_weight: torch.Tensor, rates: torch.Tensor | None,
                shift: float, tf32: bool) -> torch.Tensor:
        length, features = z.shape
        channels, order = out_weight.shape
        k = torch.empty((channels, length), dtype=torch.float32, device=z.device)
        implicit_filter_fwd_kernel[(triton.cdiv(length, FWD_BLOCK_L),)](
            z, t, w0, _pointer(inner, w0), biases, freqs, out_weight, rates if rates is not None else t, k,
            length, channels, features, order, float(shift),
            N_INNER=inner.shape[0], MODULATE=rates is not None, BLOCK_L=FWD_BLOCK_L, BLOCK_C=BLOCK_C,
            E_PAD=padded(features), R_PAD=padded(order), MLP_PRECISION=MLP_PRECISION,
            OUT_PRECISION=_precision(tf32), num_warps=FWD_WARPS,
        )
        ctx.save_for_backward(z, t, w0, inner, biases, freqs, out_weight, rates)
        ctx.shift, ctx.tf32 = float(shift), tf32
        return k

    @staticmethod
    @once_differentiable
    def backward(ctx, dk: torch.Tensor):  # type: ignore[override]
        z, t, w0, inner, biases, freqs, out_weight, rates = ctx.saved_tensors
        if dk.stride(-1) != 1:
            dk = dk.contiguous()
        length, features = z.shape
        channels, order = out_weight.shape
        n_inner = inner.shape[0]
        r_pad = padded(order)
        block_l = BWD_BLOCK_L if r_pad <= 64 else BWD_BLOCK_L // 2
        programs = _programs(z.device, triton.cdiv(length, block_l))
        part_size = order * features + n_inner * order * order + 2 * (n_inner + 1) * order
        partials = torch.zeros((programs, part_size), dtype=torch.float32, device=z.device)
        scratch = torch.empty((programs, n_inner + 1, block_l, r_pad), dtype=torch.float32, device=z.device)
        hidden = torch.empty((length, order), dtype=torch.float32, device=z.device)
        rate_arg = rates if rates is not None else t
        common = dict(MODULATE=rates is not None, BLOCK_C=BLOCK_C, R_PAD=r_pad, OUT_PRECISION=_precision(ctx.tf32))
        implicit_filter_mlp_bwd_kernel[(programs,)](
            z, t, w0, _pointer(inner, w0), biases, freqs, out_weight, rate_arg, dk, hidden, scratch, partials,
            length, channels, features, order, ctx.shift, dk.stride(0),
            N_INNER=n_inner, BLOCK_L=block_l, E_PAD=padded(features), MLP_PRECISION=MLP_PRECISION,
            num_warps=BWD_WARPS, **common,
        )
        splits = max(1, min(OUT_GRAD_SPLITS, triton.cdiv(length, block_l)))
        out_partials = torch.empty((splits, channels, order), dtype=torch.float32, device=z.device)
        implicit_filter_out_grad_kernel[(triton.cdiv(channels, BLOCK_C), splits)](
            hidden, t, rate_arg, dk, out_partials, length, channels, order, ctx.shift, dk.stride(0),
            BLOCK_L=block_l, num_warps=FWD_WARPS, **common,
        )
        sums = partials.sum(0)
        d_w0, d_inner, d_biases, d_freqs = sums.split(
            [order * features, n_inner * order * order, (n_inner + 1) * order, (n_inner + 1) * order])
        return (None, None, d_w0.view(order, features), d_inner.view(n_inner, order, order),
                d_biases.view(n_inner + 1, order), d_freqs.view(n_inner + 1, order), out_partials.sum(0),
                None, None, None)
