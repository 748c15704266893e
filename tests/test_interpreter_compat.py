"""The interpreter fix of :mod:`interpreter_compat`: a kernel whose loop bound is a run-time argument runs
without converting a one-element array to ``int`` (NumPy 2.4 warns of it, NumPy 2.5 refuses it)."""
from __future__ import annotations

import warnings

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@triton.jit
def _sum_of_first(x_ptr, out_ptr, n):
    total = 0.0
    for i in range(n):
        total += tl.load(x_ptr + i)
    tl.store(out_ptr, total)


def test_a_run_time_loop_bound_needs_no_array_to_int_conversion():
    x = torch.arange(8, dtype=torch.float32)
    out = torch.zeros(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # what NumPy 2.5 makes an error
        _sum_of_first[(1,)](x, out, 5)
    assert out.item() == 10.0
