"""Mamba family: golden-fixture parity with mamba_ssm, init, recurrent step(), padding, heads."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import genomix
from genomix.errors import CheckpointError, RangeError
from genomix.models import build
from genomix.models.mamba import MambaConfig, MambaForCausalLM, MambaModel


def _tiny(**kw) -> MambaConfig:
    base = dict(d_model=32, n_layer=2, d_state=8, max_seq_len=512)
    base.update(kw)
    return MambaConfig(**base)


def test_mamba_lm_fixture_parity(shared_dir):
    fixture = shared_dir / "fixtures" / "mamba-lm"
    model = genomix.from_pretrained(fixture)
    assert isinstance(model, MambaForCausalLM) and model.config.padded_vocab_size == 16
    expected = np.load(fixture / "expected.npz")
    for case in ("L1", "L33", "L300"):
        with torch.no_grad():
            logits = model(torch.from_numpy(expected[f"{case}_input_ids"])).logits.numpy()
        ref = expected[f"{case}_logits"]
        assert logits.shape == ref.shape
        assert np.abs(logits - ref).max() / np.abs(ref).max() <= 1e-5, case


def test_fixture_step_matches_parallel_forward(shared_dir):
    model = genomix.from_pretrained(shared_dir / "fixtures" / "mamba-lm")
    ids = torch.from_numpy(np.load(shared_dir / "fixtures" / "mamba-lm" / "expected.npz")["L33_input_ids"])
    with torch.no_grad():
        parallel = model(ids).logits
    state = model.allocate_state(ids.shape[0])
    stepped = torch.stack([model.step(ids[:, t], state) for t in range(ids.shape[1])], dim=1)
    torch.testing.assert_close(stepped, parallel, rtol=1e-5, atol=1e-5)


def test_mamba_ssm_init():
    torch.manual_seed(0)
    config = _tiny(n_layer=4)
    model = MambaForCausalLM(config)
    mixer = model.backbone.layers[0].mixer
    assert torch.equal(mixer.A_log[3], torch.log(torch.arange(1, 9, dtype=torch.float32)))
    assert torch.equal(mixer.D, torch.ones(config.d_inner))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= config.dt_min * 0.999 and dt.max() <= config.dt_max * 1.001
    bound = config.resolved_dt_rank ** -0.5
    assert mixer.dt_proj.weight.abs().max() <= bound
    # out_proj: kaiming-uniform bound 1/sqrt(fan_in), shrunk by sqrt(n_layer)
    assert mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(config.d_inner) / 2 + 1e-6
    assert abs(model.backbone.embedding.weight.std().item() - 0.02) < 0.005
    assert mixer.conv1d.bias is not None and mixer.in_proj.bias is None
    names = set(model.state_dict())
    assert {"backbone.embedding.weight", "backbone.norm_f.weight", "backbone.layers.0.mixer.x_proj.weight"} <= names


def test_left_padding_with_mask_equals_unpadded():
    torch.manual_seed(1)
    model = MambaForCausalLM(_tiny()).eval()
    ids = torch.randint(7, 12, (1, 20))
    padded = torch.cat([torch.full((1, 5), 4), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 20, dtype=torch.long)], dim=1)
    with torch.no_grad():
        ref = model(ids).logits
        out = model(padded, attention_mask=mask).logits[:, 5:]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_causal_lm_loss_shifts_and_gradients_flow():
    torch.manual_seed(2)
    model = MambaForCausalLM(_tiny())
    ids = torch.randint(7, 11, (2, 16))
    out = model(ids, labels=ids)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 16), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert model.backbone.layers[0].mixer.A_log.grad.abs().sum() > 0
    assert model.backbone.layers[1].mixer.dt_proj.bias.grad.abs().sum() > 0


def test_heads_and_errors():
    model = build("mamba-tiny-1k", task="classification", num_labels=3)
    out = model(torch.randint(7, 11, (2, 12)), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0
    mlm = build("mamba-tiny-1k", task="masked-lm")
    assert mlm(torch.randint(7, 11, (1, 8))).logits.shape == (1, 8, 16)
    base = build("mamba-tiny-1k", task="base")
    assert isinstance(base, MambaModel)
    with pytest.raises(RangeError):
        base(torch.randint(7, 11, (1, 1025)))


def test_greedy_generation_uses_state():
    torch.manual_seed(3)
    model = MambaForCausalLM(_tiny()).eval()
    prompt = torch.randint(7, 11, (2, 6))
    out = model.generate_greedy(prompt, 5)
    assert out.shape == (2, 11) and torch.equal(out[:, :6], prompt)
    with torch.no_grad():  # every generated token is the argmax of the parallel forward on its prefix
        logits = model(out[:, :-1]).logits[:, 5:, :12].argmax(-1)
    assert torch.equal(logits, out[:, 6:])


@pytest.mark.parametrize("length", [2, 9])  # shorter and longer than the conv width (4)
def test_prefill_leaves_the_state_that_stepping_leaves(length):
    """One parallel pass over the prompt fills the conv and SSM caches as ``length`` recurrent steps do,
    and gives the same next-token logits."""
    torch.manual_seed(5)
    model = MambaForCausalLM(_tiny()).eval()
    prompt = torch.randint(7, 11, (2, length))
    stepped = model.allocate_state(2)
    for t in range(length):
        want = model.step(prompt[:, t], stepped)
    filled = model.allocate_state(2)
    got = model.prefill(prompt, filled)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for a, b in zip(filled, stepped):
        torch.testing.assert_close(a.conv, b.conv, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.ssm, b.ssm, rtol=1e-4, atol=1e-5)
    nxt = torch.tensor([8, 9])  # and the next step continues from either state alike
    torch.testing.assert_close(model.step(nxt, filled), model.step(nxt, stepped), rtol=1e-4, atol=1e-4)


def test_prefill_steps_past_max_seq_len():
    """A prompt longer than ``max_seq_len`` is read in parallel up to that length and stepped after it, so
    ``generate_greedy`` continues from the whole prompt, as stepping every token (its earlier way) does."""
    torch.manual_seed(7)
    model = MambaForCausalLM(_tiny(max_seq_len=8)).eval()
    prompt = torch.randint(7, 11, (2, 13))
    stepped = model.allocate_state(2)
    for t in range(13):
        want = model.step(prompt[:, t], stepped)
    filled = model.allocate_state(2)
    torch.testing.assert_close(model.prefill(prompt, filled), want, rtol=1e-4, atol=1e-4)
    for a, b in zip(filled, stepped):
        torch.testing.assert_close(a.ssm, b.ssm, rtol=1e-4, atol=1e-5)
    out = model.generate_greedy(prompt, 3)
    assert out.shape == (2, 16) and torch.equal(out[:, :13], prompt)
    assert torch.equal(out[:, 13], want[:, : model.config.vocab_size].argmax(-1))


@pytest.mark.parametrize("path", ["reference", "triton"])
def test_prefill_continues_a_state(path, monkeypatch):
    """A prompt prefilled in two calls on one state (the second continuing the scan from the first's state
    and the conv from its cached inputs) leaves the state and next-token logits of one call, and of
    stepping every token; on the Triton path too (interpreter), where the scan starts from that state."""
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1" if path == "triton" else "0")
    torch.manual_seed(11)
    model = MambaForCausalLM(_tiny()).eval()
    prompt = torch.randint(7, 11, (2, 19))
    whole = model.allocate_state(2)
    want = model.prefill(prompt, whole)
    parts = model.allocate_state(2)
    model.prefill(prompt[:, :7], parts)
    got = model.prefill(prompt[:, 7:], parts)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    stepped = model.allocate_state(2)
    for t in range(prompt.shape[1]):
        stepped_logits = model.step(prompt[:, t], stepped)
    torch.testing.assert_close(got, stepped_logits, rtol=1e-4, atol=1e-4)
    for a, b, c in zip(parts, whole, stepped):
        torch.testing.assert_close(a.conv, b.conv, rtol=0, atol=0)
        torch.testing.assert_close(a.ssm, b.ssm, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.ssm, c.ssm, rtol=1e-4, atol=1e-5)


def test_generate_runs_mamba_recurrently(monkeypatch):
    """``generate`` reads a Mamba prompt in one pass and then steps; its tokens equal those of the
    sliding-window path (which reruns the whole sequence per token) while the sequence fits the window."""
    from genomix.models import generation

    torch.manual_seed(6)
    model = MambaForCausalLM(_tiny()).eval()
    prompt = torch.randint(7, 11, (2, 20))
    calls = []
    monkeypatch.setattr(model, "prefill", lambda *a, _f=model.prefill: calls.append("prefill") or _f(*a))
    recurrent = generation.generate(model, prompt, 12, greedy=True)
    sampled = generation.generate(model, prompt, 12, top_k=3, generator=torch.Generator().manual_seed(2))
    assert calls == ["prefill", "prefill"]
    windowed = generation.generate(model, prompt, 12, greedy=True, recurrent=False)
    assert calls == ["prefill", "prefill"]
    assert recurrent.shape == (2, 32) and torch.equal(recurrent, windowed)
    assert torch.equal(sampled[:, :20], prompt) and sampled.shape == (2, 32)
    short = MambaForCausalLM(_tiny(max_seq_len=16)).eval()  # a prompt past max_seq_len: its last 16 tokens
    long_run = generation.generate(short, prompt, 3, greedy=True)
    assert torch.equal(long_run[:, :20], prompt)
    assert torch.equal(long_run[:, 20:], generation.generate(short, prompt[:, -16:], 3, greedy=True)[:, 16:])


def test_mamba_ssm_adapter_rejects_mismatched_weights(tmp_path, shared_dir):
    import json
    import shutil

    src = shared_dir / "fixtures" / "mamba-lm"
    shutil.copy(src / "pytorch_model.bin", tmp_path / "pytorch_model.bin")
    config = json.loads((src / "config.json").read_text())
    config["d_model"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        genomix.from_pretrained(tmp_path)


def test_auto_loaded_classifier_head_is_initialised(tmp_path):
    """A classification head missing from an LM checkpoint gets real initial values (not meta garbage)."""
    from transformers import AutoModelForSequenceClassification

    build("mamba-tiny-1k").save_pretrained(tmp_path / "lm")
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lm", num_labels=3)
    weight = classifier.score.proj.weight
    assert torch.isfinite(weight).all() and 0 < float(weight.std()) < 0.1
    assert torch.isfinite(classifier(torch.randint(7, 11, (2, 30))).logits).all()


@pytest.mark.parametrize("op", ["add_norm", "transpose"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_triton_glue_ops_match_reference_in_training(autocast, op, monkeypatch):
    """One op through its Triton kernels (interpreter; every other op on its reference) gives the reference
    model's loss and gradients: the blocks' add-norm (under autocast the block norms hand bf16 to the
    mixers and the final norm keeps fp32 hidden states), or the relayouts (a batch of two sequences, so
    the linear layers' inputs go through time_major)."""
    from genomix.kernels.dispatch import TRITON_BY_DEFAULT

    torch.manual_seed(4)
    model = MambaForCausalLM(_tiny(n_layer=3))
    ids = torch.randint(4, 12, (2, 24))

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(ids, labels=ids, output_hidden_states=True)
        out.loss.backward()
        return out, {name: p.grad.clone() for name, p in model.named_parameters()}

    want, want_grads = loss_and_grads()
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", ",".join(sorted(TRITON_BY_DEFAULT - {op})))
    got, got_grads = loss_and_grads()
    assert got.hidden_states[-1].dtype == torch.float32
    tol = 2e-2 if autocast else 1e-5
    torch.testing.assert_close(got.loss, want.loss, rtol=tol, atol=tol)
    for name, grad in want_grads.items():
        err = (got_grads[name] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert err <= (5e-2 if autocast else 1e-4), f"{name}: relative error {err:.2e}"
