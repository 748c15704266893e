"""The CUDA-graph generation step: refused off CUDA, eager there; on a GPU its logits, states and tokens
equal the eager step's (Mamba), and the full forward's (HyenaDNA, causal M2)."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import ConfigError
from genomix.models import build, generation
from genomix.models.step_graph import ENV_SWITCH, GRAPH_MIN_STEPS, GraphedStep, step_function


def _model(device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    return build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).to(device).eval()


def test_refused_and_eager_without_cuda():
    model = _model()
    state = model.allocate_state(2)
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedStep(model, state, 2)
    step = step_function(model, state, 2)
    assert not isinstance(step, GraphedStep)
    ids = torch.tensor([7, 9])
    want_state = model.allocate_state(2)
    torch.testing.assert_close(step(ids), model.step(ids, want_state), rtol=0, atol=0)
    for a, b in zip(state, want_state):  # the returned step advances the state it was given
        assert torch.equal(a.ssm, b.ssm) and torch.equal(a.conv, b.conv)


def test_read_only_state_fields_are_not_saved_for_the_warm_up():
    """A graph's warm-up saves and restores what a step writes; the long filters' taps are never written."""
    from genomix.models.step_graph import state_tensors

    model = build("hyenadna-tiny-1k", task="causal-lm", d_model=16, n_layer=2, max_seq_len=32).eval()
    state = model.allocate_state(1, length=8)
    written = state_tensors(state, written_only=True)
    assert len(state_tensors(state)) == 8 and len(written) == 6
    assert not any(t is layer.filters for t in written for layer in state)


needs_gpu = pytest.mark.gpu  # CUDA graphs


@needs_gpu
@pytest.mark.parametrize("autocast", [False, True])
def test_replays_equal_eager_steps(autocast):
    model = _model("cuda")
    prompt = torch.randint(7, 11, (3, 20), device="cuda")
    tokens = torch.randint(7, 11, (5, 3), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        graphed_state, eager_state = model.allocate_state(3, "cuda"), model.allocate_state(3, "cuda")
        model.prefill(prompt, graphed_state)
        model.prefill(prompt, eager_state)
        step = GraphedStep(model, graphed_state, 3)
        for a, b in zip(graphed_state, eager_state):  # capturing (and its warm-up) leaves the state as it was
            assert torch.equal(a.ssm, b.ssm) and torch.equal(a.conv, b.conv)
        for ids in tokens:
            got, want = step(ids), model.step(ids, eager_state)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(graphed_state, eager_state):
        torch.testing.assert_close(a.ssm, b.ssm, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="captured"):
        step(tokens[0, :2])


def test_few_announced_steps_stay_eager():
    """Too few steps to pay for a capture: the eager step, on any device."""
    model = _model()
    state = model.allocate_state(1)
    assert not isinstance(step_function(model, state, 1, steps=GRAPH_MIN_STEPS - 1), GraphedStep)


@needs_gpu
def test_chunked_prefill_matches_graphed_steps():
    """A prompt past ``max_seq_len`` is prefilled in parallel chunks that continue the state (the Triton
    scan from an initial state, the conv from its cached inputs); that state and its logits equal stepping
    the same tokens through the graph after the first chunk."""
    model = _model("cuda")
    prompt = torch.randint(7, 11, (2, 64 + GRAPH_MIN_STEPS + 3), device="cuda")
    chunked = model.allocate_state(2, "cuda")
    got = model.prefill(prompt, chunked)
    stepped = model.allocate_state(2, "cuda")
    model.prefill(prompt[:, :64], stepped)
    step = GraphedStep(model, stepped, 2)
    for t in range(64, prompt.shape[1]):
        want = step(prompt[:, t])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for a, b in zip(chunked, stepped):
        torch.testing.assert_close(a.ssm, b.ssm, rtol=1e-4, atol=1e-5)
        # the cached conv inputs are in-projection outputs: a chunk's GEMM and a step's GEMV round apart
        torch.testing.assert_close(a.conv, b.conv, rtol=1e-5, atol=1e-6)


@needs_gpu
def test_generation_tokens_with_and_without_graphs(monkeypatch):
    model = _model("cuda")
    prompt = torch.randint(7, 11, (2, 30), device="cuda")
    graphed = generation.generate(model, prompt, 12, greedy=True)
    greedy = model.generate_greedy(prompt, 12)
    monkeypatch.setenv(ENV_SWITCH, "0")
    eager = generation.generate(model, prompt, 12, greedy=True)
    assert torch.equal(graphed, eager)
    assert torch.equal(greedy, model.generate_greedy(prompt, 12))


@needs_gpu
@pytest.mark.parametrize("name", ["mamba-tiny-1k", "hyenadna-tiny-1k"])
def test_beam_search_with_and_without_graphs(monkeypatch, name):
    """Beam search reorders the captured state's rows in place between replays: the graph keeps reading
    the right beams, and the beams equal the eager step's."""
    torch.manual_seed(0)
    model = build(name, task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).to("cuda").eval()
    prompt = torch.randint(7, 11, (2, 20), device="cuda")
    graphed, graphed_ll = generation.beam_search(model, prompt, 24, num_beams=4)
    monkeypatch.setenv(ENV_SWITCH, "0")
    eager, eager_ll = generation.beam_search(model, prompt, 24, num_beams=4)
    assert torch.equal(graphed, eager)
    torch.testing.assert_close(graphed_ll, eager_ll)


@needs_gpu
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("name, options", [("hyenadna-tiny-1k", {}), ("m2-tiny-1k", {"residual_long_conv": True})])
def test_long_conv_replays_equal_the_forward(autocast, name, options):
    """HyenaDNA's and causal M2's step replayed from a graph, on the GPU's kernels (short conv step, Triton
    prefill): each token's logits equal the parallel forward's at that position, and greedy tokens the
    sliding window's."""
    torch.manual_seed(0)
    model = build(name, task="causal-lm", d_model=64, n_layer=2, max_seq_len=256, **options).to("cuda").eval()
    ids = torch.randint(7, 11, (2, 200), device="cuda")
    tol = 2e-2 if autocast else 1e-4
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast), torch.no_grad():
        full = model(ids).logits.float()
        state = model.allocate_state(2, "cuda", ids.shape[1])
        model.prefill(ids[:, :150], state)
        step = GraphedStep(model, state, 2)
        for t in range(150, ids.shape[1]):
            got = step(ids[:, t]).float()
            assert (got - full[:, t]).abs().max() <= tol * full[:, t].abs().max(), t
    graphed = generation.generate(model, ids[:, :100], 40, greedy=True)
    window = generation.generate(model, ids[:, :100], 40, greedy=True, recurrent=False)
    assert torch.equal(graphed, window)
