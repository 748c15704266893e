"""Monarch and block-diagonal linear layers: exact dense equivalence, structure and parameter savings."""
from __future__ import annotations

import pytest
import torch

from genomix.models import build
from genomix.models import monarch as monarch_module
from genomix.models.monarch import BlockdiagLinear, MonarchLinear, make_linear


@pytest.fixture(params=["dense", "structured"])
def path(request, monkeypatch):
    """Run a test through both ways a structured layer is applied: one GEMM of the materialised matrix
    (every small layer) and the factored batched matmuls (layers above ``DENSE_MAX_WEIGHTS``)."""
    if request.param == "structured":
        monkeypatch.setattr(monarch_module, "DENSE_MAX_WEIGHTS", 0)
    return request.param


def monarch_by_definition(layer: MonarchLinear, x: torch.Tensor) -> torch.Tensor:
    """y = P2 L P1 R x written as explicit index loops from the factors (tiny sizes only)."""
    k, p, q = layer.nblocks, layer.in_blksz, layer.out_blksz
    xp = torch.zeros(k * p, dtype=x.dtype)
    xp[: layer.in_features] = x
    w1, w2 = layer.blkdiag1.detach(), layer.blkdiag2.detach()
    h = torch.zeros(k, q, dtype=x.dtype)  # R: block j, output i
    for j in range(k):
        for i in range(q):
            h[j, i] = sum(w1[j, i, a] * xp[j * p + a] for a in range(p))
    y = torch.zeros(k * q, dtype=x.dtype)
    for i in range(q):  # P1 gathers value i of every block; L mixes them; P2 writes back block-major
        for b in range(k):
            y[b * q + i] = sum(w2[i, b, j] * h[j, i] for j in range(k))
    return y[: layer.out_features] + layer.bias.detach()


@pytest.mark.parametrize("cls", [MonarchLinear, BlockdiagLinear])
@pytest.mark.parametrize("shape", [(16, 16, 4), (10, 23, 4), (64, 256, 8), (96, 32, 4), (7, 3, 2), (9, 9, 1), (48, 80, 16)])
def test_forward_equals_materialised_dense_matrix(cls, shape, path):
    torch.manual_seed(0)
    n_in, n_out, k = shape
    layer = cls(n_in, n_out, nblocks=k).double()
    x = torch.randn(3, 5, n_in, dtype=torch.float64)
    dense = layer.to_dense()
    assert dense.shape == (n_out, n_in)
    torch.testing.assert_close(layer(x), x @ dense.T + layer.bias, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 8, 2), (6, 11, 3), (12, 5, 4), (20, 18, 10)])
def test_monarch_matches_its_definition(shape, path):
    torch.manual_seed(1)
    layer = MonarchLinear(*shape[:2], nblocks=shape[2]).double()
    x = torch.randn(shape[0], dtype=torch.float64)
    torch.testing.assert_close(layer(x), monarch_by_definition(layer, x), rtol=1e-12, atol=1e-12)


def test_monarch_mixes_across_blocks_but_blockdiag_does_not():
    torch.manual_seed(0)
    monarch = MonarchLinear(32, 32, nblocks=4).to_dense()
    blockdiag = BlockdiagLinear(32, 32, nblocks=4).to_dense()
    assert bool((monarch != 0).all()), "every output of a Monarch layer depends on every input"
    assert int((blockdiag != 0).sum()) == 4 * 8 * 8
    assert float(blockdiag[:8, 8:].abs().sum()) == 0.0


@pytest.mark.parametrize("nblocks", [4, 12])  # the weighted-sum and the batched-matmul paths
def test_gradients_match_dense_layer(nblocks, path):
    torch.manual_seed(0)
    layer = MonarchLinear(24, 40, nblocks=nblocks).double()
    x = torch.randn(7, 24, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, 40, dtype=torch.float64)
    (layer(x) * g).sum().backward()
    torch.testing.assert_close(x.grad, g @ layer.to_dense())
    params = {"blkdiag1": layer.blkdiag1.detach().clone().requires_grad_(),
              "blkdiag2": layer.blkdiag2.detach().clone().requires_grad_(), "bias": layer.bias.detach()}

    def f(w1, w2):
        return torch.func.functional_call(layer, {**params, "blkdiag1": w1, "blkdiag2": w2}, (x.detach()[:2],))

    assert torch.autograd.gradcheck(f, (params["blkdiag1"], params["blkdiag2"]))


@torch.no_grad()
def test_init_matches_linear_output_scale():
    torch.manual_seed(0)
    x = torch.randn(4096, 512)
    ref = torch.nn.Linear(512, 512)(x).std()
    out = MonarchLinear(512, 512, nblocks=4)(x).std()
    assert 0.7 < float(out / ref) < 1.4


def _mlp_weights(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".mlp." in n and "layernorm" not in n)


@pytest.mark.parametrize("kind,low,high", [("monarch", 3.5, 4.0), ("blockdiag", 3.95, 4.0)])
def test_mlp_parameter_savings_vs_dense(kind, low, high):
    kw = dict(d_model=256, n_layer=1, d_inner=1024, max_seq_len=64, monarch_nblocks=4)
    dense = _mlp_weights(build("m2-tiny-1k", mlp_linear="dense", **kw))
    structured = _mlp_weights(build("m2-tiny-1k", mlp_linear=kind, **kw))
    assert low <= dense / structured <= high


def test_make_linear_rejects_unknown_kind_and_bad_blocks():
    assert isinstance(make_linear("dense", 4, 4, 2), torch.nn.Linear)
    with pytest.raises(ValueError):
        make_linear("butterfly", 4, 4, 2)
    with pytest.raises(ValueError):
        MonarchLinear(4, 4, nblocks=0)
