"""GELU-gated linear unit: the reference vs ``F.gelu(gate, approximate="tanh") * value`` (bit for bit in
fp32), the Triton kernels (interpreter on CPU) vs float64 autograd of that formula forward and backward
with NaN-filled output buffers, the dispatch rules, and M2's MLP using it. The GPU counterparts at real
shapes are kernels/gpu_check_gelu_glu.py and kernels/bench_gelu_glu.py."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from genomix.kernels import dispatch
from genomix.kernels.gelu_glu import gelu_glu, gelu_glu_ref, gelu_glu_triton
from genomix.kernels.gelu_glu import ops

# The interpreter's numpy exp overflows to inf in gelu's far negative tail (sigmoid -> 0, as intended).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")

BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32
# The subpackage itself (genomix.kernels.gelu_glu as an attribute is the dispatch function it exports).
gelu_glu_pkg = importlib.import_module("genomix.kernels.gelu_glu")


def _h(shape, dtype=F32, seed=0) -> torch.Tensor:
    """Pre-activations spread over gelu's curved part and both tails (std 3)."""
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3).to(dtype)


def _formula(h: torch.Tensor, d_inner: int) -> torch.Tensor:
    gate, value = h.split(d_inner, dim=-1)
    return F.gelu(gate, approximate="tanh") * value


def _rel_max(got: torch.Tensor, want: torch.Tensor) -> float:
    """max|got - want| / max|want| (NaN if got has a NaN)."""
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def _check_against_float64(h: torch.Tensor, d_inner: int, tol: float, fn=gelu_glu_triton, dout=None):
    """fn's output and dh vs autograd of the formula on float64 copies (max error over max magnitude <= tol)."""
    leaf = h.detach().requires_grad_()
    out = fn(leaf, d_inner)
    assert out.dtype == h.dtype and out.shape == (*h.shape[:-1], d_inner) and out.is_contiguous()
    if dout is None:
        dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(h.dtype)
    (dh,) = torch.autograd.grad(out, leaf, dout)
    assert dh.dtype == h.dtype and dh.shape == h.shape
    ref_leaf = h.detach().double().requires_grad_()
    ref = _formula(ref_leaf, d_inner)
    (ref_dh,) = torch.autograd.grad(ref, ref_leaf, dout.double())
    for name, got, want in (("out", out, ref), ("dh", dh, ref_dh)):
        assert torch.isfinite(got).all(), f"{name}: non-finite elements (unwritten memory?)"
        err = _rel_max(got, want)
        assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("shape", [(37, 200), (2, 5, 80)])
def test_reference_is_the_formula_in_fp32(shape):
    h = _h(shape)
    torch.testing.assert_close(gelu_glu_ref(h, shape[-1] // 2), _formula(h, shape[-1] // 2), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=BF16):  # autocast off inside; the output keeps h's dtype
        assert gelu_glu_ref(h, shape[-1] // 2).dtype == F32


# (shape, d_inner): 1 row; rows not a multiple of the row tile (d 100 -> 32-row tiles, d 40 -> 64-row
# tiles, 130 rows = 2 full + 1 partial); 3-D; d = 1000 (one 1024-column tile, 4 rows a program).
SHAPES = [((1, 80), 40), ((37, 200), 100), ((130, 80), 40), ((3, 5, 80), 40), ((7, 2000), 1000)]


@pytest.mark.parametrize("dtype,tol", [(F32, 1e-5), (BF16, 1e-2)], ids=["f32", "bf16"])
@pytest.mark.parametrize("shape,d_inner", SHAPES, ids=["x".join(map(str, s)) for s, _ in SHAPES])
def test_triton_matches_float64(shape, d_inner, dtype, tol, nan_empty):
    _check_against_float64(_h(shape, dtype, seed=shape[0]), d_inner, tol)


def test_triton_fp16_and_reference_agree(nan_empty):
    h = _h((37, 200), F16)
    _check_against_float64(h, 100, 1e-2)
    torch.testing.assert_close(gelu_glu_triton(h), gelu_glu_ref(h, 100), rtol=1e-3, atol=1e-3)


def test_triton_strided_inputs(nan_empty):
    """Rows read in place through their stride (every other row; a column slice of a wider tensor), leading
    dims that do not flatten to one stride (transposed; every other row of a 3-D tensor: copied), and an
    expanded output gradient (stride 0, as from ``out.sum().backward()``)."""
    big = _h((60, 200))
    _check_against_float64(big[1::2], 100, 1e-5)
    _check_against_float64(_h((33, 208))[:, :200], 100, 1e-5)
    _check_against_float64(_h((5, 3, 80)).transpose(0, 1), 40, 1e-5)
    _check_against_float64(_h((2, 20, 80))[:, ::2], 40, 1e-5)
    _check_against_float64(_h((9, 80)), 40, 1e-5, dout=torch.ones(1, 1).expand(9, 40))


def test_triton_multiple_column_tiles(monkeypatch, nan_empty):
    """D wider than a program's tile: column tiles, the last one partial (d 100 in 64-column tiles)."""
    monkeypatch.setattr(ops, "FWD_TILE_ELEMENTS", 64)
    monkeypatch.setattr(ops, "BWD_TILE_ELEMENTS", 64)
    _check_against_float64(_h((5, 200)), 100, 1e-5)


def test_the_check_catches_unwritten_rows(monkeypatch, nan_empty):
    """Mutation: a grid one row tile short leaves the last rows unwritten; the NaN buffers make the check fail."""
    real_grid = ops._grid
    monkeypatch.setattr(ops, "_grid", lambda *shape: (real_grid(*shape)[0] - 1, real_grid(*shape)[1]))
    with pytest.raises(AssertionError, match="non-finite"):
        _check_against_float64(_h((130, 80)), 40, 1e-5)


def test_dispatch_paths(monkeypatch):
    calls = []
    monkeypatch.setattr(gelu_glu_pkg, "gelu_glu_triton", lambda h, d: calls.append(d) or gelu_glu_ref(h, d))
    for name in ("GENOMIX_FORCE_REFERENCE", "GENOMIX_FORCE_TRITON", "GENOMIX_REFERENCE_OPS"):
        monkeypatch.delenv(name, raising=False)
    assert "gelu_glu" in dispatch.TRITON_BY_DEFAULT
    h = _h((4, 32))
    gelu_glu(h)  # CPU tensors: the reference
    assert calls == []
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    gelu_glu(h)
    assert calls == [16]
    gelu_glu(h.double())  # float64: the reference keeps its precision
    gelu_glu(torch.randn(0, 32))  # empty
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "layer_norm,gelu_glu")
    gelu_glu(h)
    assert calls == [16]


def test_dispatch_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2 \\* d_inner"):
        gelu_glu(torch.randn(3, 8), 3)
    with pytest.raises(ValueError, match="2 \\* d_inner"):
        gelu_glu(torch.randn(3, 7))
    with pytest.raises(ValueError, match="0-d"):
        gelu_glu(torch.tensor(1.0))


@pytest.mark.parametrize("path", ["reference", "triton"])
def test_m2_mlp_uses_it(path, monkeypatch):
    """MonarchGLU's forward and gradients equal the unfused formula (bit for bit on the reference path)."""
    from genomix.models.m2 import M2Config, MonarchGLU

    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1" if path == "triton" else "0")
    exact = {"rtol": 0, "atol": 0} if path == "reference" else {"rtol": 1e-5, "atol": 1e-6}
    torch.manual_seed(0)
    mlp = MonarchGLU(M2Config(d_model=32, n_layer=1, d_inner=48, dropout=0.0))
    x = torch.randn(2, 5, 32, requires_grad=True)
    got = mlp(x)
    want = mlp.wo(_formula(mlp.gated_layers(mlp.layernorm(x)), 48))
    torch.testing.assert_close(got, want, **exact)
    grads = torch.autograd.grad(got.sum(), [x, *mlp.parameters()])
    want_grads = torch.autograd.grad(want.sum(), [x, *mlp.parameters()])
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a, b)
