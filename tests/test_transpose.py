"""The channel-major relayout (kernels/transpose) under the Triton interpreter: exact copies both ways."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels import channel_major
from genomix.kernels.transpose import relayout


def _time_major(batch: int, channels: int, length: int, dtype: torch.dtype, slice_of: int = 0) -> torch.Tensor:
    """A (batch, channels, length) view of a (batch, length, channels [+ slice_of]) tensor, like Mamba's Δ
    (``slice_of = 0``) or its gate z (a channel slice of the in-projection's output)."""
    g = torch.Generator().manual_seed(channels + length)
    full = torch.randn(batch, length, channels + slice_of, generator=g).to(dtype)
    return full[..., slice_of:].transpose(1, 2)


@pytest.mark.parametrize("batch,channels,length,slice_of,dtype", [
    (2, 70, 130, 0, torch.bfloat16),   # neither axis a multiple of the 64 x 64 tile
    (1, 64, 64, 64, torch.float32),    # the z layout: a channel slice, time stride 2E
    (3, 5, 1, 0, torch.float32),       # one step
])
def test_relayout_copies_exactly_both_ways(batch, channels, length, slice_of, dtype):
    x = _time_major(batch, channels, length, dtype, slice_of)
    out = relayout(x, torch.full(x.shape, float("nan"), dtype=dtype))
    assert out.is_contiguous() and torch.equal(out, x.contiguous())
    back = relayout(out, torch.full((batch, length, channels), float("nan"), dtype=dtype).transpose(1, 2))
    assert back.stride() == (length * channels, 1, channels) and torch.equal(back, x)


def test_channel_major_is_differentiable_and_returns_time_major_gradients(monkeypatch):
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    leaf = torch.randn(2, 40, 24, requires_grad=True)  # (batch, L, E) as a linear layer gives it
    x = leaf.transpose(1, 2)
    y = channel_major(x)
    assert y.is_contiguous() and torch.equal(y, x.contiguous())
    weight = torch.randn_like(y)
    (y * weight).sum().backward()
    assert torch.equal(leaf.grad, weight.transpose(1, 2))


def test_channel_major_leaves_contiguous_and_other_layouts_to_torch(monkeypatch):
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    x = torch.randn(2, 3, 5)
    assert channel_major(x) is x
    strided = torch.randn(2, 6, 10)[:, ::2]  # channels not contiguous: Tensor.contiguous
    assert torch.equal(channel_major(strided), strided.contiguous())


@pytest.mark.parametrize("forced", [True, False], ids=["triton", "reference"])
def test_time_major_is_exact_differentiable_and_returns_channel_major_gradients(forced, monkeypatch):
    """time_major: the same values laid out (batch, L, E), so the transposed view is contiguous for a
    linear layer; its gradient comes back channel-major (what the scan's output and the conv's expect)."""
    from genomix.kernels.transpose import time_major

    if forced:
        monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    leaf = torch.randn(2, 70, 130, requires_grad=True)  # (batch, E, L) as the scan writes it
    y = time_major(leaf)
    assert y.shape == leaf.shape and y.transpose(1, 2).is_contiguous() and torch.equal(y, leaf)
    weight = torch.randn(2, 130, 70)
    (y.transpose(1, 2) * weight).sum().backward()
    assert leaf.grad.is_contiguous() and torch.equal(leaf.grad, weight.transpose(1, 2))
    assert time_major(y) is y  # already time-major
