"""The CUDA-graph training step: refused off CUDA; on a GPU its loss and gradients equal an eager step's."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import ConfigError
from genomix.models import build
from genomix.train.cuda_graph import GraphedTrainingStep


def test_refused_without_cuda():
    model = build("m2-tiny-1k", d_model=16, n_layer=1, max_seq_len=32)
    ids = torch.randint(7, 11, (2, 16))
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedTrainingStep(model, {"input_ids": ids, "labels": ids})


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["m2-tiny-1k", "hyenadna-tiny-1k", "transformer-small-32k"])
def test_replays_equal_eager_steps(name):
    torch.manual_seed(0)
    model = build(name, d_model=64, n_layer=2, max_seq_len=512).cuda().train()
    for module in model.modules():  # replays draw other dropout masks than the eager steps: compare without
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batches = [torch.randint(7, 11, (4, 512), device="cuda") for _ in range(3)]
    step = GraphedTrainingStep(model, {"input_ids": batches[0], "labels": batches[0]})
    for ids in batches[1:]:
        loss = step({"input_ids": ids, "labels": ids}).clone()
        graphed = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eager_loss = model(input_ids=ids, labels=ids).loss
        eager_loss.backward()
        torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-4)
        for g, p in zip(graphed, model.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=2e-2, atol=1e-4)



def _eager_grads(model, ids, divisor):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    (loss / divisor).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.gpu
def test_accumulating_replays_add_scaled_gradients_to_what_grad_holds():
    torch.manual_seed(0)
    model = build("m2-tiny-1k", d_model=64, n_layer=2, max_seq_len=256).cuda().train()  # no dropout
    batches = [torch.randint(7, 11, (4, 256), device="cuda") for _ in range(3)]
    step = GraphedTrainingStep(model, {"input_ids": batches[0], "labels": batches[0]}, accumulate=True)
    assert all(not p.grad.any() for p in model.parameters())  # capturing computes nothing: zeros
    for ids in batches[:2]:
        step({"input_ids": ids, "labels": ids}, loss_scale=torch.tensor(0.5, device="cuda"))  # copied on the device
    graphed = [p.grad.clone() for p in model.parameters()]
    eager = [a + b for a, b in zip(*(_eager_grads(model, ids, 2) for ids in batches[:2]))]
    for g, e in zip(graphed, eager):
        torch.testing.assert_close(g, e, rtol=2e-2, atol=1e-4)
    # .grad now holds other tensors (the last eager backward's): the replay takes them over and adds to them
    held = [p.grad.clone() for p in model.parameters()]
    step({"input_ids": batches[2], "labels": batches[2]})
    graphed = [p.grad.clone() for p in model.parameters()]
    for g, h, e in zip(graphed, held, _eager_grads(model, batches[2], 1)):
        torch.testing.assert_close(g, h + e, rtol=2e-2, atol=1e-4)
