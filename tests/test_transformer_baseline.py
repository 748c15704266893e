"""The causal Transformer baseline: shapes, causality, padding, RoPE, save/load."""
from __future__ import annotations

import pytest
import torch
import transformers

from genomix.errors import ConfigError, RangeError
from genomix.models import build
from genomix.models.transformer import TransformerConfig, TransformerForCausalLM, apply_rope, rope_tables

TINY = dict(d_model=32, n_layer=2, n_head=4, d_inner=64, max_seq_len=96)


def tiny(task: str | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("transformer-tiny-1k", task=task, **TINY).eval()


def ids_(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(7, 12, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_loss_and_hidden_states():
    model = tiny()
    assert isinstance(model, TransformerForCausalLM)
    ids = ids_(2, 40)
    out = model(ids, labels=ids, output_hidden_states=True)
    assert out.logits.shape == (2, 40, 16) and len(out.hidden_states) == 3
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 16), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert tiny("base")(ids).last_hidden_state.shape == (2, 40, 32)


def test_causal_and_sensitive_to_the_past():
    model = tiny()
    ids = ids_(1, 64)
    changed = ids.clone()
    changed[0, 41:] = 7 + (ids[0, 41:] - 6) % 5  # every base after position 40 differs
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :41], b[:, :41], rtol=0, atol=1e-5)
    assert (a[:, 41:] - b[:, 41:]).abs().max() > 1e-3


def test_left_padding_leaves_real_positions_unchanged():
    model = tiny()
    ids = ids_(1, 30)
    padded = torch.cat([torch.full((1, 6), 4), ids], 1)
    with torch.no_grad():
        ref = model(ids).logits
        out = model(padded, attention_mask=(padded != 4).long()).logits
    torch.testing.assert_close(out[:, 6:], ref, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(out).all()


def test_rope_is_relative():
    cos, sin = rope_tables(20, 8, 10_000.0, torch.device("cpu"))
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, 20, 8), torch.randn(1, 1, 1, 8).expand(1, 1, 20, 8)
    scores = (apply_rope(q, cos, sin) * apply_rope(k, cos, sin)).sum(-1)[0, 0]  # q_t · k_t for every t
    torch.testing.assert_close(scores, scores[0].expand(20), rtol=1e-5, atol=1e-5)  # depends on t - s only


def test_limits_and_config_errors():
    with pytest.raises(RangeError):
        tiny()(ids_(1, 97))
    with pytest.raises(ConfigError):
        TransformerConfig(d_model=30, n_head=4)


def test_save_load_round_trip(tmp_path):
    import genomix

    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ids = ids_(2, 25)
    with torch.no_grad():
        ref = model(ids).logits
    model.save_pretrained(tmp_path)
    for loaded in (genomix.from_pretrained(tmp_path), transformers.AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is TransformerForCausalLM
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(ids).logits, ref, rtol=1e-5, atol=1e-6)


def test_trains_backward_reaches_every_parameter():
    model = tiny().train()
    ids = ids_(2, 32)
    model(ids, labels=ids).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_an_lm_checkpoint_loads_as_a_classifier_with_its_backbone(tmp_path):
    import genomix
    from genomix.models.transformer import TransformerForSequenceClassification

    lm = tiny()
    lm.save_pretrained(tmp_path)
    clf = genomix.from_pretrained(tmp_path, task="classification", num_labels=3).eval()
    assert type(clf) is TransformerForSequenceClassification
    ids = ids_(2, 40)
    with torch.no_grad():
        torch.testing.assert_close(clf.backbone(ids).last_hidden_state, lm.backbone(ids).last_hidden_state)
        out = clf(ids, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    with pytest.raises(ConfigError):
        TransformerConfig(pooling="median")
