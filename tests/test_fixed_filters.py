"""A fixed filter's spectrum made once and reused: ``prepare_filter`` / ``fftconv_prepared`` on every path, and
``fixed_filters`` on HyenaDNA and M2 (same outputs as plain calls, spectra made once, remade when a filter
parameter changes, never used while training)."""
from __future__ import annotations

import pytest
import torch
from devices import GPU_RUN, TEST_DEVICE

from genomix.kernels import fftconv, fftconv_prepared, prepare_filter
from genomix.kernels.fftconv import cufft_fused, three_level, two_level
from genomix.models import build, fixed_filters
from genomix.models.hyena import HyenaOperator
from genomix.models.m2 import MonarchMixerSequenceMixing


def _inputs(B, H, L, bidirectional, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, H, L, generator=g).to(dtype)
    k = torch.randn(H, 2 * L if bidirectional else L, generator=g) / L ** 0.5
    D = torch.randn(H, generator=g)
    pre, post = (torch.randn(B, H, L, generator=g).to(dtype) for _ in range(2))
    return u, k, D, pre, post


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_path_reuses_the_spectrum_exactly(bidirectional, dtype):
    u, k, D, pre, post = _inputs(2, 3, 37, bidirectional, dtype)
    prepared = prepare_filter(k, D, like=u, bidirectional=bidirectional)
    assert prepared.path == "reference" and prepared.k is None
    want = fftconv(u, k, D, pregate=pre, postgate=post, bidirectional=bidirectional)
    assert torch.equal(fftconv_prepared(u, prepared, pregate=pre, postgate=post), want)
    other = torch.randn_like(u)  # a second input, same filter
    assert torch.equal(fftconv_prepared(other, prepared), fftconv(other, k, D, bidirectional=bidirectional))


@pytest.mark.parametrize("levels", ["one", "two"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cufft_path_reuses_the_spectrum_exactly(monkeypatch, levels, bidirectional):
    """One and two levels (the interpreter runs the Triton passes, torch.fft cuFFT's): the prepared call equals
    the plain call bit for bit; on two levels the skip weight rides in the kept spectrum."""
    monkeypatch.setenv(two_level.ENV_SWITCH, "1" if levels == "two" else "0")
    u, k, D, pre, post = _inputs(1, 2, 300, bidirectional, torch.bfloat16, seed=3)
    signal = cufft_fused.prepared_filter_signal(k, D, u, bidirectional)
    assert signal is not None
    want = cufft_fused.fftconv_cufft(u, k, D, pre, post, bidirectional)
    got = cufft_fused.forward_prepared(u, None, D, signal, pre, post, bidirectional)
    assert torch.equal(got, want)


def test_cufft_channel_groups_slice_the_kept_spectrum(monkeypatch):
    """A call split into channel groups takes each group's rows of the spectrum made for all channels."""
    monkeypatch.setattr(cufft_fused, "INFERENCE_ELEMENTS_PER_PASS", 2 * 300)
    u, k, D, pre, post = _inputs(2, 3, 300, False, torch.bfloat16, seed=5)
    assert len(cufft_fused._channel_groups(u)) == 3
    signal = cufft_fused.prepared_filter_signal(k, D, u)
    got = cufft_fused.forward_prepared(u, None, D, signal, pre, post)
    assert torch.equal(got, cufft_fused.fftconv_cufft(u, k, D, pre, post))


def test_three_levels_keep_no_separate_spectrum(monkeypatch):
    monkeypatch.setenv(two_level.ENV_SWITCH, "1")
    monkeypatch.setattr(three_level, "MIN_POINTS", 1)
    u, k, D, _, _ = _inputs(2, 2, 300, False, torch.bfloat16)
    assert cufft_fused.prepared_filter_signal(k, D, u) is None


def test_on_chip_path_keeps_the_filter_and_calls_fftconv(monkeypatch):
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    u, k, D, pre, post = _inputs(2, 4, 64, False, torch.bfloat16, seed=7)
    prepared = prepare_filter(k, D, like=u)
    assert prepared.path == "call" and prepared.k is not None
    want = fftconv(u, k, D, pregate=pre, postgate=post)
    assert torch.equal(fftconv_prepared(u, prepared, pregate=pre, postgate=post), want)


def test_prepared_filter_refuses_other_shapes_and_gradients():
    u, k, D, pre, _ = _inputs(2, 3, 40, False, torch.float32)
    prepared = prepare_filter(k, D, like=u)
    with pytest.raises(ValueError, match="prepared for u of shape"):
        fftconv_prepared(u[:1], prepared)
    with pytest.raises(ValueError, match="prepared for u of shape"):
        fftconv_prepared(u.to(torch.bfloat16), prepared)
    with pytest.raises(ValueError, match="pregate must be"):
        fftconv_prepared(u, prepared, pregate=pre[:, :2])
    with pytest.raises(ValueError, match="for inference"):
        fftconv_prepared(u.requires_grad_(), prepared)
    with pytest.raises(ValueError, match="filter must be"):
        prepare_filter(k[:, :10], D, like=u)


# B, H, L, bidirectional, gates: on the GPU the paths are the on-chip kernels (4K), one cuFFT level (10,000),
# two levels (70,001 and 256K causal, 128K bidirectional) and three levels (32K, batch 2: the filter is kept,
# not its spectrum); on the CPU every case takes the reference.
DEVICE_CASES = [(4, 8, 4096, False, True), (2, 4, 10000, False, True), (1, 4, 70001, False, True),
                (1, 4, 262144, False, True), (1, 2, 131072, True, True),
                (2, 4, 32768, False, False)] if GPU_RUN else [(2, 4, 300, True, True)]


@pytest.mark.any_device
@pytest.mark.parametrize("case", DEVICE_CASES, ids=[f"B{c[0]}H{c[1]}L{c[2]}{'bi' if c[3] else ''}" for c in DEVICE_CASES])
def test_prepared_call_equals_plain_call_on_the_test_device(case):
    B, H, L, bidirectional, gates = case
    u, k, D, pre, post = (t.to(TEST_DEVICE) for t in _inputs(B, H, L, bidirectional, torch.bfloat16, seed=L))
    pre, post = (pre, post) if gates else (None, None)
    with torch.no_grad():
        prepared = prepare_filter(k, D, like=u, bidirectional=bidirectional)
        want = fftconv(u, k, D, pregate=pre, postgate=post, bidirectional=bidirectional)
        for _ in range(2):  # the kept spectrum is read, not consumed
            assert torch.equal(fftconv_prepared(u, prepared, pregate=pre, postgate=post), want), prepared.path


# ----------------------------------------------------------------------------- models


def _count_builds(monkeypatch, cls, name):
    calls = []
    original = getattr(cls, name)

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def _ids(batch, length, seed=0):
    return torch.randint(7, 11, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_hyena_reuses_filters_until_a_parameter_changes(monkeypatch):
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", n_layer=2, d_model=32, max_seq_len=128).eval()
    builds = _count_builds(monkeypatch, HyenaOperator, "_prepared_filters")
    ids, other = _ids(2, 100), _ids(2, 100, seed=1)
    with torch.no_grad():
        want, want_other = model(ids).logits, model(other).logits
        assert not builds
        with fixed_filters(model):
            assert torch.equal(model(ids).logits, want)
            assert torch.equal(model(other).logits, want_other)
            assert len(builds) == 2  # once per layer, reused by the second call
            model(ids[:1])  # another shape: prepared again
            assert len(builds) == 4
            model.backbone.layers[0].mixer.filter_fn.implicit_filter[0].weight.mul_(1.5)
            changed = model(ids).logits
            assert len(builds) == 6  # both layers' keys changed shape back; layer 0 also its weights
            model(ids)
            assert len(builds) == 6
        assert all(m.filter_reuse is None for m in model.modules() if isinstance(m, HyenaOperator))
        assert torch.equal(changed, model(ids).logits)
        assert not torch.equal(changed, want)


def test_hyena_training_and_gradients_bypass_the_reuse(monkeypatch):
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=32, max_seq_len=128)
    builds = _count_builds(monkeypatch, HyenaOperator, "_prepared_filters")
    ids = _ids(2, 60)
    with fixed_filters(model):
        model.eval()
        loss = model(ids).logits.float().square().mean()  # gradients on: plain calls
        loss.backward()
        model.train()
        with torch.no_grad():
            model(ids)  # training mode: plain calls
    assert not builds
    assert model.backbone.layers[0].mixer.filter_fn.implicit_filter[0].weight.grad is not None


@pytest.mark.parametrize("name", ["m2-tiny-1k", "m2-bert-small-1k"])
def test_m2_reuses_both_long_convolutions(monkeypatch, name):
    """Causal M2 and the bidirectional M2-BERT with its residual long convolution (two filters per layer)."""
    torch.manual_seed(0)
    model = build(name, d_model=32, n_layer=2, d_inner=64, filter_order=16, max_seq_len=128).eval()
    mixers = [m for m in model.modules() if isinstance(m, MonarchMixerSequenceMixing)]
    filters_per_layer = 2 if mixers[0].filter_fn2 is not None else 1
    calls = _count_builds(monkeypatch, type(mixers[0].filter_fn), "kernel")
    ids = _ids(2, 90)
    with torch.no_grad():
        want = model(ids)[0]
        plain_calls = len(calls)
        with fixed_filters(model):
            first, second = model(ids)[0], model(ids)[0]
    assert torch.equal(first, want) and torch.equal(second, want)
    assert plain_calls == len(mixers) * filters_per_layer
    assert len(calls) == 2 * plain_calls  # the plain call, then one build per filter for both reusing calls


def test_a_validation_run_keeps_the_spectra_between_its_batches(monkeypatch):
    """Pretraining's validation hooks hold fixed_filters from the run's start to its end."""
    from genomix.train.module import LanguageModelingModule
    from genomix.train.recipe import OptimConfig

    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", task="causal-lm", n_layer=2, d_model=32, max_seq_len=128)
    module = LanguageModelingModule(model, "causal-lm", OptimConfig(), schedule_steps=10).eval()
    builds = _count_builds(monkeypatch, HyenaOperator, "_prepared_filters")
    ids = _ids(2, 100)
    with torch.no_grad():
        module.on_validation_epoch_start()
        for step in range(3):
            module.validation_step({"input_ids": ids, "labels": ids}, step)
        module._val_filters.close()  # what on_validation_epoch_end does first (it needs a trainer for the rest)
    assert len(builds) == 2  # once per layer for the whole run
    assert all(m.filter_reuse is None for m in model.modules() if isinstance(m, HyenaOperator))
