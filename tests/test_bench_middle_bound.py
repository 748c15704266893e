"""kernels/bench_middle_bound.py's probe of a fused middle level (run by the CPU interpreter): a 4096-point
row transformed in three 16-point Monarch steps, multiplied by the filter's spectrum and transformed back is
the circular convolution of the row with the filter, against torch.fft in float64."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.bench_middle_bound import ROW, middle_probe, spectrum_in_bin_order


def _rows(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.complex(torch.randn(n, ROW, generator=g), torch.randn(n, ROW, generator=g)) / 64).to(torch.complex32)


@pytest.mark.parametrize("filter_dft", [True, False], ids=["filter_dft", "spectrum"])
@pytest.mark.parametrize("dots", [1, 4])
def test_probe_is_the_circular_convolution(filter_dft, dots):
    x, k = _rows(2, 0), _rows(2, 1)
    want = torch.fft.ifft(torch.fft.fft(x.to(torch.complex128)) * torch.fft.fft(k.to(torch.complex128)))
    operand = k if filter_dft else spectrum_in_bin_order(k).to(torch.complex32)
    got = middle_probe(x, operand, 1.0 / ROW, filter_dft=filter_dft, dots=dots).to(torch.complex128)
    errors = (got - want).abs().norm(dim=-1) / want.abs().norm(dim=-1)
    assert errors.max() < 1e-2, errors


def test_probe_refuses_other_rows():
    with pytest.raises(ValueError, match="rows of 4096"):
        middle_probe(_rows(1, 0)[:, :2048], _rows(1, 1)[:, :2048], 1.0)
