"""Layout changes of (batch, channels, length) tensors between channel-major and time-major memory.

Mamba's block computes Δ and the gate z time-major (a (batch, L, E) linear output, and a channel slice
of the in-projection's), while the selective scan reads channel-major (batch, E, L) rows. PyTorch copies
such a transposed view with an elementwise kernel at ~70 GB/s on an H200: 13.6 ms for one (1, 512, 2^20)
bf16 tensor, ~1 s of a 2.75 s ``mamba-7m-1m`` training step at L = 1M (64 copies; BENCHMARKS.md,
"Mamba's layout copies": 0.59 ms each with this kernel, the step 1.67 s). :func:`channel_major` does the copy as a tiled Triton transpose on CUDA, and its
backward hands the gradient back time-major the same way, so the split and matmul upstream read
contiguous rows too. Elsewhere (CPU, or ``GENOMIX_REFERENCE_OPS=transpose``) it is ``Tensor.contiguous``.
:func:`time_major` is the opposite copy, for the scan's output and the conv's on their way into a linear
layer: a batch of transposed (batch, L, E) views is not one matrix, so ``torch.matmul`` would copy it with
the same slow kernel (0.9 ms per (2, 131072, 512) bf16 tensor in Caduceus's training step).
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton

MAX_BATCH = 65535  # the kernel's batch is its grid's third axis


def unit_stride_rows(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` itself when its last axis has unit stride (a column slice of a wider output, or a batch or
    channel slice), else a contiguous copy; None stays None. For kernels that read rows through their
    leading strides."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def empty_time_major(x: torch.Tensor) -> torch.Tensor:
    """An empty (batch, E, L) tensor whose memory is a contiguous (batch, L, E) one."""
    batch, channels, length = x.shape
    return x.new_empty((batch, length, channels)).transpose(1, 2)


def relayout(src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Copy ``src`` into ``out`` (same (batch, E, L) shape and dtype, any strides) with the Triton
    kernel: each program moves one (length, channel) tile, read and written along whichever axis is
    contiguous on its side."""
    import triton

    from .triton_kernels import relayout_kernel

    batch, channels, length = src.shape
    block = 64
    grid = (triton.cdiv(length, block), triton.cdiv(channels, block), batch)
    relayout_kernel[grid](src, out, channels, length, *src.stride(), *out.stride(), BLOCK_L=block, BLOCK_E=block)
    return out


class _ChannelMajor(torch.autograd.Function):
    """Channel-major copy forward; the gradient goes back time-major (what a transposed view's producer,
    a linear layer or a channel split, reads contiguously)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return relayout(x, torch.empty(x.shape, device=x.device, dtype=x.dtype))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return relayout(grad, empty_time_major(grad))


class _TimeMajor(torch.autograd.Function):
    """Time-major copy forward; the gradient goes back channel-major (what the scan and the conv produce)."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return relayout(x, empty_time_major(x))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad if grad.is_contiguous() else relayout(grad, torch.empty(grad.shape, device=grad.device,
                                                                            dtype=grad.dtype))


def time_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, E, L) with its memory laid out (batch, L, E) contiguously, so that
    ``time_major(x).transpose(1, 2)`` is a contiguous (batch, L, E) tensor (``x`` itself if it already is).

    Contiguous inputs with at most ``MAX_BATCH`` sequences go through the Triton transpose where
    :func:`..dispatch.use_triton` allows it; anything else through ``Tensor.contiguous``. Differentiable
    either way."""
    if x.transpose(1, 2).is_contiguous():
        return x
    if x.dim() == 3 and x.is_contiguous() and x.shape[0] <= MAX_BATCH and use_triton(x, op="transpose"):
        return _TimeMajor.apply(x)
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def channel_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, E, L) as a contiguous tensor (``x`` itself if it already is).

    Views with contiguous channels (``x.stride(1) == 1``: a transposed (batch, L, E) tensor or a channel
    slice of one) and at most ``MAX_BATCH`` sequences go through the Triton transpose where
    :func:`..dispatch.use_triton` allows it; anything else through ``Tensor.contiguous``. Differentiable
    either way."""
    if x.is_contiguous():
        return x
    time_major_view = x.dim() == 3 and x.stride(1) == 1 and x.shape[1] > 1
    if time_major_view and x.shape[0] <= MAX_BATCH and use_triton(x, op="transpose"):
        return _ChannelMajor.apply(x)
    return x.contiguous()
