"""Implicit filter: the reference vs the models' former layer-by-layer code, the Triton kernels (interpreter
on CPU) vs float64 forward and backward with NaN-filled buffers, the dispatch rules, and Hyena/M2 taking
the fused path. GPU counterparts at real shapes: kernels/gpu_check_implicit_filter.py and
kernels/bench_implicit_filter.py."""
from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from genomix.kernels import dispatch
from genomix.kernels.gpu_check_implicit_filter import FLOOR, RATIO, FilterCase, check, make_inputs, parameters
from genomix.kernels.implicit_filter import implicit_filter, implicit_filter_ref, implicit_filter_triton
from genomix.models import build
from genomix.models.implicit_filter import ExponentialModulation, PositionalEmbedding, Sin, sine_layers


CPU_CASES = [
    FilterCase(150, 80),  # blocks of positions and channels both ragged
    FilterCase(77, 33, order=40, features=3, n_inner=0, modulate=False),  # order not a power of two, no inner layer
    FilterCase(130, 64, order=48, shared_freq=True, shift=0.05, dk_stride=260),  # HyenaDNA-style, strided dk
    FilterCase(64, 16, order=16, n_inner=3),
    FilterCase(1, 20),
]


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: f"L{c.length}-C{c.channels}-R{c.order}-n{c.n_inner}")
def test_triton_matches_float64_like_the_fp32_reference(case, nan_empty):
    row = check(case, "cpu", seed=3)
    assert row["finite"] and row["contract"]
    assert row["k"] <= RATIO * row["k_fp32_ref"] + FLOOR
    assert row["grad"] <= RATIO * row["grad_fp32_ref"] + FLOOR
    assert row["ok"]


def test_more_programs_than_one_block_each_gives_the_same_gradients(monkeypatch):
    """The persistent backward walks several blocks per program: its partials must sum like one per block."""
    ops = pytest.importorskip("genomix.kernels.implicit_filter.ops")
    case = FilterCase(200, 24, order=16)
    z, t, layers, out_weight, rates = make_inputs(case, "cpu", torch.Generator().manual_seed(0))
    params = parameters(layers, out_weight)
    dk = torch.randn(case.channels, case.length)
    grads = {}
    for bwd_block in (64, 16):  # 4 blocks on 3 programs, then 13 blocks on 3 programs
        monkeypatch.setattr(ops, "BWD_BLOCK_L", bwd_block)
        k = implicit_filter_triton(z, t, layers, out_weight, rates)
        grads[bwd_block] = torch.autograd.grad(k, params, dk)
    for a, b in zip(*grads.values()):  # the same sums in another order: fp32 rounding apart
        assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (a - b).abs().max() / b.abs().max()


def _former_filter(mlp: nn.Sequential, z: torch.Tensor, t: torch.Tensor, modulation: ExponentialModulation):
    """The models' code before the fused filter: the Sequential's layers one by one, projection, decay."""
    hidden = mlp[:-1](z[None])[0]
    h = mlp[-1].weight @ hidden.t()
    decay = torch.exp(torch.outer(modulation.deltas.abs().flatten().neg(), t))
    return h * (decay + modulation.shift if modulation.shift else decay)


@pytest.mark.parametrize("shift", [0.0, 0.05])
def test_reference_is_the_former_layer_by_layer_filter_bit_for_bit(shift):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 16), Sin(16), nn.Linear(16, 16), Sin(16), nn.Linear(16, 12, bias=False))
    pos, modulation = PositionalEmbedding(5, 100), ExponentialModulation(12, shift=shift)
    z, t = pos(100)
    got = implicit_filter_ref(z[0], t[0, :, 0], sine_layers(mlp), mlp[-1].weight, modulation.rates(), shift)
    assert torch.equal(got, _former_filter(mlp, z[0], t[0, :, 0], modulation))


def test_dispatch_takes_the_reference_on_cpu_and_the_kernel_when_forced(monkeypatch):
    case = FilterCase(40, 20, order=16)
    z, t, layers, out_weight, rates = make_inputs(case, "cpu", torch.Generator().manual_seed(1))
    calls = []
    pkg = importlib.import_module("genomix.kernels.implicit_filter")  # the attribute is the function
    real = pkg._triton_filter
    monkeypatch.setattr(pkg, "_triton_filter", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.delenv("GENOMIX_FORCE_TRITON", raising=False)
    ref = implicit_filter(z, t, layers, out_weight, rates)
    assert not calls
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    fused = implicit_filter(z, t, layers, out_weight, rates)
    assert calls == [1]
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)
    # Sizes the kernels do not take go to the reference even when forced.
    wide = FilterCase(40, 20, order=96)
    z, t, layers, out_weight, rates = make_inputs(wide, "cpu", torch.Generator().manual_seed(1))
    implicit_filter(z, t, layers, out_weight, rates)
    implicit_filter(z.double(), t.double(), [tuple(p.double() for p in layer) for layer in layers],
                    out_weight.double(), rates.double())
    assert calls == [1]
    assert "implicit_filter" in dispatch.TRITON_BY_DEFAULT


def test_only_16_bit_autocast_takes_the_kernels_unless_forced(monkeypatch):
    """On a GPU (use_triton true) fp32 runs keep the exact reference; the TF32 mode takes the kernels."""
    pkg = importlib.import_module("genomix.kernels.implicit_filter")
    z, t, layers, out_weight, rates = make_inputs(FilterCase(40, 20, order=16), "cpu", torch.Generator().manual_seed(1))
    calls = []
    real = pkg._triton_filter
    monkeypatch.setattr(pkg, "_triton_filter", lambda *a, **k: calls.append(a[6]) or real(*a, **k))  # tf32
    monkeypatch.setattr(pkg, "use_triton", lambda *tensors, op: True)
    monkeypatch.delenv("GENOMIX_FORCE_TRITON", raising=False)
    implicit_filter(z, t, layers, out_weight, rates, 0.0, False)
    assert calls == []
    implicit_filter(z, t, layers, out_weight, rates, 0.0, True)
    assert calls == [True]


@pytest.mark.parametrize("bad, message", [
    (lambda z, t, layers, w, r: (z[None], t, layers, w, r), "z must be"),
    (lambda z, t, layers, w, r: (z, t[:-1], layers, w, r), "z must be"),
    (lambda z, t, layers, w, r: (z, t, [], w, r), "at least one"),
    (lambda z, t, layers, w, r: (z, t, [layers[0], layers[0]], w, r), "layer 1"),
    (lambda z, t, layers, w, r: (z, t, layers, w[:, :-1], r), "out_weight"),
    (lambda z, t, layers, w, r: (z, t, layers, w, r[:-1]), "decay_rates"),
])
def test_shapes_that_do_not_chain_are_refused(bad, message):
    inputs = make_inputs(FilterCase(10, 8, order=16), "cpu", torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=message):
        implicit_filter(*bad(*inputs))


@pytest.mark.parametrize("name", ["m2-tiny-1k", "hyenadna-tiny-1k"])
def test_models_train_the_same_through_the_fused_filter(name, monkeypatch):
    """A model's loss and gradients with the kernels forced (interpreter) equal those of the reference."""
    torch.manual_seed(0)
    model = build(name, task="causal-lm").float().eval()  # no dropout: both runs see the same net
    ids = torch.randint(0, 4, (1, 97)) + 7

    def loss_and_grads():
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if "implicit_filter" in n}

    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "fftconv,fftconv-short,fftconv-cufft,causal_conv1d,layer_norm,gelu_glu")
    ref_loss, ref_grads = loss_and_grads()
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    loss, grads = loss_and_grads()
    assert ref_grads and grads.keys() == ref_grads.keys()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for key, grad in grads.items():
        scale = ref_grads[key].abs().max().item()
        assert (grad - ref_grads[key]).abs().max().item() <= 1e-4 * max(scale, 1e-6), key


def test_sine_layers_reads_each_models_filter_mlp():
    """M2 has one frequency per layer, HyenaDNA one shared by all (the same tensor in every triple)."""
    m2 = build("m2-tiny-1k", task="causal-lm")
    layers = sine_layers(m2.backbone.layers[0].sequence_mixing.filter_fn.implicit_filter)
    assert len(layers) == m2.config.num_inner_mlps + 1
    assert layers[0][0].shape == (m2.config.filter_order, m2.config.emb_dim)
    assert len({id(f) for _, _, f in layers}) == len(layers)
    hyena = build("hyenadna-tiny-1k", task="causal-lm")
    layers = sine_layers(hyena.backbone.layers[0].mixer.filter_fn.implicit_filter)
    assert len(layers) == hyena.config.num_inner_mlps + 1 and len({id(f) for _, _, f in layers}) == 1


def test_inference_keeps_no_pre_activations(monkeypatch):
    """Under no_grad the forward writes only the filter (the (n + 1, L, R) pre-activations are for training)."""
    ops = importlib.import_module("genomix.kernels.implicit_filter.ops")
    seen = []
    real = ops.ImplicitFilterFn.forward
    monkeypatch.setattr(ops.ImplicitFilterFn, "forward",
                        staticmethod(lambda ctx, *args: seen.append(args[-2]) or real(ctx, *args)))  # save
    z, t, layers, out_weight, rates = make_inputs(FilterCase(30, 16, order=16), "cpu", torch.Generator().manual_seed(4))
    with torch.no_grad():
        implicit_filter_triton(z, t, layers, out_weight, rates)
    implicit_filter_triton(z, t, layers, out_weight, rates)
    assert seen == [False, True]
