"""GraphedForward: an inference forward replayed from a CUDA graph equals the eager forward with the filters'
spectra kept, refuses other shapes and changed weights (GPU tests), and refuses what it cannot capture."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import ConfigError
from genomix.models import GraphedForward, build, fixed_filters, graphed_forwards, inference_loop


def _ids(batch, length, device, seed=0):
    return torch.randint(7, 11, (batch, length), generator=torch.Generator().manual_seed(seed)).to(device)


def test_needs_a_cuda_model_in_eval_mode():
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=32, max_seq_len=64)
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedForward(model.eval(), _ids(2, 32, "cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "m2-tiny-1k", "m2-bert-small-1k", "mamba-tiny-1k",
                                  "transformer-tiny-1k"])
def test_replays_equal_the_eager_forward(name):
    torch.manual_seed(0)
    model = build(name, max_seq_len=1024).cuda()
    with pytest.raises(ConfigError, match="eval"):
        GraphedForward(model, _ids(2, 256, "cuda"))
    model.eval()
    graphed = GraphedForward(model, _ids(2, 256, "cuda"), output_hidden_states=True)
    for seed in (1, 2):  # new inputs through the same graph
        ids = _ids(2, 256, "cuda", seed)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), fixed_filters(model):
            want = model(input_ids=ids, output_hidden_states=True)
        got = graphed(ids)
        assert torch.equal(got.logits, want.logits)
        assert all(torch.equal(a, b) for a, b in zip(got.hidden_states, want.hidden_states))
    with pytest.raises(ValueError, match="captured for"):
        graphed(_ids(1, 256, "cuda"))
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    with pytest.raises(ValueError, match="weights changed"):
        graphed(ids)


def test_graphed_forwards_leaves_cpu_calls_alone():
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=32, max_seq_len=64).eval()
    ids = _ids(2, 40, "cpu")
    with torch.no_grad():
        want = model(ids).logits
        with graphed_forwards(model) as same:
            assert same is model and "forward" in vars(model)
            assert torch.equal(model(ids).logits, want)
            with graphed_forwards(model):  # nested: the outer block serves
                assert torch.equal(model(input_ids=ids).logits, want)
        assert "forward" not in vars(model)
        with graphed_forwards(model, enabled=False):
            assert "forward" not in vars(model)


@pytest.mark.gpu
def test_graphed_forwards_capture_repeated_shapes_and_recapture_after_a_weight_change(monkeypatch):
    from genomix.models import forward_graph

    captures = []
    original = forward_graph.GraphedForward.__init__
    monkeypatch.setattr(forward_graph.GraphedForward, "__init__",
                        lambda self, *a, **kw: captures.append(a[1].shape) or original(self, *a, **kw))
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", max_seq_len=1024).cuda().eval()
    a, b, other = _ids(4, 128, "cuda", 1), _ids(4, 128, "cuda", 2), _ids(2, 64, "cuda", 3)

    def plain(ids):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(ids).logits

    want_a, want_b, want_other = plain(a), plain(b), plain(other)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), inference_loop(model):
        assert torch.equal(model(a).logits, want_a) and not captures  # first sight: eager
        assert torch.equal(model(input_ids=b).logits, want_b) and len(captures) == 1  # captured
        assert torch.equal(model(a).logits, want_a) and len(captures) == 1  # replayed
        assert torch.equal(model(other).logits, want_other) and len(captures) == 1
        masked = model(a, attention_mask=torch.ones_like(a)).logits  # masks run eagerly
        assert torch.equal(masked, want_a) and len(captures) == 1
        with torch.enable_grad():
            assert model(a).logits.requires_grad  # gradients: eager
        next(model.parameters()).mul_(1.01)  # in place, as optimisers and load_state_dict write
        changed = model(a).logits
        assert len(captures) == 2
    assert torch.equal(changed, plain(a))


@pytest.mark.parametrize("error, message", [(torch.cuda.OutOfMemoryError("simulated"), "no memory"),
                                            (RuntimeError("operation not permitted when stream is capturing"),
                                             "the capture failed: operation not permitted")])
def test_a_shape_whose_capture_fails_runs_eagerly(monkeypatch, caplog, error, message):
    """Simulated on the CPU: every call is made eligible, and capturing raises."""
    from genomix.models import forward_graph

    attempts = []

    def failing_capture(*args, **kwargs):
        attempts.append(1)
        raise error

    monkeypatch.setattr(forward_graph._GraphedCalls, "_key", lambda self, args, kwargs: ((2, 40), False, None))
    monkeypatch.setattr(forward_graph, "GraphedForward", failing_capture)
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=32, max_seq_len=64).eval()
    ids = _ids(2, 40, "cpu")
    with torch.no_grad():
        want = model(ids).logits
        with graphed_forwards(model):
            results = [model(ids).logits for _ in range(4)]
    assert all(torch.equal(r, want) for r in results)
    assert len(attempts) == 1  # tried at the second call, never again
    assert message in caplog.text and "running it eagerly" in caplog.text


@pytest.mark.gpu
def test_a_forward_that_synchronises_falls_back_to_eager_on_the_gpu(monkeypatch, caplog):
    """A real failed capture: the input check made to read a value back to the host (the real one skips its
    device sync while a graph is captured)."""
    from genomix.models import hyena

    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k", max_seq_len=1024).cuda().eval()
    ids = _ids(2, 128, "cuda")
    with torch.no_grad():
        want = model(ids).logits
        monkeypatch.setattr(hyena, "check_input_ids", lambda input_ids, config: int(input_ids.max()))
        with inference_loop(model):
            results = [model(ids).logits for _ in range(3)]
        assert all(torch.equal(r, want) for r in results)
        assert "the capture failed" in caplog.text
        assert torch.equal(model(ids).logits, want)  # the device is usable after the failed capture
    # ...random ops included: the failed capture left the device's generator in capture mode until restored
    torch.manual_seed(1)
    first = torch.randn(8, device="cuda")
    torch.manual_seed(1)
    assert torch.equal(torch.randn(8, device="cuda"), first)
    assert torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5).count_nonzero() > 0


def test_a_failed_capture_restores_the_generator(monkeypatch):
    """Simulated on the CPU: the capture context raises; the device's generator is handed a clone of its own
    state, and the capture's error reaches the caller."""
    from genomix.models import graph_capture

    class FakeGenerator:
        def __init__(self):
            self.given = []

        def clone_state(self):
            return "clone"

        def graphsafe_set_state(self, state):
            self.given.append(state)

    class FailingGraph:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            raise RuntimeError("operation failed due to a previous error during capture")

    generators = (FakeGenerator(), FakeGenerator())
    monkeypatch.setattr(torch.cuda, "default_generators", generators)
    monkeypatch.setattr(torch.cuda, "graph", FailingGraph)
    with pytest.raises(RuntimeError, match="during capture"):
        with graph_capture.capture(object(), torch.device("cuda", 1)):
            pass
    assert generators[1].given == ["clone"] and generators[0].given == []
