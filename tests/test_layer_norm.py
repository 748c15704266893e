"""LayerNorm kernel: reference vs nn.LayerNorm (bit for bit in fp32), Triton kernels (interpreter on CPU)
vs the float64 reference forward and backward, the dispatch rules, and the drop-in ``norms.LayerNorm``
under CPU autocast. The GPU counterpart at real shapes is kernels/bench_layer_norm.py."""
from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from genomix.kernels.layer_norm import MAX_TRITON_N, layer_norm, layer_norm_ref, layer_norm_triton
from genomix.kernels.layer_norm import ops
from genomix.models.norms import LayerNorm

BF16, F32 = torch.bfloat16, torch.float32
# The subpackage itself (genomix.kernels.layer_norm as an attribute is the dispatch function it exports).
layer_norm_pkg = importlib.import_module("genomix.kernels.layer_norm")


def _inputs(shape, dtype, affine=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g) * 3 + 1.5).to(dtype)  # an offset mean: a one-pass variance would lose digits
    n = shape[-1]
    weight = torch.randn(n, generator=g) if affine else None
    bias = torch.randn(n, generator=g) if affine else None
    return x, weight, bias


def _rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-30)).item()


def _check_against_float64(fn, x, weight, bias, out_dtype, tol, seed=1):
    """fn's output and x/weight/bias gradients vs layer_norm_ref on float64 copies (relative L2 <= tol)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (x, weight, bias)]
    out = fn(*leaves, 1e-5, out_dtype)
    assert out.dtype == (out_dtype or x.dtype) and out.shape == x.shape
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    out.backward(dy)
    ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = layer_norm_ref(*ref_leaves, 1e-5)
    ref.backward(dy.double())
    pairs = [("y", out, ref)] + [(name, t.grad, r.grad) for name, t, r in zip(("dx", "dweight", "dbias"), leaves, ref_leaves)
                                  if t is not None]
    for name, got, want in pairs:
        assert got.dtype == (out.dtype if name == "y" else {"dx": x, "dweight": weight, "dbias": bias}[name].dtype)
        err = _rel_l2(got, want)
        assert err <= tol, f"{name}: relative L2 error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(3, 37, 256), (5, 118)])
def test_reference_is_nn_layer_norm_in_fp32(shape, affine):
    x, weight, bias = _inputs(shape, F32, affine)
    module = nn.LayerNorm(shape[-1], elementwise_affine=affine)
    if affine:
        with torch.no_grad():
            module.weight.copy_(weight)
            module.bias.copy_(bias)
    torch.testing.assert_close(layer_norm_ref(x, weight, bias, module.eps), module(x), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=BF16):  # the reference ignores autocast and casts only at the end
        got = layer_norm_ref(x, weight, bias, module.eps, BF16)
    torch.testing.assert_close(got, module(x).to(BF16), rtol=0, atol=0)


SHAPES = [(3, 37, 256), (5, 118), (1, 1000, 64), (2, 7, 1, 768)]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("x_dtype,out_dtype", [(F32, None), (F32, BF16), (BF16, None), (BF16, F32)],
                         ids=["f32", "f32->bf16", "bf16", "bf16->f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_triton_matches_float64_reference(shape, x_dtype, out_dtype, affine):
    x, weight, bias = _inputs(shape, x_dtype, affine, seed=shape[-1])
    tol = 1e-5 if x_dtype == F32 and out_dtype in (None, F32) else 1e-2
    _check_against_float64(layer_norm_triton, x, weight, bias, out_dtype, tol)


def test_triton_strided_inputs_and_multi_tile_backward(monkeypatch):
    """Rows read through their stride (a column slice) or copied (last dim not contiguous); with few backward
    programs each walks several row tiles, the last one partly past M (1000 rows, 64-row tiles, 6 a program)."""
    monkeypatch.setattr(ops, "BWD_MAX_PROGRAMS", 3)
    wide, weight, bias = _inputs((1, 1000, 100), F32)
    _check_against_float64(layer_norm_triton, wide[..., :64], weight[:64], bias[:64], BF16, 1e-2)
    _check_against_float64(layer_norm_triton, wide[..., :64], weight[:64], None, None, 1e-5)
    transposed = _inputs((2, 64, 30), F32)[0].transpose(1, 2)
    _check_against_float64(layer_norm_triton, transposed, weight[:64], bias[:64], None, 1e-5)


def test_the_check_catches_a_wrong_kernel(monkeypatch):
    """Mutation: tiles half a row wide leave columns unnormalized and unwritten; the check must fail. (A
    variance with N - 1 instead of N is off by 1/(2N) relative, 2e-3 at N = 256, also far above 1e-5.)"""
    def half_row(n, elements, warps):
        block_m, block_n, warps = real_tile(n, elements, warps)
        return block_m, block_n // 2, warps

    real_tile = ops.tile
    monkeypatch.setattr(ops, "tile", half_row)
    x, weight, bias = _inputs((5, 256), F32)
    with pytest.raises(AssertionError, match="relative L2 error"):
        _check_against_float64(layer_norm_triton, x, weight, bias, None, 1e-5)


def test_dispatch_paths(monkeypatch):
    calls = []
    monkeypatch.setattr(layer_norm_pkg, "layer_norm_triton", lambda *a: calls.append(a) or layer_norm_ref(*a))
    x, weight, bias = _inputs((4, 32), F32)
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    layer_norm(x, weight, bias, 1e-5, BF16)
    assert len(calls) == 1 and calls[0][4] == BF16
    layer_norm(x.double(), None, None)  # float64: the reference keeps its precision
    layer_norm(torch.randn(2, MAX_TRITON_N + 1))  # wider than one program's row tile
    layer_norm(torch.randn(0, 32))  # empty
    assert len(calls) == 1
    monkeypatch.setenv("GENOMIX_FORCE_REFERENCE", "1")
    layer_norm(x, weight, bias)
    assert len(calls) == 1


def test_dispatch_rejects_bad_shapes():
    x = torch.randn(3, 8)
    with pytest.raises(ValueError, match="weight must be"):
        layer_norm(x, torch.randn(7))
    with pytest.raises(ValueError, match="bias must be"):
        layer_norm(x, None, torch.randn(8, 1))
    with pytest.raises(ValueError, match="0-d"):
        layer_norm(torch.tensor(1.0))


def _pair(*args, **kwargs) -> tuple[LayerNorm, nn.LayerNorm]:
    torch.manual_seed(0)
    ours, theirs = LayerNorm(*args, **kwargs), nn.LayerNorm(*args, **kwargs)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("kwargs", [{}, {"elementwise_affine": False}, {"bias": False}])
def test_module_is_a_drop_in(kwargs):
    ours, theirs = _pair(24, eps=1e-6, **kwargs)
    assert isinstance(ours, nn.LayerNorm)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expected input of shape \(\*, 24\)"):
        ours(torch.randn(2, 5, 12))


def test_module_several_normalized_dims():
    ours, theirs = _pair((3, 8))
    x = torch.randn(2, 5, 3, 8)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_module_under_cpu_autocast_returns_bf16(triton, monkeypatch):
    if triton:
        monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    ours, theirs = _pair(64)
    x = (torch.randn(3, 40, 64) * 2 + 1).requires_grad_()
    with torch.autocast("cpu", dtype=BF16):
        got = ours(x)
        want = theirs(x).to(BF16)  # autocast runs nn.LayerNorm in fp32; the next Linear casts
    assert got.dtype == BF16 and theirs(x).dtype == F32
    if triton:  # fp32 math in another order: at most one bf16 rounding step apart
        torch.testing.assert_close(got, want, rtol=8e-3, atol=8e-3)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.float().sum().backward()
    assert x.grad.dtype == F32 and ours.weight.grad.dtype == F32
    assert ours(x.detach()).dtype == F32  # outside autocast: x's dtype
    with torch.autocast("cpu", dtype=BF16):
        assert ours(x.detach().double()).dtype == torch.float64  # autocast leaves float64 alone; so do we


# ------------------------------------------------------------------ RMSNorm and the fused add-norm
from genomix.kernels.layer_norm import add_norm, add_norm_ref, add_norm_triton, rms_norm, rms_norm_ref  # noqa: E402
from genomix.models.mamba import RMSNorm  # noqa: E402


def test_rms_norm_reference_is_mamba_ssm_formula():
    x, weight, _ = _inputs((3, 17, 64), F32)
    want = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-5) * weight
    torch.testing.assert_close(rms_norm_ref(x, weight, 1e-5), want, rtol=0, atol=0)
    module = RMSNorm(64)
    with torch.no_grad():
        module.weight.copy_(weight)
    torch.testing.assert_close(module(x), want, rtol=0, atol=0)
    assert rms_norm_ref(x.to(BF16), weight, 1e-5).dtype == BF16


def _add_norm_case(shape, x_dtype, residual_dtype_in, residual_out_dtype, seed, strided=False):
    """x, residual (None when residual_dtype_in is None), fp32 weight/bias; with ``strided`` both are column
    slices of wider tensors (as Caduceus's strands are)."""
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    wide_shape = (*shape[:-1], n + 24) if strided else shape
    x = (torch.randn(*wide_shape, generator=g) * 2).to(x_dtype)[..., :n]
    residual = None
    if residual_dtype_in is not None:
        offset = 3 if strided else 0
        residual = (torch.randn(*wide_shape, generator=g) * 3 + 1).to(residual_dtype_in)[..., offset:n + offset]
    weight, bias = torch.randn(n, generator=g), torch.randn(n, generator=g)
    return x, residual, weight, bias


def _check_add_norm(x, residual, weight, bias, rms, out_dtype, residual_dtype, tol, seed=7):
    """add_norm_triton's (y, s) and the gradients of x, residual, weight and bias (a loss on both outputs)
    against add_norm_ref on float64 copies: relative L2 <= tol (fp32 sums of the residual: exact-ish)."""
    bias = None if rms else bias
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (x, residual, weight, bias)]
    y, s = add_norm_triton(*leaves, 1e-5, rms, out_dtype, residual_dtype)
    assert y.dtype == out_dtype and s.dtype == residual_dtype and y.shape == s.shape == x.shape
    g = torch.Generator().manual_seed(seed)
    gy, gs = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
    ((y.float() * gy).sum() + (s.float() * gs).sum()).backward()
    ref_leaves = [None if t is None else t.detach().double().requires_grad_() for t in (x, residual, weight, bias)]
    ry, rs = add_norm_ref(*ref_leaves, 1e-5, rms, torch.float64, torch.float64)
    ((ry * gy.double()).sum() + (rs * gs.double()).sum()).backward()
    pairs = [("y", y, ry), ("s", s, rs)] + [
        (name, t.grad, r.grad) for name, t, r in zip(("dx", "dresidual", "dweight", "dbias"), leaves, ref_leaves)
        if t is not None]
    for name, got, want in pairs:
        err = _rel_l2(got, want)
        assert err <= tol, f"{name}: relative L2 error {err:.2e} > {tol:.0e}"
    assert leaves[0].grad.dtype == x.dtype
    if residual is not None:
        assert leaves[1].grad.dtype == residual.dtype


ADD_NORM_CASES = [  # x dtype, residual dtype (None: first block), residual output dtype, out dtype
    (F32, F32, F32, F32),
    (BF16, F32, F32, BF16),  # Mamba under autocast: bf16 mixer output, fp32 residual stream
    (BF16, None, F32, BF16),  # the first block: s = x in fp32
    (BF16, BF16, BF16, F32),  # residual_in_fp32=False
]


@pytest.mark.parametrize("rms", [True, False], ids=["rms", "layernorm"])
@pytest.mark.parametrize("case", ADD_NORM_CASES, ids=["f32", "bf16+f32", "first", "bf16+bf16"])
@pytest.mark.parametrize("shape,strided", [((2, 37, 64), False), ((1, 50, 40), True)], ids=["dense", "slices"])
def test_add_norm_triton_matches_float64_reference(case, rms, shape, strided):
    x_dtype, res_in, res_out, out_dtype = case
    x, residual, weight, bias = _add_norm_case(shape, x_dtype, res_in, res_out, seed=shape[-1], strided=strided)
    tol = 1e-5 if {x_dtype, res_out, out_dtype} == {F32} else 1e-2
    _check_add_norm(x, residual, weight, bias, rms, out_dtype, res_out, tol)


def test_add_norm_multi_tile_backward(monkeypatch):
    """Few backward programs, each walking several row tiles, the last one partly past M."""
    monkeypatch.setattr(ops, "BWD_MAX_PROGRAMS", 3)
    x, residual, weight, bias = _add_norm_case((1, 1000, 64), F32, F32, F32, seed=3)
    _check_add_norm(x, residual, weight, bias, True, F32, F32, 1e-5)


def test_add_norm_check_catches_a_dropped_residual_gradient(monkeypatch):
    """Mutation: a backward that ignores the gradient flowing into the residual output must fail the check."""
    real_apply = ops.NormFn.backward

    def without_dres(ctx, dy, d_residual_out=None):
        return real_apply(ctx, dy, None)

    monkeypatch.setattr(ops.NormFn, "backward", staticmethod(without_dres))
    x, residual, weight, bias = _add_norm_case((2, 9, 32), F32, F32, F32, seed=5)
    with pytest.raises(AssertionError, match="dx: relative L2 error"):
        _check_add_norm(x, residual, weight, bias, True, F32, F32, 1e-5)


def test_add_norm_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(layer_norm_pkg, "add_norm_triton", lambda *a: calls.append(a) or add_norm_ref(*a[:8]))
    x, residual, weight, _ = _add_norm_case((3, 32), BF16, F32, F32, seed=0)
    y, s = add_norm(x, residual, weight, None, 1e-5, True)
    assert not calls and y.dtype == F32 and s.dtype == F32  # CPU without forcing: the reference
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    add_norm(x, residual, weight, None, 1e-5, True, BF16, F32)
    assert len(calls) == 1 and calls[0][6:] == (BF16, F32, False)
    add_norm(x, residual, weight.to(BF16), None, 1e-5, True, residual_dtype=F32)  # would round s: reference
    add_norm(x.double(), None, weight, None, 1e-5, True)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="residual must have x's shape"):
        add_norm(x, residual[:2], weight)
    with pytest.raises(ValueError, match="add_norm: weight must be"):
        add_norm(x, residual, weight[:5])


@pytest.mark.parametrize("triton", [False, True])
def test_add_norm_in_place_writes_the_sum_into_the_residual(triton, monkeypatch):
    """Inference's in-place add-norm: the same (y, s) as out of place, s written into (and returned as) the
    residual's own buffer; refused where a gradient could be recorded or the residual has another dtype."""
    if triton:
        monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    x, residual, weight, bias = _add_norm_case((5, 48), BF16, F32, F32, seed=3)
    want_y, want_s = add_norm(x, residual, weight, bias, 1e-5, False, BF16)
    buffer = residual.clone()
    with torch.no_grad():
        y, s = add_norm(x, buffer, weight, bias, 1e-5, False, BF16, inplace=True)
    assert s.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(s, want_s.detach(), rtol=0, atol=0)
    torch.testing.assert_close(y, want_y.detach(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="inplace"):
        add_norm(x, residual.clone().requires_grad_(), weight, bias, inplace=True)
    with torch.no_grad(), pytest.raises(ValueError, match="inplace"):
        add_norm(x, residual.to(BF16), weight, bias, residual_dtype=F32, inplace=True)


@pytest.mark.parametrize("dtype", [F32, BF16])
def test_rms_norm_triton_matches_reference(dtype, monkeypatch):
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    x, weight, _ = _inputs((4, 33, 48), dtype, seed=2)
    xr = x.detach().clone().requires_grad_()
    got = rms_norm(xr, weight, 1e-5, F32)
    xd = x.double().requires_grad_()
    want = rms_norm_ref(xd, weight.double(), 1e-5)
    assert _rel_l2(got, want) <= (1e-5 if dtype == F32 else 1e-2)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (got * gy).sum().backward()
    (want * gy.double()).sum().backward()
    assert xr.grad.dtype == dtype and _rel_l2(xr.grad, xd.grad) <= (1e-5 if dtype == F32 else 1e-2)
