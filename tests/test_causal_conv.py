"""Short causal depthwise convolution: reference vs nn.Conv1d, Triton kernels (interpreter on CPU) vs the
reference in float64, forward and backward, channel-major and channels-last inputs, ragged tiles."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genomix.kernels import causal_conv1d, causal_conv1d_ref
from genomix.kernels.causal_conv import causal_conv1d_triton


def _inputs(batch, channels, length, width, dtype, channels_last, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    if channels_last:  # the in-projection's (B, L, C) output viewed as (B, C, L)
        x = torch.randn(batch, length, channels, generator=g).to(dtype).transpose(1, 2)
    else:
        x = torch.randn(batch, channels, length, generator=g).to(dtype)
    weight = torch.randn(channels, width, generator=g)
    b = torch.randn(channels, generator=g) if bias else None
    return x, weight, b


@pytest.mark.parametrize("channels_last", [True, False], ids=["time-major", "channel-major"])
@pytest.mark.parametrize("width", [3, 4])
def test_reference_is_nn_conv1d_causal(width, channels_last):
    """nn.Conv1d's causal part, in float64 to rounding (the reference sums the taps in its own order, so
    fp32 results differ from the library convolution's in the last bit), and it keeps x's memory layout."""
    x, weight, bias = _inputs(2, 5, 17, width, torch.float64, channels_last=channels_last)
    weight, bias = weight.double(), bias.double()
    conv = nn.Conv1d(5, 5, width, groups=5, padding=width - 1, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(weight.unsqueeze(1))
        conv.bias.copy_(bias)
        expected = conv(x)[..., :17]
    out = causal_conv1d_ref(x, weight, bias)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(causal_conv1d_ref(x, weight, bias, "silu"), F.silu(expected), rtol=1e-13, atol=1e-13)
    assert out.stride(1 if channels_last else 2) == 1


def test_reference_is_causal():
    x, weight, bias = _inputs(1, 3, 40, 4, torch.float32, channels_last=False)
    changed = x.clone()
    changed[..., 25:] += 1.0
    a, b = causal_conv1d_ref(x, weight, bias), causal_conv1d_ref(changed, weight, bias)
    torch.testing.assert_close(a[..., :25], b[..., :25], rtol=0, atol=0)
    assert not torch.allclose(a[..., 25:], b[..., 25:])


def _grads(fn, x, weight, bias, activation, grad_out):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    if x.stride(1) == 1:  # keep the channels-last layout of the leaf
        leaves[0] = x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    out = fn(*leaves, activation)
    out.backward(grad_out.to(out.dtype))
    return out, [t.grad for t in leaves if t is not None]


CASES = [  # batch, channels, length, width, channels_last, bias, activation
    (2, 70, 131, 3, True, True, None),
    (1, 64, 300, 4, False, True, "silu"),
    (3, 5, 1, 4, True, False, "silu"),
    (2, 130, 257, 2, False, False, None),
    (1, 9, 1000, 3, True, True, "silu"),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("case", CASES, ids=[f"B{c[0]}C{c[1]}L{c[2]}K{c[3]}" for c in CASES])
def test_triton_matches_float64_reference(case, dtype, tol):
    batch, channels, length, width, channels_last, bias, activation = case
    x, weight, b = _inputs(batch, channels, length, width, dtype, channels_last, bias, seed=length)
    grad_out = torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(1))
    out, grads = _grads(causal_conv1d_triton, x, weight, b, activation, grad_out)
    ref_inputs = [t.double() if t is not None else None for t in (x, weight, b)]
    ref_out, ref_grads = _grads(causal_conv1d_ref, *ref_inputs, activation, grad_out.double())
    assert out.dtype == dtype and out.is_contiguous()
    for name, got, want in zip(("out", "dx", "dweight", "dbias"), [out, *grads], [ref_out, *ref_grads]):
        err = ((got.double() - want).norm() / want.norm().clamp_min(1e-30)).item()
        assert err <= tol, f"{name}: relative L2 error {err:.2e} > {tol:.0e}"
    assert grads[0].stride() == x.stride() or not channels_last  # dx keeps the channels-last layout


def test_dispatch_rejects_bad_shapes():
    x = torch.randn(1, 4, 10)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d(x, torch.randn(3, 3))
    with pytest.raises(ValueError, match="bias must be"):
        causal_conv1d(x, torch.randn(4, 3), torch.randn(5))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, torch.randn(4, 3), None, "relu")
    with pytest.raises(ValueError, match=r"\(batch, channels, length\)"):
        causal_conv1d(x[0], torch.randn(4, 3))
