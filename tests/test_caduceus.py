"""Caduceus: Hub-layout fixture parity (PS and PH), RC equivariance, RC-invariant classification."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genomix
from genomix.errors import ConfigError
from genomix.models import build
from genomix.models.caduceus import CaduceusConfig, CaduceusForMaskedLM, CaduceusForSequenceClassification, rc_logits


@pytest.mark.parametrize("name", ["caduceus-ps", "caduceus-ph"])
def test_fixture_parity(shared_dir, name):
    fixture = shared_dir / "fixtures" / name
    model = genomix.from_pretrained(fixture)
    assert isinstance(model, CaduceusForMaskedLM) and model.config.rcps == name.endswith("ps")
    expected = np.load(fixture / "expected.npz")
    for case in ("L1", "L32", "L257"):
        with torch.no_grad():
            out = model(torch.from_numpy(expected[f"{case}_input_ids"]), output_hidden_states=True)
        for key, got in (("logits", out.logits), ("hidden", out.hidden_states[-1])):
            ref = expected[f"{case}_{key}"]
            assert got.shape == ref.shape, (case, key)
            assert np.abs(got.numpy() - ref).max() / np.abs(ref).max() <= 1e-5, (case, key)


def test_rcps_half_swap_is_what_the_released_weights_need(shared_dir):
    fixture = shared_dir / "fixtures" / "caduceus-ps"
    model = genomix.from_pretrained(fixture)
    expected = np.load(fixture / "expected.npz")
    for layer in model.backbone.layers:
        layer.swap_halves = False
    with torch.no_grad():
        logits = model(torch.from_numpy(expected["L32_input_ids"])).logits.numpy()
    assert np.abs(logits - expected["L32_logits"]).max() / np.abs(expected["L32_logits"]).max() > 1e-3


def _rc_ids(ids: torch.Tensor, cmap: torch.Tensor) -> torch.Tensor:
    return cmap[torch.flip(ids, dims=[1])]


@pytest.mark.parametrize("fused", [True, False])
def test_ps_rc_equivariance(shared_dir, fused):
    model = genomix.from_pretrained(shared_dir / "fixtures" / "caduceus-ps")
    for layer in model.backbone.layers:
        layer.swap_halves = fused
    cmap = torch.tensor(model.config.complement_map)
    ids = torch.randint(7, 12, (2, 40))
    with torch.no_grad():
        fwd = model(ids).logits
        rev = model(_rc_ids(ids, cmap)).logits
    torch.testing.assert_close(rev, rc_logits(fwd, cmap), rtol=1e-5, atol=1e-5)


def test_ph_is_not_equivariant_but_conjoined_logits_are(shared_dir):
    model = genomix.from_pretrained(shared_dir / "fixtures" / "caduceus-ph")
    cmap = torch.tensor(model.config.complement_map)
    ids = torch.randint(7, 11, (2, 30))
    with torch.no_grad():
        fwd, rev = model(ids).logits, model(_rc_ids(ids, cmap)).logits
    assert (rev - rc_logits(fwd, cmap)).abs().max() > 1e-3
    conj, conj_rc = model.conjoined_logits(ids), model.conjoined_logits(_rc_ids(ids, cmap))
    torch.testing.assert_close(conj_rc, rc_logits(conj, cmap), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_classification_is_rc_invariant(rcps, pooling):
    torch.manual_seed(0)
    config = CaduceusConfig(d_model=16, n_layer=2, d_state=4, rcps=rcps, num_labels=3, pooling=pooling)
    model = CaduceusForSequenceClassification(config).eval()
    cmap = torch.tensor(config.complement_map)
    ids = torch.randint(7, 11, (3, 25))
    with torch.no_grad():
        a, b = model(ids).logits, model(_rc_ids(ids, cmap)).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    out = model(ids, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert out.logits.shape == (3, 3)


def test_named_sizes_and_native_round_trip(tmp_path):
    model = build("caduceus-ps-1k-d118")
    assert model.config.rcps and model.backbone.hidden_size == 236
    assert "backbone.embeddings.word_embeddings.complement_map" in model.state_dict()
    assert not any(".mamba_rev.in_proj" in k for k in model.state_dict())  # tied to the forward direction
    ids = torch.randint(7, 11, (1, 50))
    genomix.hub.save_native(model, tmp_path / "m")
    again = genomix.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model.eval()(ids).logits)


@pytest.mark.parametrize("rcps", [False, True])
def test_auto_loaded_models_keep_the_complement_map(tmp_path, rcps):
    """transformers builds models on the meta device: RC helpers must survive AutoModel* loading."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    name = "caduceus-ps-1k-d118" if rcps else "caduceus-ph-1k-d118"
    model = build(name, task="masked-lm").eval()
    model.save_pretrained(tmp_path / "m")
    ids = torch.randint(7, 11, (2, 40))
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(loaded.conjoined_logits(ids), model.conjoined_logits(ids))
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m", num_labels=2).eval()
    rc_ids = torch.tensor(model.config.complement_map)[ids.flip(1)]
    with torch.no_grad():
        torch.testing.assert_close(classifier(rc_ids).logits, classifier(ids).logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["caduceus-ps", "caduceus-ph"])
def test_fused_add_norm_path_keeps_fixture_parity_and_gradients(shared_dir, name, monkeypatch):
    """The blocks' add-norm through the Triton kernels (interpreter; RCPS reads the strands as column
    slices) reproduces the released outputs, and a masked-LM loss's gradients match the reference path's."""
    fixture = shared_dir / "fixtures" / name
    model = genomix.from_pretrained(fixture)
    expected = np.load(fixture / "expected.npz")
    ids = torch.from_numpy(expected["L32_input_ids"])

    def logits_and_grads():
        model.zero_grad()
        out = model(ids, labels=ids)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    want, want_grads = logits_and_grads()
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "selective_scan,causal_conv1d,transpose,layer_norm")
    got, got_grads = logits_and_grads()
    ref = expected["L32_logits"]
    assert np.abs(got.numpy() - ref).max() / np.abs(ref).max() <= 1e-5
    assert got_grads.keys() == want_grads.keys()
    for n, grad in want_grads.items():
        torch.testing.assert_close(got_grads[n], grad, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", ["caduceus-ps-1k-d118", "caduceus-ph-1k-d118"])
def test_a_three_class_head_reloads_as_three_classes(tmp_path, name):
    """transformers saves id2label, not num_labels; a config default of 2 made the saved 3-class head unloadable."""
    torch.manual_seed(0)
    model = build(name, task="classification", num_labels=3).eval()
    model.save_pretrained(tmp_path / "c3")
    loaded = genomix.from_pretrained(tmp_path / "c3").eval()
    ids = torch.randint(7, 11, (2, 30))
    assert loaded.config.num_labels == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_an_unknown_pooling_fails_as_the_classifier_is_built(tmp_path):
    """Caduceus' classifier pools in its own code, so a pooling set on a built config (from_pretrained's overrides)
    passed construction and failed only at the first forward; it now fails as the model is built, in every path,
    listing the modes there are."""
    from transformers import AutoModelForSequenceClassification

    listed = r"unknown pooling 'maxx'; choose one of mean, last, first"
    with pytest.raises(ConfigError, match=listed):
        CaduceusConfig(d_model=16, n_layer=2, d_state=4, pooling="maxx")
    with pytest.raises(ConfigError, match=listed):
        build("caduceus-ps-1k-d118", task="classification", pooling="maxx")
    config = CaduceusConfig(d_model=16, n_layer=2, d_state=4)
    config.pooling = "maxx"
    with pytest.raises(ConfigError, match=listed):
        CaduceusForSequenceClassification(config)
    build("caduceus-ph-1k-d118", task="masked-lm").save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match=listed):
        genomix.from_pretrained(tmp_path / "m", task="classification", pooling="maxx")
    with pytest.raises(ConfigError, match=listed):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "m", pooling="maxx")
