"""Beam search and the repetition penalty: against brute force and a stateless reference on every causal family,
through the recurrent state (beams reordered in place) and the sliding window, and as transformers' options."""
from __future__ import annotations

import itertools

import pytest
import torch

from genomix.errors import ConfigError
from genomix.models import build
from genomix.models.generation import BASE_IDS, beam_search, generate, penalize_repeats
from genomix.models.scoring import token_log_likelihoods

FAMILIES = ["mamba-tiny-1k", "hyenadna-tiny-1k", "m2-tiny-1k", "transformer-tiny-1k"]


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(name, task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()


def _new_token_log_likelihood(model: torch.nn.Module, sequences: torch.Tensor, prompt_length: int) -> torch.Tensor:
    return token_log_likelihoods(model, sequences)[:, prompt_length - 1:].sum(-1)


def _reference_beams(model: torch.nn.Module, prompt: torch.Tensor, new: int, beams: int,
                     penalty: float = 1.0) -> list[list[int]]:
    """Beam search written the plain way: every candidate scored by a full forward over its whole sequence,
    beams kept as Python lists."""
    live = [(0.0, prompt.tolist())]
    for _ in range(new):
        candidates = []
        for score, seq in live:
            logits = model(torch.tensor([seq])).logits[0, -1].float()
            if penalty != 1.0:
                seen = torch.zeros_like(logits, dtype=torch.bool)
                seen[torch.tensor(seq)] = True
                logits = penalize_repeats(logits[None], seen[None], penalty)[0]
            log_probs = torch.log_softmax(logits, -1)
            candidates += [(score + log_probs[t].item(), seq + [t]) for t in BASE_IDS]
        live = sorted(candidates, key=lambda c: -c[0])[:beams]
    return [seq for _, seq in live]


@pytest.mark.parametrize("name", FAMILIES)
def test_all_beams_are_every_continuation_ranked(name):
    """With as many beams as continuations nothing is pruned: the beams are all 4^3 continuations, ranked by
    their log-likelihood, which is what a parallel pass gives them."""
    model = _model(name)
    prompt = torch.randint(7, 11, (2, 6))
    sequences, log_likelihood = beam_search(model, prompt, 3, num_beams=64)
    assert sequences.shape == (128, 9)
    torch.testing.assert_close(log_likelihood, _new_token_log_likelihood(model, sequences, 6), rtol=1e-5, atol=1e-4)
    for row in range(2):
        mine = sequences[row * 64:(row + 1) * 64]
        assert torch.equal(mine[:, :6], prompt[row].expand(64, 6))
        assert {tuple(s) for s in mine[:, 6:].tolist()} == set(itertools.product(BASE_IDS, repeat=3))
        scores = log_likelihood[row * 64:(row + 1) * 64]
        assert (scores[:-1] >= scores[1:] - 1e-6).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_beams_equal_a_stateless_reference(name):
    """Pruned beams (3 of up to 12 candidates, 6 steps) through the model's own path (the recurrent state,
    reordered in place, where it has one) equal the plain search's beams, and the sliding window's."""
    model = _model(name)
    prompt = torch.randint(7, 11, (2, 5))
    sequences, log_likelihood = beam_search(model, prompt, 6, num_beams=3)
    for row in range(2):
        assert sequences[row * 3:(row + 1) * 3].tolist() == _reference_beams(model, prompt[row], 6, 3)
    assert torch.equal(beam_search(model, prompt, 6, num_beams=3, recurrent=False)[0], sequences)
    torch.testing.assert_close(log_likelihood, _new_token_log_likelihood(model, sequences, 5), rtol=1e-5, atol=1e-4)


def test_one_beam_is_greedy_and_penalty_changes_the_ranking_as_the_reference():
    model = _model("mamba-tiny-1k")
    prompt = torch.randint(7, 11, (2, 7))
    assert torch.equal(beam_search(model, prompt, 8, num_beams=1)[0], generate(model, prompt, 8, greedy=True))
    sequences, log_likelihood = beam_search(model, prompt, 5, num_beams=4, repetition_penalty=1.7)
    assert sequences[:4].tolist() == _reference_beams(model, prompt[0], 5, 4, penalty=1.7)
    # the returned log-likelihood stays the model's own, whatever ranked the beams
    torch.testing.assert_close(log_likelihood, _new_token_log_likelihood(model, sequences, 7), rtol=1e-5, atol=1e-4)


def test_repetition_penalty_follows_transformers():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalize_repeats(logits, seen, 2.0).tolist() == [[1.0, -2.0, 0.5, -3.0]]
    assert torch.equal(penalize_repeats(logits, seen, 1.0), logits)
    with pytest.raises(ConfigError, match="repetition_penalty must be a finite number > 0"):
        penalize_repeats(logits, seen, 0.0)


@pytest.mark.parametrize("name", ["mamba-tiny-1k", "transformer-tiny-1k"])
def test_greedy_generation_with_a_repetition_penalty_equals_a_plain_loop(name):
    model = _model(name)
    prompt = torch.tensor([[7, 7, 7, 8, 7, 7]])
    sequence = prompt.tolist()[0]
    for _ in range(10):
        logits = model(torch.tensor([sequence])).logits[:, -1].float()
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen[0, torch.tensor(sequence)] = True
        allowed = torch.full_like(logits, float("-inf"))
        allowed[:, list(BASE_IDS)] = 0
        sequence.append(int((penalize_repeats(logits, seen, 3.0) + allowed).argmax()))
    assert generate(model, prompt, 10, greedy=True, repetition_penalty=3.0)[0].tolist() == sequence


def test_bad_beam_requests_are_refused():
    model = _model("mamba-tiny-1k")
    prompt = torch.randint(7, 11, (1, 5))
    with pytest.raises(ConfigError, match="17 beams need at least that many distinct continuations"):
        beam_search(model, prompt, 2, num_beams=17)
    with pytest.raises(ConfigError, match="num_beams must be >= 1"):
        beam_search(model, prompt, 2, num_beams=0)
    with pytest.raises(ConfigError, match="max_new_tokens >= 1"):
        beam_search(model, prompt, 0, num_beams=2)


@pytest.mark.parametrize("name", ["mamba-tiny-1k", "hyenadna-tiny-1k"])
def test_transformers_beam_options(name):
    """``model.generate(num_beams=...)`` is beam search: ``num_return_sequences`` best beams per prompt, best
    first; the length-only options are taken; beam sampling and more sequences than beams are refused."""
    model = _model(name)
    prompt = torch.randint(7, 11, (2, 6))
    beams, _ = beam_search(model, prompt, 4, num_beams=5, repetition_penalty=1.3)
    got = model.generate(prompt, max_new_tokens=4, num_beams=5, num_return_sequences=2, repetition_penalty=1.3,
                         length_penalty=0.6, early_stopping=True)
    assert torch.equal(got, beams.view(2, 5, -1)[:, :2].flatten(0, 1))
    best = model.generate(prompt, max_new_tokens=4, num_beams=5)
    assert torch.equal(best, beam_search(model, prompt, 4, num_beams=5)[0].view(2, 5, -1)[:, 0])
    assert torch.equal(model.generate(prompt, max_new_tokens=4, num_beams=5, use_cache=False), best)
    with pytest.raises(TypeError, match="beam sampling"):
        model.generate(prompt, max_new_tokens=4, num_beams=2, do_sample=True)
    with pytest.raises(ConfigError, match="returns 1 to num_beams=2"):
        model.generate(prompt, max_new_tokens=4, num_beams=2, num_return_sequences=3)
