"""Host-memory activation checkpointing: gradients equal plain autograd's, with dropout (the RNG replays)
and under autocast (the recompute runs in the forward's precision); arguments that need gradients are refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genomix.models.host_checkpoint import host_checkpoint


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(8, 16), nn.Linear(16, 8), nn.Dropout(0.3)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return x + scale * self.fc2(self.drop(torch.relu(self.fc1(x)))).float()


@pytest.mark.parametrize("autocast", [False, True])
def test_gradients_match_plain_autograd(autocast):
    torch.manual_seed(0)
    block = _Block().train()
    x = torch.randn(4, 8)

    def grads(checkpointed: bool):
        torch.manual_seed(7)  # same dropout masks in both runs
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = host_checkpoint(block, leaf, 0.5) if checkpointed else block(leaf, 0.5)
        out.square().sum().backward()
        result = [leaf.grad] + [p.grad.clone() for p in block.parameters()]
        block.zero_grad(set_to_none=True)
        return out.detach(), result

    plain_out, plain = grads(False)
    out, got = grads(True)
    torch.testing.assert_close(out, plain_out)
    for a, b in zip(got, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_rng_state_after_backward_is_untouched():
    block = _Block().train()
    leaf = torch.randn(4, 8, requires_grad=True)
    out = host_checkpoint(block, leaf, 1.0)
    state = torch.get_rng_state()
    out.sum().backward()  # the recompute replays the forward's RNG inside a fork
    assert torch.equal(torch.get_rng_state(), state)


def test_only_the_first_argument_may_need_a_gradient():
    with pytest.raises(ValueError, match="only the first argument"):
        host_checkpoint(lambda a, b: a * b, torch.randn(2, requires_grad=True), torch.randn(2, requires_grad=True))


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", _DEVICES)
def test_chain_of_checkpoints_matches_plain_autograd(device):
    """Several checkpointed blocks in a row, two steps: on CUDA this runs the copy stream and the
    prefetch of each block's predecessor; gradients must equal plain autograd's."""
    torch.manual_seed(0)
    blocks = nn.ModuleList(_Block() for _ in range(4)).to(device).eval()  # no dropout: compare exactly
    x = torch.randn(64, 8, device=device)

    def grads(checkpointed: bool):
        leaf = x.clone().requires_grad_()
        hidden = leaf
        for block in blocks:
            hidden = host_checkpoint(block, hidden, 0.5) if checkpointed else block(hidden, 0.5)
        hidden.square().sum().backward()
        result = [leaf.grad] + [p.grad.clone() for p in blocks.parameters()]
        blocks.zero_grad(set_to_none=True)
        return result

    plain = grads(False)
    for _ in range(2):  # the second step links its first checkpoint to the first step's (consumed) last one
        for a, b in zip(grads(True), plain):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
