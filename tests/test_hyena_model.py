"""HyenaDNA backbone: parity with the released layout fixture, sizes, inputs, heads, checkpointing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genomix
from genomix.errors import ConfigError, InputFormatError, RangeError, TokenizationError
from genomix.models import build
from genomix.models.generation import generate, next_token_distribution
from genomix.models.scoring import token_log_likelihoods
from genomix.models.heads import pool
from genomix.models.hyena import HyenaConfig
from genomix.tokenizer import A_ID, C_ID, G_ID, PAD_ID, T_ID, encode, pad_batch

CASES = ("L1", "L17", "L256", "L1024")


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "hyenadna-released-layout"


@pytest.fixture(scope="module")
def released(fixture_dir):
    return genomix.from_pretrained(fixture_dir)


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return dict(np.load(fixture_dir / "expected.npz"))


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", CASES)
def test_released_layout_parity(released, expected, case):
    ids = torch.from_numpy(expected[f"{case}_input_ids"])
    with torch.no_grad():
        out = released(ids, output_hidden_states=True)
    assert rel_err(out.hidden_states[-1].numpy(), expected[f"{case}_hidden"]) <= 1e-5
    assert rel_err(out.logits[..., :12].numpy(), expected[f"{case}_logits"]) <= 1e-5
    assert out.logits.shape[-1] == 16  # padded vocabulary


def _count(name: str) -> int:
    with torch.device("meta"):
        model = build(name)
    assert model.config.modulation_shift == 0.05
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, count", [("hyenadna-tiny-1k", 436_096), ("hyenadna-small-32k", 3.3e6), ("hyenadna-large-1m", 6.6e6)]
)
def test_named_sizes_match_released_parameter_counts(name, count):
    n = _count(name)
    assert n == count if isinstance(count, int) else abs(n - count) / count < 0.01, n


def test_sizes_differing_only_in_context_share_parameter_counts():
    # Filters are implicit: parameter count does not depend on l_max (positional features are buffers).
    assert _count("hyenadna-tiny-16k-d128") == _count("hyenadna-tiny-1k")
    assert _count("hyenadna-medium-160k") == _count("hyenadna-medium-450k") == _count("hyenadna-large-1m")
    assert _count("hyenadna-tiny-1k-d256") > _count("hyenadna-tiny-1k")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown model 'hyenadna-huge-9m'.*Did you mean"):
        build("hyenadna-huge-9m")


def test_too_long_and_invalid_inputs(released):
    with pytest.raises(RangeError, match="longer than this model's max_seq_len 1026"):
        released(torch.full((1, 1027), A_ID))
    with pytest.raises(InputFormatError, match="token ids must lie"):
        released(torch.tensor([[7, 8, 99]]))
    with pytest.raises(TokenizationError):
        encode("ACGTXZ")


def test_variable_lengths_and_causality(released):
    ids = torch.from_numpy(encode("ACGTTGCAAGGCTTAACCGT"))[None]
    with torch.no_grad():
        full = released(ids).logits
        prefix = released(ids[:, :7]).logits
    torch.testing.assert_close(full[:, :7], prefix, rtol=1e-5, atol=1e-5)


def test_padding_is_invisible(released):
    seqs = [encode("ACGTACGGT"), encode("TTGACAGGCATCAGACTTT")]
    ids, mask = pad_batch(seqs)
    with torch.no_grad():
        batched = released.backbone(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
        alone = released.backbone(torch.from_numpy(seqs[0])[None]).last_hidden_state
    torch.testing.assert_close(batched[0, -len(seqs[0]):], alone[0], rtol=1e-5, atol=1e-5)


def test_pooling_is_padding_aware():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(pool(hidden, mask, "mean")[0], hidden[0, 2:].mean(0))
    torch.testing.assert_close(pool(hidden, mask, "last"), hidden[:, 3])
    torch.testing.assert_close(pool(hidden, mask, "first"), torch.stack([hidden[0, 2], hidden[1, 0]]))
    with pytest.raises(ConfigError):
        pool(hidden, mask, "max")


def test_causal_lm_loss_shifts_and_ignores_padding(released):
    ids = torch.from_numpy(encode("ACGTTGCAAGGCTTAA"))[None]
    labels = ids.clone()
    labels[:, :4] = -100
    with torch.no_grad():
        out = released(ids, labels=labels)
    logits = out.logits[0, 3:-1]
    manual = torch.nn.functional.cross_entropy(logits, ids[0, 4:])
    torch.testing.assert_close(out.loss, manual)


def test_classification_head_and_loss():
    model = build("hyenadna-tiny-1k", task="classification", num_labels=3, n_layer=1, d_model=32, max_seq_len=64)
    ids = torch.randint(7, 11, (4, 20))
    out = model(ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 2, 1]))
    assert out.logits.shape == (4, 3) and out.loss.requires_grad
    out.loss.backward()
    assert model.backbone.layers[0].mixer.filter_fn.implicit_filter[1].freq.grad is not None


@pytest.mark.parametrize("offload", [False, True])
def test_gradient_checkpointing_keeps_names_and_gradients(offload):
    """Checkpointed blocks (on the device, or in host memory, which needs one tensor in and out: the whole
    residual stream) train exactly like plain ones."""
    torch.manual_seed(0)
    plain = build("hyenadna-tiny-1k", n_layer=2, d_model=32, max_seq_len=64, embed_dropout=0.0)
    ckpt = build("hyenadna-tiny-1k", n_layer=2, d_model=32, max_seq_len=64, embed_dropout=0.0, checkpoint_blocks=True)
    assert list(plain.state_dict()) == list(ckpt.state_dict())
    ckpt.load_state_dict(plain.state_dict())
    ckpt.backbone.offload_checkpoints = offload
    ids = torch.randint(7, 11, (2, 40))
    for model in (plain, ckpt):
        model.train()
        model(ids, labels=ids).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_hidden_states_are_the_residual_stream_after_each_block():
    """Blocks leave their last residual add to the next norm; the recorded states must still be the plain
    pre-norm stream ``x = x + mixer(norm1(x)); x = x + mlp(norm2(x))`` after each block, the last one normed."""
    torch.manual_seed(1)
    model = build("hyenadna-tiny-1k", n_layer=3, d_model=32, max_seq_len=64).eval()
    backbone = model.backbone
    ids = torch.randint(7, 11, (2, 30))
    with torch.no_grad():
        states = backbone(ids, output_hidden_states=True).hidden_states
        x = backbone.embeddings(ids).float()
        want = [x]
        for block in backbone.layers:
            x = x + block.mixer(block.norm1(x))
            x = x + block.mlp(block.norm2(x))
            want.append(x)
        want[-1] = backbone.ln_f(x)
    assert len(states) == len(want) == 4
    for got, ref in zip(states, want):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_implicit_filter_is_recomputed_not_kept(monkeypatch):
    """The filter MLP's activations are not saved for the backward, and gradients are unchanged by that."""
    from genomix.models import hyena

    def saved_bytes_and_grads(model, ids):
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(ids, labels=ids).loss
        loss.backward()
        return sum(saved), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=16, max_seq_len=4096, embed_dropout=0.0).train()
    ids = torch.randint(7, 11, (1, 4000))
    recomputed, grads = saved_bytes_and_grads(model, ids)
    model.zero_grad()
    monkeypatch.setattr(hyena, "checkpoint", lambda fn, *args, **kwargs: fn(*args))  # keep everything
    kept, kept_grads = saved_bytes_and_grads(model, ids)
    filter_mlp = 4000 * 64 * 4  # one (L, filter_order) fp32 activation
    assert kept - recomputed >= 4 * filter_mlp
    for name, grad in grads.items():
        torch.testing.assert_close(grad, kept_grads[name], rtol=0, atol=0, msg=name)


def test_long_inputs_run_the_mlp_in_recomputed_chunks(monkeypatch):
    """Past MLP_CHUNK_TOKENS the MLP keeps no (tokens, d_inner) activations; gradients are unchanged."""
    from genomix.models import hyena

    torch.manual_seed(0)
    mlp = hyena.HyenaMLP(HyenaConfig(d_model=8, d_inner=32))
    x = torch.randn(2, 50, 8, requires_grad=True)

    def run():
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = mlp(x)
        grads = torch.autograd.grad(out.square().sum(), [x, *mlp.parameters()])
        return out.detach(), grads, sum(saved)

    out, grads, kept = run()
    monkeypatch.setattr(hyena, "MLP_CHUNK_TOKENS", 20)  # chunks of 10 positions x 2 sequences
    chunked_out, chunked_grads, chunked_kept = run()
    assert chunked_kept < kept - 2 * 50 * 32  # at least one (tokens, d_inner) activation fewer
    torch.testing.assert_close(chunked_out, out, rtol=0, atol=0)
    for a, b in zip(chunked_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_config_round_trips_and_validates(tmp_path):
    config = HyenaConfig(d_model=64, n_layer=3, pooling="last", modulation_shift=0.0)
    config.save_pretrained(tmp_path)
    again = HyenaConfig.from_pretrained(tmp_path)
    assert again.to_dict()["d_model"] == 64 and again.pooling == "last" and again.modulation_shift == 0.0
    with pytest.raises(ConfigError, match="emb_dim"):
        HyenaConfig(emb_dim=4)


def test_generation_greedy_topk_and_temperature(released):
    prompt = torch.from_numpy(encode("ACGTACGT"))[None].repeat(2, 1)
    greedy = generate(released, prompt, 5, greedy=True)
    assert greedy.shape == (2, 13) and torch.equal(greedy[:, :8], prompt)
    assert torch.equal(greedy[0], greedy[1])
    assert ((greedy[:, 8:] >= A_ID) & (greedy[:, 8:] <= T_ID)).all()
    g1 = generate(released, prompt, 6, temperature=0.7, top_k=2, generator=torch.Generator().manual_seed(1))
    g2 = generate(released, prompt, 6, temperature=0.7, top_k=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(g1, g2)
    probs = next_token_distribution(torch.randn(3, 16), top_k=1)
    assert torch.equal((probs > 0).sum(-1), torch.ones(3, dtype=torch.long))
    assert probs[:, PAD_ID].eq(0).all()
    with pytest.raises(ConfigError):
        next_token_distribution(torch.randn(1, 16), temperature=0)


def test_nucleus_sampling_keeps_what_transformers_keeps():
    """top_p keeps the most probable bases whose mass reaches top_p (at least one), after temperature and
    top-k, as transformers' logits warpers do; the padded vocabulary stays at zero."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    base_logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    logits = torch.full((1, 16), -5.0)
    logits[:, [A_ID, C_ID, G_ID, T_ID]] = base_logits
    kept = next_token_distribution(logits, top_p=0.75)[0, [A_ID, C_ID, G_ID, T_ID]]
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert next_token_distribution(logits, top_p=0.01)[0, A_ID] == 1  # the most probable base always stays
    torch.manual_seed(0)
    logits = torch.randn(64, 16) * 2
    allowed = torch.full((16,), float("-inf"))
    allowed[[A_ID, C_ID, G_ID, T_ID]] = 0
    for temperature, top_k, top_p in ((1.0, None, 0.9), (0.7, 3, 0.5), (1.3, 2, 0.95)):
        expected = TemperatureLogitsWarper(temperature)(None, logits + allowed)
        if top_k is not None:
            expected = TopKLogitsWarper(top_k)(None, expected)
        expected = TopPLogitsWarper(top_p)(None, expected).softmax(-1)
        got = next_token_distribution(logits, temperature, top_k, top_p=top_p)
        assert torch.allclose(got, expected, atol=1e-6), (temperature, top_k, top_p)
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="top_p must be in"):
            next_token_distribution(logits, top_p=bad)


def test_recurrent_steps_equal_the_forward(released):
    """The released model's prompt read in parallel and then one token at a time: every position's logits
    are the whole-sequence forward's."""
    ids = torch.from_numpy(encode("ACGTTGCAAGGCTTAACCGGTATACGATCGGATCCATGCA"))[None].repeat(2, 1)
    ids[1] = ids[1].flip(0)
    released.eval()
    with torch.no_grad():
        full = released(ids).logits
        state = released.allocate_state(2, length=ids.shape[1])
        got = [released.prefill(ids[:, :9], state)]
        got += [released.step(ids[:, t], state) for t in range(9, ids.shape[1])]
    torch.testing.assert_close(torch.stack(got, 1), full[:, 8:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [2, 3])
def test_recurrent_generation_equals_the_sliding_window(order):
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64, hyena_order=order)
    prompt = torch.randint(A_ID, T_ID + 1, (2, 20))
    for kw in (dict(greedy=True), dict(top_k=3, generator=torch.Generator().manual_seed(3))):
        recurrent = generate(model, prompt, 30, recurrent=True, **kw)
        if "generator" in kw:
            kw["generator"].manual_seed(3)
        assert torch.equal(recurrent, generate(model, prompt, 30, recurrent=False, **kw))
    past_the_context = generate(model, prompt, 50, greedy=True)  # 69 positions: only the window can
    assert torch.equal(past_the_context[:, :50], generate(model, prompt, 30, greedy=True)[:, :50])
    for recurrent in (True, False):  # each path's log-likelihood of its new tokens, as one parallel pass scores them
        sequences, log_likelihood = generate(model, prompt, 30, recurrent=recurrent, temperature=2.0,
                                             generator=torch.Generator().manual_seed(4), return_log_likelihood=True)
        expected = token_log_likelihoods(model, sequences)[:, prompt.shape[1] - 1:].sum(-1)
        torch.testing.assert_close(log_likelihood, expected, rtol=1e-5, atol=1e-4)


def test_recurrent_state_limits_are_clear_errors():
    model = build("hyenadna-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()
    prompt = torch.randint(A_ID, T_ID + 1, (1, 20))
    with pytest.raises(RangeError, match="1..64 positions"):
        model.allocate_state(1, length=65)
    state = model.allocate_state(1, length=10)
    with pytest.raises(RangeError, match="does not fit a state allocated for 10"):
        model.prefill(prompt, state)
    state = model.allocate_state(1, length=30)
    model.prefill(prompt, state)
    with pytest.raises(ConfigError, match="fresh state"):
        model.prefill(prompt, state)
    with pytest.raises(ConfigError, match="no recurrent state that holds 69"):
        generate(model, prompt, 50, recurrent=True)


def test_transformers_gradient_checkpointing_switch_reaches_the_backbone():
    model = build("hyenadna-tiny-1k", task="classification", num_labels=2, n_layer=1, d_model=32, max_seq_len=64)
    assert not model.backbone.gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.backbone.gradient_checkpointing
    model.train()
    ids = torch.randint(7, 11, (2, 30))
    model(ids, labels=torch.tensor([0, 1])).loss.backward()
    assert model.score.proj.weight.grad is not None


def test_fused_add_norm_path_matches_reference_in_training(monkeypatch):
    """The block's first residual add fused with its second norm (Triton add-norm in the interpreter, every
    other op on its reference) gives the reference path's loss and gradients."""
    from genomix.kernels.dispatch import TRITON_BY_DEFAULT

    torch.manual_seed(2)
    model = build("hyenadna-tiny-1k", n_layer=2, d_model=32, max_seq_len=64, embed_dropout=0.0)
    model.train()
    ids = torch.randint(7, 11, (2, 40))

    def loss_and_grads():
        model.zero_grad()
        loss = model(ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    want, want_grads = loss_and_grads()
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", ",".join(sorted(TRITON_BY_DEFAULT - {"add_norm"}) + ["fftconv"]))
    got, got_grads = loss_and_grads()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)

