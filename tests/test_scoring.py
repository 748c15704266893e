"""Per-token log-likelihoods: equal to the causal LM loss of one forward, and for Mamba the same when the
sequence is read in pieces that continue the recurrent state, including past ``max_seq_len``."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import InputFormatError, RangeError
from genomix.models import build
from genomix.models.scoring import token_log_likelihoods


@pytest.mark.parametrize("name", ["mamba-tiny-1k", "hyenadna-tiny-1k"])
def test_mean_negative_log_likelihood_is_the_lm_loss(name):
    torch.manual_seed(0)
    model = build(name, task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()
    ids = torch.randint(7, 11, (3, 50))
    scores = token_log_likelihoods(model, ids)
    assert scores.shape == (3, 49) and scores.dtype == torch.float32 and (scores <= 0).all()
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(-scores.mean(), loss, rtol=1e-5, atol=1e-5)


def test_mamba_reads_long_sequences_in_pieces():
    """With max_seq_len 16, a 50-token sequence is four pieces; the scores equal those of a model that
    reads it in one (the same weights, max_seq_len 64)."""
    torch.manual_seed(1)
    whole = build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()
    pieces = build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=16).eval()
    pieces.load_state_dict(whole.state_dict())
    ids = torch.randint(7, 11, (2, 50))
    torch.testing.assert_close(token_log_likelihoods(pieces, ids), token_log_likelihoods(whole, ids),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "mamba-tiny-1k", "m2-tiny-1k", "transformer-tiny-1k"])
def test_sequences_of_different_lengths_share_a_right_padded_batch(name):
    """Each row's scores equal the sequence's own, and padding scores 0, so the row sums are the sequences'
    log-likelihoods; left padding is refused."""
    from genomix.tokenizer import PAD_ID, pad_batch

    torch.manual_seed(0)
    model = build(name, task="causal-lm").eval()
    seqs = [torch.randint(7, 11, (n,)) for n in (40, 25, 2)]
    ids, mask = (torch.as_tensor(a) for a in pad_batch([s.numpy() for s in seqs], side="right"))
    assert ids[2, 5].item() == PAD_ID
    scores = token_log_likelihoods(model, ids, attention_mask=mask)
    for row, seq in enumerate(seqs):
        alone = token_log_likelihoods(model, seq[None])[0]
        torch.testing.assert_close(scores[row, :len(seq) - 1], alone, rtol=1e-5, atol=1e-5)
        assert (scores[row, len(seq) - 1:] == 0).all()
    torch.testing.assert_close(scores.sum(dim=1)[1], token_log_likelihoods(model, seqs[1][None]).sum())
    with pytest.raises(InputFormatError, match="right padding only"):
        token_log_likelihoods(model, ids, attention_mask=mask.flip(1))


def test_bad_inputs_are_refused():
    model = build("hyenadna-tiny-1k", task="causal-lm", d_model=32, n_layer=1, max_seq_len=16)
    with pytest.raises(InputFormatError):
        token_log_likelihoods(model, torch.randint(7, 11, (2, 1)))
    with pytest.raises(RangeError):  # a model without a recurrent state reads at most max_seq_len tokens
        token_log_likelihoods(model, torch.randint(7, 11, (1, 40)))


@pytest.mark.parametrize("name, task", [("mamba-tiny-1k", "base"), ("hyenadna-tiny-1k", "classification"),
                                        ("caduceus-ps-1k-d118", "masked-lm")])
def test_models_without_a_next_token_head_are_refused(name, task):
    """A base model's hidden states, a classifier's scores or a masked LM's logits are no next-token
    distribution: scoring and generating with them gave numbers without meaning."""
    from genomix.errors import ConfigError
    from genomix.models.generation import generate

    model = build(name, task=task).eval()
    ids = torch.randint(7, 11, (1, 12))
    with pytest.raises(ConfigError, match="token_log_likelihoods needs a causal language model"):
        token_log_likelihoods(model, ids)
    with pytest.raises(ConfigError, match="generate needs a causal language model"):
        generate(model, ids, 3)
    with pytest.raises(ConfigError, match="max_new_tokens must be 0 or more"):
        generate(build("mamba-tiny-1k", task="causal-lm").eval(), ids, -1)


@pytest.mark.parametrize("name", ["mamba-tiny-1k", "hyenadna-tiny-1k", "m2-tiny-1k", "transformer-tiny-1k"])
def test_causal_lms_generate_as_transformers_models_do(name):
    """``model.generate`` raised AttributeError (genomix models are no ``GenerationMixin``); it now takes the
    transformers options that apply to a DNA LM (greedy unless do_sample, max_new_tokens or max_length,
    use_cache) and refuses the others rather than ignore them."""
    from genomix.errors import ConfigError
    from genomix.models.generation import generate

    torch.manual_seed(0)
    model = build(name, task="causal-lm").eval()
    ids = torch.randint(7, 11, (2, 8))
    greedy = model.generate(ids, max_new_tokens=5, attention_mask=torch.ones_like(ids), eos_token_id=1)
    assert torch.equal(greedy, generate(model, ids, 5, greedy=True))
    assert torch.equal(model.generate(ids, max_length=13, use_cache=False), greedy)  # the window, same tokens
    sampled = model.generate(ids, max_new_tokens=6, do_sample=True, top_k=2,
                             generator=torch.Generator().manual_seed(3))
    again = generate(model, ids, 6, top_k=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampled, again) and set(sampled[:, 8:].unique().tolist()) <= {7, 8, 9, 10}
    nucleus = model.generate(ids, max_new_tokens=6, do_sample=True, top_p=0.6, num_return_sequences=3,
                             generator=torch.Generator().manual_seed(4))
    rows = generate(model, ids.repeat_interleave(3, dim=0), 6, top_p=0.6, generator=torch.Generator().manual_seed(4))
    assert nucleus.shape == (6, 14) and torch.equal(nucleus, rows) and torch.equal(nucleus[1, :8], ids[0])
    with pytest.raises(ConfigError, match="more than one needs do_sample=True"):
        model.generate(ids, max_new_tokens=3, num_return_sequences=2)
    with pytest.raises(TypeError, match=r"does not implement num_beam_groups=2, output_scores=True"):
        model.generate(ids, max_new_tokens=3, num_beams=4, num_beam_groups=2, output_scores=True)
    with pytest.raises(InputFormatError, match="padded positions"):
        model.generate(ids, max_new_tokens=3, attention_mask=torch.tensor([[0] * 2 + [1] * 6, [1] * 8]))
    with pytest.raises(ConfigError, match="one of max_new_tokens and max_length"):
        model.generate(ids)
    with pytest.raises(ConfigError, match="shorter than the prompt"):
        model.generate(ids, max_length=4)
