"""GraphedForward: an inference forward replayed from a CUDA graph equals the eager forward with the filters'
spectra kept, refuses other shapes and changed weights (GPU tests), and refuses what it cannot capture."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import ConfigError
from genomix.models import GraphedForward, build, fixed_filters


def _ids(batch, length, device, seed=0):
    return torch.randint(7, 11, (batch, length), generator=torch.Generator().manual_seed(seed)).to(device)


def test_needs_a_cuda_model_in_eval_mode():
    model = build("hyenadna-tiny-1k", n_layer=1, d_model=32, max_seq_len=64)
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedForward(model.eval(), _ids(2, 32, "cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "m2-tiny-1k", "m2-bert-small-1k", "mamba-tiny-1k"])
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
