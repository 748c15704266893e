"""genomix.models.linear: F.linear's numbers, with the bias gradient as a matrix product."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genomix.models.linear import Linear, linear, linear_gelu


def _grads(fn, x, layer):
    x = x.detach().clone().requires_grad_()
    out = fn(x, layer.weight, layer.bias)
    out.backward(torch.ones_like(out) * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype))
    grads = [x.grad, layer.weight.grad, layer.bias.grad]
    layer.zero_grad(set_to_none=True)
    return out, grads


@pytest.mark.parametrize("shape", [(7, 5), (2, 9, 5), (3, 1, 4, 5)])
def test_forward_and_gradients_equal_f_linear(shape):
    torch.manual_seed(0)
    layer = nn.Linear(5, 3).double()
    x = torch.randn(*shape, dtype=torch.float64)
    got, got_grads = _grads(linear, x, layer)
    want, want_grads = _grads(F.linear, x, layer)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_autocast_casts_like_f_linear_and_returns_fp32_parameter_grads():
    torch.manual_seed(1)
    layer = Linear(8, 4)
    x = torch.randn(2, 6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        want = F.linear(x, layer.weight, layer.bias)
    assert out.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(out, want)
    out.float().sum().backward()
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == torch.float32
    torch.testing.assert_close(layer.bias.grad, torch.full((4,), 12.0))


def test_without_a_bias_gradient_it_is_f_linear():
    layer = Linear(4, 2)
    layer.bias.requires_grad_(False)
    out = layer(torch.randn(3, 4, requires_grad=True))
    assert type(out.grad_fn).__name__ == "AddmmBackward0"
    assert isinstance(layer, nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}


def test_a_feature_major_input_gets_its_gradient_in_the_same_layout():
    """M2's out_linear reads the (1, d, L) convolution output transposed; dx comes back (1, d, L)-contiguous."""
    torch.manual_seed(2)
    layer = nn.Linear(6, 4).double()
    y = torch.randn(1, 6, 11, dtype=torch.float64, requires_grad=True)
    linear(y.transpose(1, 2), layer.weight, layer.bias).sum().backward()
    assert y.grad.is_contiguous()
    got = y.grad.clone()
    y.grad = None
    F.linear(y.transpose(1, 2), layer.weight, layer.bias).sum().backward()
    torch.testing.assert_close(got, y.grad)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_feature_major_input_adds_its_bias_in_the_gemm(batch):
    """Without gradients a (1, L, d) view of (1, d, L) rows is one addmm (no separate bias add); a batch of
    such views does not flatten without a copy and stays on F.linear. Same numbers either way."""
    torch.manual_seed(3)
    layer = Linear(6, 4).double()
    y = torch.randn(batch, 6, 11, dtype=torch.float64).transpose(1, 2)
    calls = []
    original = torch.addmm
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "addmm", lambda *a, **kw: calls.append(1) or original(*a, **kw))
        got = layer(y)
    assert calls == ([1] if batch == 1 else [])
    torch.testing.assert_close(got, F.linear(y, layer.weight, layer.bias))


def test_linear_gelu_on_cpu_is_the_tanh_gelu_with_gradients():
    torch.manual_seed(4)
    layer = nn.Linear(5, 7).double()
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    got = linear_gelu(x, layer.weight, layer.bias)
    torch.testing.assert_close(got, F.gelu(F.linear(x, layer.weight, layer.bias), approximate="tanh"))
    got.sum().backward()
    assert x.grad is not None and layer.bias.grad is not None


@pytest.mark.gpu  # the fused GEMM epilogue runs on CUDA
@pytest.mark.parametrize("shape", [(1, 1, 64), (2, 300, 64), (1, 4096, 256)])
def test_linear_gelu_epilogue_on_cuda_is_the_tanh_gelu(monkeypatch, shape):
    """cuBLASLt's epilogue (or torch's fallback for shapes it refuses) must be the tanh approximation: in
    fp32 the tanh and exact GELUs differ by up to ~5e-4, far above this tolerance."""
    torch.manual_seed(5)
    layer = nn.Linear(shape[-1], 4 * shape[-1]).cuda()
    x = torch.randn(*shape, device="cuda") * 2
    with torch.no_grad():
        want = F.gelu(F.linear(x.double(), layer.weight.double(), layer.bias.double()), approximate="tanh")
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
        got = linear_gelu(x, layer.weight, layer.bias)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = linear_gelu(x, layer.weight, layer.bias)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), want, rtol=2e-2, atol=2e-2)
