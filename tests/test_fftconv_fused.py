"""The Triton fftconv's fused extra outputs (interpreter on CPU, small shapes).

The forward's apply pass can also write the pre-postgate output z (kept for d_postgate), and the
backward's one apply pass writes du, dpregate, dpostgate and the per-row partial sums for dD
(``ops.conv_apply``'s ``z``/``m2``/``out2``/``zin``/``out3``/``dsum``). Each is checked against the
plain pass plus PyTorch arithmetic, written into NaN-poisoned buffers (every element must be written).
"""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.fftconv import fftconv_ref, fftconv_triton
from genomix.kernels.fftconv import autograd as autograd_mod
from genomix.kernels.fftconv import plan as plan_mod
from genomix.kernels.fftconv.autograd import _precision, _spectrum
from genomix.kernels.fftconv.ops import conv_apply

TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def _tensors(B, H, L, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    full = [torch.randn(B, H, L, generator=g).to(dtype) for _ in range(5)]  # u, pre, post, m2, zin
    return full, torch.randn(H, L, generator=g) / L ** 0.5, torch.randn(H, generator=g)


def _nan(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype)


@pytest.mark.parametrize("L,max_row", [(100, 4096), (301, 256)])  # short path; multi-pass (col_inv_kernel)
def test_apply_fused_outputs_fill_poisoned_buffers(monkeypatch, L, max_row):
    monkeypatch.setattr(plan_mod, "MAX_ROW", max_row)
    dtype = torch.float32
    B, H = (2, 3) if max_row == 4096 else (2, 1)
    (u, pre, post, m2, zin), k, D = _tensors(B, H, L, dtype, seed=L)
    tuning = plan_mod.VARIANTS["v1"]
    prec = _precision(dtype, False)
    plan = plan_mod.plan_for(L, tuning, prec)
    assert plan.short == (max_row == 4096)
    spec, _ = _spectrum(k, plan, False, prec, tuning)
    zv = conv_apply(u, pre, D, None, spec, plan, torch.float32, prec, tuning)  # plain pass, no post-gate
    y, z, out2 = (_nan(u.shape, dtype) for _ in range(3))
    out3 = _nan(u.shape, torch.bfloat16)  # outputs keep their own dtypes
    dsum = _nan((H,), torch.float32)
    got = conv_apply(u, pre, D, post, spec, plan, dtype, prec, tuning, out=y, z=z, m2=m2, out2=out2,
                     zin=zin, out3=out3, dsum=dsum)
    assert got is y
    for t in (y, z, out2, out3, dsum):
        assert not torch.isnan(t).any()
    assert torch.allclose(z, zv, rtol=1e-5, atol=1e-5)
    assert torch.allclose(y, zv * post, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out2, zv * m2, rtol=1e-5, atol=1e-5)
    assert rel(out3, u * zin) < 8e-3  # one bf16 rounding (the interpreter truncates; GPUs round to nearest)
    want = (u.double() * pre.double() * m2.double() * post.double()).sum(dim=(0, 2))
    assert torch.allclose(dsum.double(), want, rtol=1e-5, atol=1e-5)


def test_apply_can_skip_its_main_output():
    (u, pre, post, m2, _), k, D = _tensors(1, 2, 40, torch.float32, seed=1)
    tuning = plan_mod.VARIANTS["v1"]
    plan = plan_mod.plan_for(40, tuning, "tf32x3")
    spec, _ = _spectrum(k, plan, False, "tf32x3", tuning)
    out2 = _nan(u.shape, torch.float32)
    assert conv_apply(u, pre, D, post, spec, plan, torch.float32, "tf32x3", tuning, store_y=False, m2=m2,
                      out2=out2) is None
    zv = conv_apply(u, pre, D, None, spec, plan, torch.float32, "tf32x3", tuning)
    assert torch.allclose(out2, zv * m2, rtol=1e-5, atol=1e-5)


def _leaves(ts, which):
    return [None if t is None else t.clone().requires_grad_(i in which) for i, t in enumerate(ts)]


def _make(B, H, L, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, pre, post = (torch.randn(B, H, L, generator=g).to(dtype) for _ in range(3))
    return [u, torch.randn(H, L, generator=g) / L ** 0.5, torch.randn(H, generator=g), pre, post]


def test_backward_is_one_apply_pass_and_forward_keeps_z(monkeypatch):
    """No recompute of z in the backward: one apply call there (dk comes from the cross spectrum)."""
    calls = []
    real = autograd_mod.conv_apply
    monkeypatch.setattr(autograd_mod, "conv_apply", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    ts = _make(2, 2, 64, torch.bfloat16)
    leaves = _leaves(ts, range(5))
    y = fftconv_triton(*leaves, tuning="v2")
    assert len(calls) == 1 and calls[0]["z"] is not None and calls[0]["z"].dtype == torch.bfloat16
    y.backward(torch.randn_like(y))
    assert len(calls) == 2
    bwd = calls[1]
    assert all(bwd[name] is not None for name in ("out", "out2", "out3", "dsum"))
    # a postgate that needs no gradient: nothing extra is kept or written
    calls.clear()
    y = fftconv_triton(*_leaves(ts, (0, 1, 2, 3)), tuning="v2")
    assert calls[0]["z"] is None
    y.sum().backward()
    assert calls[1]["out3"] is None


@pytest.mark.parametrize("which", [(4,), (2,), (3, 4), (0, 2)])
def test_partial_gradients_match_reference(which):
    """Only some inputs need gradients (postgate alone skips the apply pass entirely)."""
    ts = _make(2, 2, 50, torch.float32, seed=3)
    dy = torch.randn(2, 2, 50)
    leaves = _leaves(ts, which)
    fftconv_triton(*leaves, tuning="v1").backward(dy)
    ref = _leaves([t.double() for t in ts], which)
    fftconv_ref(*ref).backward(dy.double())
    for i, (a, b) in enumerate(zip(leaves, ref)):
        if i in which:
            assert rel(a.grad, b.grad) <= TOL[torch.float32], i
        else:
            assert a.grad is None


def test_transposed_output_gradient():
    """dy as M2 hands it back (the transpose of a (B, L, H) gradient) gives the same gradients."""
    B, H, L = 2, 3, 70
    ts = _make(B, H, L, torch.bfloat16, seed=4)
    dy_t = torch.randn(B, L, H).to(torch.bfloat16).transpose(1, 2)
    assert not dy_t.is_contiguous()
    grads = []
    for dy in (dy_t, dy_t.contiguous()):
        leaves = _leaves(ts, range(5))
        fftconv_triton(*leaves, bidirectional=False, tuning="v2").backward(dy)
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    ref = _leaves([t.double() for t in ts], range(5))
    fftconv_ref(*ref).backward(dy_t.double())
    for a, b in zip(grads[0], ref):
        assert rel(a, b.grad) <= TOL[torch.bfloat16]
