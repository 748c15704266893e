"""Generation-step kernels (one token of the selective scan, one position of the short convolution): the
Triton kernels against float64 references, and token-by-token steps against the parallel ops over a whole
sequence. They run in Triton's interpreter on CPU tensors, and in a GPU run (GENOMIX_TEST_GPU=1, see
tests/devices.py) compiled on CUDA tensors, plus a check at a real model's width."""
from __future__ import annotations

import pytest
import torch
from devices import TEST_DEVICE

from genomix.kernels import (causal_conv1d, causal_conv1d_ref, causal_conv1d_update, fftconv_ref, fftconv_update,
                             selective_scan_ref, selective_state_update)
from genomix.kernels.causal_conv import causal_conv1d_update_ref
from genomix.kernels.scan import selective_state_update_ref

DEVICE = TEST_DEVICE
pytestmark = pytest.mark.any_device


@pytest.fixture(params=["reference", "triton"])
def path(request, monkeypatch):
    """Both dispatch paths: the reference, and the Triton kernels (forced; the interpreter on CPU)."""
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1" if request.param == "triton" else "0")
    monkeypatch.setenv("GENOMIX_FORCE_REFERENCE", "1" if request.param == "reference" else "0")
    return request.param


def _ssm_inputs(batch, dim, size, dtype, generator):
    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    args = dict(x=rnd(batch, dim), dt=rnd(batch, dim, scale=0.5), A=-torch.rand(dim, size, generator=generator) * 4,
                B=rnd(batch, size), C=rnd(batch, size), D=torch.randn(dim, generator=generator),
                z=rnd(batch, dim), dt_bias=torch.randn(dim, generator=generator) * 0.5)
    return {name: t.to(DEVICE) for name, t in args.items()}


def _check_state_update(batch, dim, size, dtype, tol, options, seed):
    """One step on the dispatch's path against float64, state and output."""
    g = torch.Generator().manual_seed(seed)
    args = _ssm_inputs(batch, dim, size, dtype, g)
    if options == "bare":
        args.update(D=None, z=None, dt_bias=None)
    softplus = options == "all"
    state = torch.randn(batch, dim, size, generator=g).to(DEVICE)
    want_state = state.double()
    wide = {k: (v.double() if v is not None else None) for k, v in args.items()}
    want = selective_state_update_ref(want_state, **wide, dt_softplus=softplus)
    got = selective_state_update(state, **args, dt_softplus=softplus)
    assert got.dtype == dtype and got.shape == (batch, dim)
    torch.testing.assert_close(state.double(), want_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("size", [16, 12])  # a power of two and not
@pytest.mark.parametrize("options", ["all", "bare"])
def test_state_update_matches_float64(path, nan_empty, dtype, tol, size, options):
    _check_state_update(3, 40, size, dtype, tol, options, seed=size)  # 40 channels: a partial channel block


@pytest.mark.gpu  # real widths
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_state_update_at_a_model_width(path, nan_empty, dtype, tol):
    _check_state_update(4, 1536, 16, dtype, tol, "all", seed=7)  # mamba-130m's d_inner


def test_state_update_steps_equal_the_parallel_scan(path):
    """Stepping a whole sequence token by token gives the scan's outputs and last state."""
    g = torch.Generator().manual_seed(1)
    batch, dim, size, length = 2, 36, 16, 23
    u, delta, z = (torch.randn(batch, dim, length, generator=g).to(DEVICE) for _ in range(3))
    A = (-torch.rand(dim, size, generator=g) * 3).to(DEVICE)
    B, C = (torch.randn(batch, size, length, generator=g).to(DEVICE) for _ in range(2))
    D, bias = torch.randn(dim, generator=g).to(DEVICE), (torch.randn(dim, generator=g) * 0.3).to(DEVICE)
    want, last = selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True,
                                    return_last_state=True)
    state = torch.zeros(batch, dim, size, device=DEVICE)
    got = torch.stack([selective_state_update(state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D=D,
                                              z=z[..., t], dt_bias=bias) for t in range(length)], dim=-1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state, last, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("width", [3, 4, 5])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("channels", [70] + ([1536] if DEVICE == "cuda" else []))  # a partial block; a model's width
def test_conv_update_steps_equal_the_convolution(path, nan_empty, width, dtype, tol, channels):
    """Feeding a sequence one position at a time gives the causal convolution's outputs, and the state
    holds the last ``width`` inputs."""
    g = torch.Generator().manual_seed(width)
    batch, length = 2, 9
    x = torch.randn(batch, channels, length, generator=g).to(dtype).to(DEVICE)
    weight, bias = torch.randn(channels, width, generator=g).to(DEVICE), torch.randn(channels, generator=g).to(DEVICE)
    want = causal_conv1d_ref(x.double(), weight.double(), bias.double(), "silu")
    state = torch.zeros(batch, channels, width, device=DEVICE)
    got = torch.stack([causal_conv1d_update(state, x[..., t], weight, bias, "silu") for t in range(length)], dim=-1)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    torch.testing.assert_close(state, x[..., -width:].float())
    bare = torch.zeros(batch, channels, width, device=DEVICE)  # no bias, no activation
    step = causal_conv1d_update(bare, x[..., 0], weight)
    zero = torch.zeros(batch, channels, width, dtype=torch.float64, device=DEVICE)
    want_bare = causal_conv1d_update_ref(zero, x[..., 0].double(), weight.double())
    torch.testing.assert_close(step.double(), want_bare, rtol=tol, atol=tol)


def test_step_kernels_read_column_slices_as_contiguous_rows(path):
    """The generation step hands the kernels column slices of the projections' outputs (x and z of the
    in-projection, B and C of the x-projection): the results equal those of contiguous copies (to rounding:
    PyTorch's CPU reductions may order a strided sum differently)."""
    g = torch.Generator().manual_seed(4)
    batch, dim, size, width = 3, 40, 16, 4
    xz = torch.randn(batch, 2 * dim, generator=g).to(DEVICE)
    dbc = torch.randn(batch, 5 + 2 * size, generator=g).to(DEVICE)
    x, z = xz.chunk(2, dim=-1)
    B, C = dbc[:, 5:5 + size], dbc[:, 5 + size:]
    assert not x.is_contiguous() and not B.is_contiguous()
    weight, bias = torch.randn(dim, width, generator=g).to(DEVICE), torch.randn(dim, generator=g).to(DEVICE)
    conv_state = torch.randn(batch, dim, width, generator=g).to(DEVICE)
    conv_copy = conv_state.clone()
    torch.testing.assert_close(causal_conv1d_update(conv_state, x, weight, bias, "silu"),
                               causal_conv1d_update(conv_copy, x.contiguous(), weight, bias, "silu"), rtol=1e-6, atol=1e-6)
    args = _ssm_inputs(batch, dim, size, torch.float32, g)
    state = torch.randn(batch, dim, size, generator=g).to(DEVICE)
    state_copy = state.clone()
    sliced = dict(args, x=x, z=z, B=B, C=C)
    copied = dict(args, x=x.contiguous(), z=z.contiguous(), B=B.contiguous(), C=C.contiguous())
    torch.testing.assert_close(selective_state_update(state, **sliced), selective_state_update(state_copy, **copied),
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state, state_copy, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(conv_state, conv_copy, rtol=1e-6, atol=1e-6)


def test_step_kernels_refuse_mismatched_arguments():
    g = torch.Generator().manual_seed(0)
    args = _ssm_inputs(2, 8, 4, torch.float32, g)
    with pytest.raises(ValueError, match="B must be"):
        selective_state_update(torch.zeros(2, 8, 4), **{**args, "B": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="state must be fp32"):
        selective_state_update(torch.zeros(2, 8, 4, dtype=torch.bfloat16), **args)
    with pytest.raises(TypeError, match="dt must be a floating-point"):
        selective_state_update(torch.zeros(2, 8, 4), **{**args, "dt": torch.zeros(2, 8, dtype=torch.long)})
    with pytest.raises(ValueError, match="taps"):
        causal_conv1d_update(torch.zeros(2, 8, 4), torch.zeros(2, 8), torch.zeros(8, 3))
    with pytest.raises(ValueError, match="state must be"):
        causal_conv1d_update(torch.zeros(2, 8, 4), torch.zeros(2, 9), torch.zeros(8, 4))
    with pytest.raises(TypeError, match="fp32"):
        causal_conv1d_update(torch.zeros(2, 8, 4, dtype=torch.float16), torch.zeros(2, 8), torch.zeros(8, 4))
    with pytest.raises(TypeError, match="x must be a floating-point"):  # an integer x came back truncated
        causal_conv1d(torch.arange(12).reshape(1, 2, 6), torch.full((2, 1), 0.5))


def test_step_functions_keep_gradients_on_every_path(path):
    """Called where autograd records (outside the models' no_grad steps), each step is differentiable on the
    Triton path too (it runs the reference there; the kernels have no backward and returned outputs without
    autograd history)."""
    g = torch.Generator().manual_seed(3)
    args = _ssm_inputs(2, 8, 4, torch.float32, g)
    x = args.pop("x").requires_grad_()
    selective_state_update(torch.zeros(2, 8, 4, device=DEVICE), x, **args).sum().backward()
    u = torch.randn(2, 8, generator=g).to(DEVICE).requires_grad_()
    causal_conv1d_update(torch.zeros(2, 8, 4, device=DEVICE), u, torch.randn(8, 4, generator=g).to(DEVICE)).sum().backward()
    w = torch.randn(2, 8, generator=g).to(DEVICE).requires_grad_()
    at = torch.zeros((), dtype=torch.long, device=DEVICE)
    fftconv_update(torch.zeros(2, 8, 5, device=DEVICE), at, w, torch.randn(8, 5, generator=g).to(DEVICE),
                   D=torch.randn(8, generator=g).to(DEVICE)).sum().backward()
    assert x.grad is not None and u.grad is not None and w.grad is not None
    assert x.grad.abs().sum() > 0 and u.grad.abs().sum() > 0 and w.grad.abs().sum() > 0


@pytest.mark.parametrize("gated", [False, True])
def test_long_conv_steps_equal_the_parallel_convolution(gated, path):
    """fftconv_update over a sequence, one position at a time into a history sized for it, gives the causal
    FFT convolution's outputs (skip term and gates included) in fp32 and bf16."""
    g = torch.Generator().manual_seed(5)
    batch, channels, length = 2, 6, 37
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        u = torch.randn(batch, channels, length, generator=g).to(dtype).to(DEVICE)
        k = torch.randn(channels, length, generator=g).to(DEVICE)  # not decaying: every tap matters
        D = torch.randn(channels, generator=g).to(DEVICE)
        pre, post = (torch.randn(batch, channels, length, generator=g).to(dtype).to(DEVICE) if gated else None
                     for _ in range(2))
        want = fftconv_ref(u, k, D, pre, post)
        history, position = torch.zeros(batch, channels, length, device=DEVICE), torch.zeros((), dtype=torch.long,
                                                                                                device=DEVICE)
        got = []
        for t in range(length):
            got.append(fftconv_update(history, position, u[..., t], k, D, None if pre is None else pre[..., t],
                                      None if post is None else post[..., t]))
            position += 1
        got = torch.stack(got, -1)
        assert got.dtype == dtype
        assert (got.float() - want.float()).abs().max() <= tol * want.float().abs().max()
        torch.testing.assert_close(history, u.float() * (1 if pre is None else pre.float()))


def test_long_conv_ring_wraps_to_the_last_n_inputs(path):
    """Past n positions the ring holds the last n inputs, and a step is the convolution truncated to the
    filter's n taps (what a state allocated for n positions can give; generation never goes there)."""
    g = torch.Generator().manual_seed(6)
    u, k = torch.randn(1, 3, 12, generator=g).to(DEVICE), torch.randn(3, 5, generator=g).to(DEVICE)
    history, position = torch.zeros(1, 3, 5, device=DEVICE), torch.zeros((), dtype=torch.long, device=DEVICE)
    for t in range(12):
        y = fftconv_update(history, position, u[..., t], k)
        position += 1
    want = sum(k[:, j] * u[0, :, 11 - j] for j in range(5))
    torch.testing.assert_close(y[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("position", [0, 4100, 9000, 12345])
def test_ring_dot_kernel_matches_its_reference(position, nan_empty):
    """The Triton step kernel against the reference at a history of three slices (positions per program),
    a ragged channel block and ring positions at the start, inside a slice, at the last slot and wrapped;
    NaN-poisoned partial sums must all be overwritten."""
    from genomix.kernels.fftconv import step, step_kernels

    g = torch.Generator().manual_seed(position)
    n, history = 9001, torch.randn(2, 10, 9001, generator=g).to(DEVICE)
    w, k = torch.randn(2, 10, generator=g).to(DEVICE), torch.randn(10, n, generator=g).to(DEVICE)
    at = torch.tensor(position, device=DEVICE)
    want_history = history.clone()
    want = step._ring_dot(want_history, at, w, k)
    got = step_kernels.ring_dot_triton(history, at, w, k)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(history, want_history, rtol=0, atol=0)


def test_long_conv_step_checks_its_arguments():
    history, u, k = torch.zeros(2, 3, 5), torch.zeros(2, 3), torch.zeros(3, 5)
    at = torch.zeros((), dtype=torch.long)
    with pytest.raises(ValueError, match="history must be"):
        fftconv_update(history[0], at, u, k)
    with pytest.raises(TypeError, match="fp32"):
        fftconv_update(history.double(), at, u, k)
    with pytest.raises(ValueError, match="position must be one integer"):
        fftconv_update(history, at.float(), u, k)
    with pytest.raises(ValueError, match="k must be"):
        fftconv_update(history, at, u, k[:, :4])
    with pytest.raises(ValueError, match="D must be"):
        fftconv_update(history, at, u, k, D=torch.zeros(4))
    with pytest.raises(ValueError, match="postgate must be"):
        fftconv_update(history, at, u, k, postgate=torch.zeros(2, 4))
