"""The fp32 matrix product that projects an implicit long-convolution filter onto its channels.

Hyena's and M2's filters are computed in fp32 (outside autocast) because the long convolution sums a
whole sequence through them. Their last projection, ``W (channels, order) @ hidden^T (order, L)``, is
the largest GEMM of the filter (2.1 GFLOP per layer at L = 64K, 34 GFLOP at 1M, three times that with
the backward), and in plain fp32 it runs on CUDA cores: ~1 ms of an M2 training step at 64K on an H200
(BENCHMARKS.md, "Monarch Mixer vs Transformer"). When the model itself runs under 16-bit autocast, the
projection and its two backward GEMMs use TF32 tensor cores instead: TF32 rounds the operands to 10
mantissa bits (relative error ~5e-4), eight times finer than the bf16 activations the filter then
convolves, and accumulates in fp32. Outside 16-bit autocast (fp32 training, inference, CPU) nothing
changes, so fp32 parity with reference checkpoints is untouched.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def sixteen_bit_autocast(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` with a 16-bit dtype (call it before disabling autocast)."""
    return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) in (
        torch.bfloat16, torch.float16)


@contextlib.contextmanager
def _tf32_matmuls() -> Iterator[None]:
    previous = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous


class _TF32MatMul(torch.autograd.Function):
    """``a @ b`` of fp32 CUDA matrices on TF32 tensor cores, forward and backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        with _tf32_matmuls():
            return torch.mm(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        with _tf32_matmuls():
            da = torch.mm(grad, b.t()) if ctx.needs_input_grad[0] else None
            db = torch.mm(a.t(), grad) if ctx.needs_input_grad[1] else None
        return da, db


def filter_projection(weight: torch.Tensor, hidden: torch.Tensor, mixed_precision: bool) -> torch.Tensor:
    """``weight @ hidden.T`` (channels, L), contiguous and channel-major as the FFT convolution reads it.

    ``mixed_precision`` (from :func:`sixteen_bit_autocast`, taken before the filter disables autocast)
    selects TF32 tensor cores on CUDA; otherwise, and on CPU, a plain fp32 product."""
    if mixed_precision and weight.is_cuda:
        return _TF32MatMul.apply(weight, hidden.t())
    return torch.mm(weight, hidden.t())
