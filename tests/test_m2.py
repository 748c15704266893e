"""Monarch Mixer backbones: shapes, causality, bidirectionality, padding, save/load, training on real DNA."""
from __future__ import annotations

import math

import pytest
import torch
import transformers

from genomix.errors import ConfigError, RangeError
from genomix.models import build
from genomix.models.m2 import M2Config, M2ForMaskedLM, MonarchMixerSequenceMixing
from genomix.tokenizer import encode

TINY = dict(d_model=32, n_layer=2, d_inner=64, filter_order=16, max_seq_len=128)


def tiny(name: str = "m2-tiny-1k", task: str | None = None, **kw):
    torch.manual_seed(0)
    model = build(name, task=task, **{**TINY, **kw})
    return model.eval()


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 12, (batch, length), generator=g)


# ----------------------------------------------------------------------------- shapes and heads


@pytest.mark.parametrize("task", ["base", "causal-lm"])
def test_causal_shapes(task):
    model = tiny(task=task)
    out = model(random_ids(2, 50), output_hidden_states=True)
    assert len(out.hidden_states) == TINY["n_layer"] + 1
    if task == "base":
        assert out.last_hidden_state.shape == (2, 50, 32)
    else:
        assert out.logits.shape == (2, 50, model.config.padded_vocab_size)
        torch.testing.assert_close(out.hidden_states[-1] @ model.backbone.embeddings.weight.T, out.logits)


def test_bert_heads_and_default_task():
    mlm = tiny("m2-bert-small-1k")
    assert isinstance(mlm, M2ForMaskedLM) and mlm.config.bidirectional
    ids = random_ids(3, 40)
    labels = torch.full_like(ids, -100)
    labels[:, 5] = ids[:, 5]
    out = mlm(ids, labels=labels)
    assert out.logits.shape == (3, 40, 16)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 5], ids[:, 5])
    torch.testing.assert_close(out.loss, expected)  # position-wise, no shift
    clf = tiny("m2-bert-small-1k", task="classification", num_labels=3)
    out = clf(ids, labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3) and out.loss.ndim == 0
    with pytest.raises(ConfigError):
        tiny("m2-bert-small-1k", task="causal-lm")


def test_causal_lm_loss_is_shifted():
    model = tiny()
    ids = random_ids(2, 30)
    out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 16), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_too_long_raises_range_error():
    with pytest.raises(RangeError, match="max_seq_len"):
        tiny()(random_ids(1, 129))


@pytest.mark.parametrize("name", ["m2-tiny-1k", "m2-small-32k", "m2-medium-131k", "m2-bert-small-1k", "m2-bert-base-32k"])
def test_named_configs_load(name):
    from genomix.models import load_config

    config = load_config(name)
    assert isinstance(config, M2Config) and config.d_model in (128, 256, 768)
    assert config.name == name


# ----------------------------------------------------------------------------- causality / direction


@pytest.mark.parametrize("residual", [False, True])
def test_causal_output_ignores_the_future(residual):
    model = tiny(residual_long_conv=residual)
    ids = random_ids(2, 96)
    for t in (0, 17, 60):
        changed = ids.clone()
        changed[:, t + 1:] = random_ids(2, 96 - t - 1, seed=t + 1)  # a real perturbation after t
        changed[:, t + 1] = 7 + (ids[:, t + 1] - 6) % 5  # make sure position t+1 really differs
        with torch.no_grad():
            a, b = model(ids).logits, model(changed).logits
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-5)
        assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3  # and the perturbation does propagate


@pytest.mark.parametrize("residual", [False, True])
def test_recurrent_steps_equal_the_forward_and_generation_the_window(residual):
    """A causal M2 reads a prompt in parallel and then one token at a time: every position's logits are the
    whole-sequence forward's, and generated tokens the sliding window's."""
    from genomix.models.generation import generate

    model = tiny("m2-tiny-1k", task="causal-lm", residual_long_conv=residual)
    ids = random_ids(2, 60)
    with torch.no_grad():
        full = model(ids).logits
        state = model.allocate_state(2, length=ids.shape[1])
        got = [model.prefill(ids[:, :7], state)] + [model.step(ids[:, t], state) for t in range(7, 60)]
    torch.testing.assert_close(torch.stack(got, 1), full[:, 6:], rtol=1e-5, atol=1e-5)
    prompt = ids[:, :30]
    assert torch.equal(generate(model, prompt, 40, greedy=True, recurrent=True),
                       generate(model, prompt, 40, greedy=True, recurrent=False))


def test_bidirectional_m2_has_no_generation_state():
    with pytest.raises(ConfigError, match="no token-by-token state"):
        tiny("m2-bert-small-1k", task="base").allocate_state(1, length=8)


def test_bidirectional_model_sees_both_sides():
    model = tiny("m2-bert-small-1k")
    ids = random_ids(1, 64)
    with torch.no_grad():
        base = model(ids).logits[0, 30]
        for pos in (10, 50):  # one change far before and one far after position 30
            changed = ids.clone()
            changed[0, pos] = 7 + (ids[0, pos] - 6) % 5
            assert (model(changed).logits[0, 30] - base).abs().max() > 1e-4, f"position 30 blind to {pos}"


def toeplitz_mix(mixer: MonarchMixerSequenceMixing, u: torch.Tensor) -> torch.Tensor:
    """The sequence mixer written without FFTs: explicit short conv and an (L, L) long-conv matrix."""
    d, length = mixer.d_model, u.shape[1]
    z = mixer.in_linear(u)  # (B, L, 3d)
    w = mixer.short_filter.weight[:, 0]  # (3d, 3): y[t] = sum_j w[j] z[t - (2 - j)]
    zp = torch.nn.functional.pad(z, (0, 0, 2, 0))
    z = sum(w[:, j] * zp[:, j: j + length] for j in range(3)) + mixer.short_filter.bias
    x1, x2, v = z.split(d, dim=-1)
    k = mixer.filter_fn.kernel(length)
    kf, kr = k[:, :length], k[:, length:]
    t = torch.arange(length)
    lag = t[:, None] - t[None, :]  # t - s
    mat = torch.where(lag >= 0, kf[:, lag.clamp(min=0)], torch.zeros(()))
    if mixer.bidirectional:
        mat = mat + torch.where(lag < 0, kr[:, (-lag - 1).clamp(min=0)], torch.zeros(()))
    x = v * x1
    y = torch.einsum("cts,bsc->btc", mat, x) + x * mixer.filter_fn.bias
    return mixer.out_linear(y * x2)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mixer_matches_direct_convolution(bidirectional):
    torch.manual_seed(0)
    config = M2Config(d_model=8, max_seq_len=40, filter_order=8, bidirectional=bidirectional)
    mixer = MonarchMixerSequenceMixing(config).double()
    u = torch.randn(2, 40, 8, dtype=torch.float64)
    torch.testing.assert_close(mixer(u), toeplitz_mix(mixer, u), rtol=1e-9, atol=1e-9)
    assert mixer.filter_fn.kernel(40).shape == (8, 80 if bidirectional else 40)


@pytest.mark.parametrize("name", ["m2-tiny-1k", "m2-bert-small-1k"])
def test_padding_does_not_change_real_positions(name):
    model = tiny(name, residual_long_conv=True)
    ids = random_ids(1, 40)
    pad = torch.full((1, 9), 4)
    causal = not model.config.bidirectional
    padded = torch.cat([pad, ids], 1) if causal else torch.cat([ids, pad], 1)  # left pad for causal
    mask = (padded != 4).long()
    with torch.no_grad():
        ref = model(ids).logits
        out = model(padded, attention_mask=mask).logits
    real = out[:, 9:] if causal else out[:, :40]
    torch.testing.assert_close(real, ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- training and I/O


def test_forward_backward_reaches_every_parameter():
    model = tiny("m2-bert-small-1k").train()
    ids = random_ids(2, 64)
    model(ids, labels=ids).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


def test_parameter_names_follow_m2_bert():
    names = set(dict(tiny("m2-bert-small-1k").named_parameters())) | set(tiny("m2-bert-small-1k").state_dict())
    prefix = "backbone.layers.0."
    for part in (
        "sequence_mixing.in_linear.weight", "sequence_mixing.out_linear.weight", "sequence_mixing.short_filter.weight",
        "sequence_mixing.filter_fn.implicit_filter.0.weight", "sequence_mixing.filter_fn.implicit_filter_rev.0.weight",
        "sequence_mixing.filter_fn.pos_emb.z", "sequence_mixing.filter_fn.modulation.deltas",
        "sequence_mixing.filter_fn.bias", "sequence_mixing.filter_fn2.bias",
        "mlp.gated_layers.weight", "mlp.wo.weight", "mlp.layernorm.weight",
    ):
        assert prefix + part in names, part


@pytest.mark.parametrize("name,cls", [("m2-tiny-1k", transformers.AutoModelForCausalLM),
                                      ("m2-bert-small-1k", transformers.AutoModelForMaskedLM)])
def test_save_load_round_trip_native_and_auto(tmp_path, name, cls):
    import genomix

    model = tiny(name)
    with torch.no_grad():  # move every parameter off its init so a silent re-init would show
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ids = random_ids(2, 33)
    with torch.no_grad():
        ref = model(ids).logits
    model.save_pretrained(tmp_path)
    for loaded in (type(model).from_pretrained(tmp_path), genomix.from_pretrained(tmp_path), cls.from_pretrained(tmp_path)):
        assert type(loaded) is type(model)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(ids).logits, ref, rtol=1e-5, atol=1e-6)


def test_trains_on_phage_lambda(shared_dir):
    """A few hundred steps on real sequence: held-out loss falls from chance to about the base entropy."""
    text = (shared_dir / "data" / "genomes" / "phage_lambda_NC_001416.fa").read_text().splitlines()
    ids = torch.as_tensor(encode("".join(line.strip() for line in text if not line.startswith(">"))))
    assert len(ids) == 48_502
    window, split = 64, int(len(ids) * 0.9)
    train, held_out = ids[:split], ids[split:]
    val = held_out[: (len(held_out) // window) * window].view(-1, window)[:32]
    torch.manual_seed(0)
    model = build("m2-tiny-1k", d_model=32, n_layer=2, d_inner=64, filter_order=16, max_seq_len=window)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            loss = model(val, labels=val).loss.item()
        model.train()
        return loss

    before = evaluate()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        starts = torch.randint(0, split - window, (4,), generator=g)
        x = torch.stack([train[s: s + window] for s in starts])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert before > 2.0  # chance over 16 padded vocabulary rows is ln 16 = 2.77
    assert after < math.log(4) + 0.03, (before, after)  # at least as good as a uniform guess over ACGT
