"""The dispatch rule: CUDA inputs take an op's Triton path only when that op is on by default or opted in."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from genomix.kernels import dispatch

CUDA = SimpleNamespace(is_cuda=True)
CPU = SimpleNamespace(is_cuda=False)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("GENOMIX_FORCE_REFERENCE", "GENOMIX_FORCE_TRITON", "GENOMIX_TRITON_OPS", "GENOMIX_REFERENCE_OPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)


def test_cuda_inputs_take_default_kernels(monkeypatch):
    monkeypatch.setattr(dispatch, "TRITON_BY_DEFAULT", frozenset({"fast_op"}))
    assert dispatch.use_triton(CUDA, None, CUDA, op="fast_op")
    assert not dispatch.use_triton(CUDA, CPU, op="fast_op")
    assert not dispatch.use_triton(CUDA, op="slow_op")


def test_opt_in_and_overrides(monkeypatch):
    monkeypatch.setattr(dispatch, "TRITON_BY_DEFAULT", frozenset())
    monkeypatch.setenv("GENOMIX_TRITON_OPS", "other, slow_op")
    assert dispatch.use_triton(CUDA, op="slow_op")
    assert not dispatch.use_triton(CPU, op="slow_op")
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.use_triton(CPU, op="unlisted")  # the interpreter runs CPU tensors
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not dispatch.use_triton(CPU, op="unlisted")  # a GPU machine's CPU tensors: Triton cannot run them
    assert dispatch.use_triton(CUDA, op="unlisted")
    monkeypatch.setenv("GENOMIX_FORCE_REFERENCE", "yes")
    assert not dispatch.use_triton(CUDA, op="slow_op")


def test_reference_ops_turn_single_kernels_off(monkeypatch):
    monkeypatch.setattr(dispatch, "TRITON_BY_DEFAULT", frozenset({"a", "b"}))
    monkeypatch.setenv("GENOMIX_TRITON_OPS", "c")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "a, c")
    assert not dispatch.use_triton(CUDA, op="a")
    assert dispatch.use_triton(CUDA, op="b")
    assert not dispatch.use_triton(CUDA, op="c")


def test_no_triton_means_reference(monkeypatch):
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    assert not dispatch.use_triton(CUDA, op="fftconv")


def test_fftconv_splits_on_chip_convolutions_from_long_ones():
    import torch

    from genomix.kernels.fftconv import ON_CHIP_MAX_L, dispatch_name

    assert dispatch_name(torch.empty(2, 3, ON_CHIP_MAX_L, dtype=torch.bfloat16)) == "fftconv-short"
    assert dispatch_name(torch.empty(1, 3, 17, dtype=torch.float16)) == "fftconv-short"
    assert dispatch_name(torch.empty(1, 3, ON_CHIP_MAX_L + 1, dtype=torch.bfloat16)) == "fftconv"
    assert dispatch_name(torch.empty(1, 3, 64, dtype=torch.float32)) == "fftconv"
    assert "fftconv-short" in dispatch.TRITON_BY_DEFAULT and "fftconv" not in dispatch.TRITON_BY_DEFAULT


def test_environment_sets_then_restores_or_unsets(monkeypatch):
    """The benchmarks' path switches: every variable is back as it was after the block, set or not."""
    monkeypatch.setenv("GENOMIX_TRITON_OPS", "fftconv")
    with dispatch.environment({"GENOMIX_TRITON_OPS": "", "GENOMIX_REFERENCE_OPS": ",".join(dispatch.FFTCONV_OPS)}):
        assert not dispatch.use_triton(CUDA, op="fftconv-cufft")
        assert not dispatch.use_triton(CUDA, op="fftconv")
    assert dispatch.use_triton(CUDA, op="fftconv") and dispatch.use_triton(CUDA, op="fftconv-cufft")
    assert "GENOMIX_REFERENCE_OPS" not in os.environ


def test_before_hopper_only_the_4096_point_programs_run_on_chip(monkeypatch):
    import torch

    from genomix.kernels.fftconv import ON_CHIP_MAX_L, dispatch_name
    from genomix.kernels.fftconv.routing import PRE_HOPPER_ON_CHIP_MAX_L

    u = torch.empty(1, 3, ON_CHIP_MAX_L, dtype=torch.bfloat16)
    for capability, name in (((8, 0), "fftconv"), ((8, 9), "fftconv"), ((9, 0), "fftconv-short"),
                             ((10, 0), "fftconv-short")):
        monkeypatch.setattr(dispatch, "compute_capability", lambda *tensors, answer=capability: answer)
        assert dispatch_name(u) == name, capability
    monkeypatch.setattr(dispatch, "compute_capability", lambda *tensors: (8, 6))
    assert dispatch_name(torch.empty(1, 3, PRE_HOPPER_ON_CHIP_MAX_L, dtype=torch.float16)) == "fftconv-short"
    assert PRE_HOPPER_ON_CHIP_MAX_L < ON_CHIP_MAX_L


def test_compute_capability_is_none_off_cuda():
    import torch

    assert dispatch.compute_capability(torch.empty(1), None) is None
