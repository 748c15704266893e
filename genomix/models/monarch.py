"""Structured linear layers of Monarch Mixer: the Monarch matrix and its single block-diagonal cousin.

A Monarch matrix (Dao et al., 2022; Fu et al., 2023) is a product of two block-diagonal factors, each
followed by a fixed permutation::

    y = P2 · L · P1 · R · x

``R`` has ``nblocks`` (= k) blocks of shape ``(q, p)`` acting on the input split into k chunks of p;
``P1`` regroups the k·q intermediate values as q groups of k (one value from every block), ``L`` has q
blocks of shape ``(k, k)`` mixing across the original blocks, and ``P2`` puts the result back in the
block-major order. Every output depends on every input, yet the weights number about ``in·out/k +
out·k``: with ``nblocks=4`` a Monarch GLU MLP has ~4× fewer weights than a dense one, and with
``nblocks = sqrt(n)`` a square layer has the classic ``2·n^1.5``. The layer is a drop-in for
:class:`torch.nn.Linear` with any ``in``/``out`` (non-multiples of ``nblocks`` are zero-padded on the way
in and truncated on the way out).

How it is computed depends on the size. Up to ``DENSE_MAX_WEIGHTS`` weights of the equivalent dense
matrix (every width M2 uses, up to 1024 -> 8192) the factors are multiplied into that matrix on each
call (``in·out·k`` multiply-adds, independent of the number of tokens) and applied as one GEMM: on a GPU
the structured form's batched matmul, permutation copies and cross-block sums were memory-bound passes
over every token that took over half of an M2 training step (BENCHMARKS.md), while the GEMM is a few
microseconds of tensor-core time. Gradients reach the factors through the product. Larger layers run
structured: R as one batched matmul (``torch.bmm``), L as a batched ``einsum`` for large blocks and, for
k <= 8, as k weighted sums of contiguous slices. The parameters, and so the parameter count and the
checkpoint layout, are the factors either way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear, linear


_SMALL_K = 8  # up to this many blocks, the cross-block factor runs as k weighted sums, not a bmm
#: Layers whose dense equivalent has at most this many weights are applied as one dense GEMM.
DENSE_MAX_WEIGHTS = 2**23


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _StructuredLinear(nn.Module):
    """Shared plumbing: padding of the input, bias, dense export and ``nn.Linear``-like repr."""

    def __init__(self, in_features: int, out_features: int, nblocks: int, bias: bool) -> None:
        super().__init__()
        if nblocks < 1:
            raise ValueError(f"nblocks must be >= 1, got {nblocks}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"features must be positive, got in={in_features}, out={out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.nblocks = nblocks
        self.in_blksz = _ceil_div(in_features, nblocks)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` flattened to (tokens, k·p), zero-padded when ``in_features`` is not a multiple of k."""
        x = x.reshape(-1, self.in_features)
        padded = self.nblocks * self.in_blksz
        return F.pad(x, (0, padded - self.in_features)) if padded != self.in_features else x

    def _finish(self, y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        y = y[:, : self.out_features]
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def _applies_dense(self) -> bool:
        return self.in_features * self.out_features <= DENSE_MAX_WEIGHTS

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` with W the differentiable product of the factors (see the module docstring)."""
        return linear(x, self.dense_weight(), self.bias)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) matrix this layer applies, differentiable in the parameters."""
        raise NotImplementedError

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """The (out, in) matrix this layer applies, detached (export, tests)."""
        return self.dense_weight()

    def _reset_bias(self) -> None:
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nblocks={self.nblocks}, bias={self.bias is not None}"
        )


class MonarchLinear(_StructuredLinear):
    """``y = P2·L·P1·R·x + b``: a Monarch matrix as a drop-in replacement for ``nn.Linear``.

    Parameters are ``blkdiag1`` (k, q, p) -- the factor R -- and ``blkdiag2`` (q, k, k) -- the factor
    L -- where k = ``nblocks``, p = ceil(in/k), q = ceil(out/k).
    """

    def __init__(self, in_features: int, out_features: int, nblocks: int = 4, bias: bool = True) -> None:
        super().__init__(in_features, out_features, nblocks, bias)
        self.out_blksz = _ceil_div(out_features, nblocks)
        k, p, q = nblocks, self.in_blksz, self.out_blksz
        self.blkdiag1 = nn.Parameter(torch.empty(k, q, p))
        self.blkdiag2 = nn.Parameter(torch.empty(q, k, k))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Variance-matched to ``nn.Linear``'s default: R like a Linear of fan-in p, L variance-preserving."""
        nn.init.uniform_(self.blkdiag1, -1.0 / math.sqrt(self.in_blksz), 1.0 / math.sqrt(self.in_blksz))
        bound2 = math.sqrt(3.0 / self.nblocks)
        nn.init.uniform_(self.blkdiag2, -bound2, bound2)
        self._reset_bias()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._applies_dense():
            return self._dense_forward(x)
        shape = x.shape
        k, p, q = self.nblocks, self.in_blksz, self.out_blksz
        h = self._pad_input(x)
        n_tok = h.shape[0]
        w1, w2 = self.blkdiag1.to(h.dtype), self.blkdiag2.to(h.dtype)
        # R: block j maps input chunk j (p values) to q values.  (k, T, p) @ (k, p, q) -> (k, T, q)
        h = torch.bmm(h.view(n_tok, k, p).transpose(0, 1), w1.transpose(1, 2))
        # P1, L, P2: group i gathers value i of every block j, mixes those k values with its (k, k)
        # block, and writes output b of group i to index b·q + i (block-major again).
        if k <= _SMALL_K:
            # y_b = sum_j h_j * w2[:, b, j]: contiguous (T, q) slices and broadcast weights, so no
            # strided transposes (which dominated the GPU step when done as a batched matmul).
            w = w2.permute(1, 2, 0)  # (b, j, i)
            y = torch.stack([(h * w[b][:, None, :]).sum(0) for b in range(k)], dim=1)  # (T, k, q)
        else:  # large blocks: one batched matmul over the q groups
            y = torch.einsum("jti,ibj->tbi", h, w2)
        y = y.reshape(n_tok, k * q)
        return self._finish(y, shape)

    def dense_weight(self) -> torch.Tensor:
        """W[b·q + i, j·p + c] = L[i, b, j] · R[j, i, c]: input c of block j reaches intermediate i of block
        j through R, which P1 sends to group i, where L's (b, j) entry mixes it into output b of group i,
        which P2 writes to b·q + i."""
        k, p, q = self.nblocks, self.in_blksz, self.out_blksz
        dense = torch.einsum("ibj,jic->bijc", self.blkdiag2, self.blkdiag1).reshape(k * q, k * p)
        return dense[: self.out_features, : self.in_features]


class BlockdiagLinear(_StructuredLinear):
    """One block-diagonal factor (``nblocks`` independent groups): M2-BERT's grouped MLP layer."""

    def __init__(self, in_features: int, out_features: int, nblocks: int = 4, bias: bool = True) -> None:
        super().__init__(in_features, out_features, nblocks, bias)
        self.out_blksz = _ceil_div(out_features, nblocks)
        self.weight = nn.Parameter(torch.empty(nblocks, self.out_blksz, self.in_blksz))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_blksz)
        nn.init.uniform_(self.weight, -bound, bound)
        self._reset_bias()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._applies_dense():
            return self._dense_forward(x)
        shape = x.shape
        k, p, s = self.nblocks, self.in_blksz, self.out_blksz
        h = self._pad_input(x)
        n_tok = h.shape[0]
        w = self.weight.to(h.dtype)
        y = torch.bmm(h.view(n_tok, k, p).transpose(0, 1), w.transpose(1, 2))  # (k, T, s)
        return self._finish(y.transpose(0, 1).reshape(n_tok, k * s), shape)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) block-diagonal matrix this layer applies, differentiable in ``weight``."""
        dense = torch.block_diag(*self.weight.unbind(0))
        return dense[: self.out_features, : self.in_features]


def make_linear(kind: str, in_features: int, out_features: int, nblocks: int, bias: bool = True) -> nn.Module:
    """A linear layer by name: ``"monarch"``, ``"blockdiag"`` (M2-BERT's grouped layer) or ``"dense"``."""
    if kind == "monarch":
        return MonarchLinear(in_features, out_features, nblocks=nblocks, bias=bias)
    if kind == "blockdiag":
        return BlockdiagLinear(in_features, out_features, nblocks=nblocks, bias=bias)
    if kind == "dense":
        return Linear(in_features, out_features, bias=bias)
    raise ValueError(f"unknown linear kind {kind!r}; expected 'monarch', 'blockdiag' or 'dense'")


__all__ = ["BlockdiagLinear", "MonarchLinear", "make_linear"]
