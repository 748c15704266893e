"""The implicit filters' last projection: plain fp32 unless the model runs under 16-bit autocast on CUDA."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.implicit_filter.tf32_matmul import filter_projection, sixteen_bit_autocast


def test_fp32_product_and_gradients_on_cpu():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, generator=g, requires_grad=True)
    hidden = torch.randn(9, 4, generator=g, requires_grad=True)
    out = filter_projection(weight, hidden, mixed_precision=True)  # CPU: the flag changes nothing
    assert out.shape == (6, 9) and out.is_contiguous()
    torch.testing.assert_close(out, weight @ hidden.t())
    assert torch.autograd.gradcheck(lambda w, h: filter_projection(w, h, True),
                                    (weight.double(), hidden.double()))


def test_sixteen_bit_autocast_is_read_before_the_filter_disables_it():
    assert not sixteen_bit_autocast("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sixteen_bit_autocast("cpu")
        with torch.autocast("cpu", enabled=False):
            assert not sixteen_bit_autocast("cpu")


@pytest.mark.gpu  # TF32 tensor cores
def test_tf32_projection_on_cuda_restores_the_precision_setting():
    before = torch.backends.cuda.matmul.fp32_precision
    weight = torch.randn(256, 64, device="cuda", requires_grad=True)
    hidden = torch.randn(4096, 64, device="cuda", requires_grad=True)
    out = filter_projection(weight, hidden, mixed_precision=True)
    out.backward(torch.randn_like(out))
    exact = weight.double() @ hidden.double().t()
    assert ((out.double() - exact).norm() / exact.norm()).item() < 2e-3
    assert torch.backends.cuda.matmul.fp32_precision == before
    assert weight.grad is not None and hidden.grad is not None
