"""One new position of the causal long convolution, for token-by-token generation (HyenaDNA's step).

The convolution's output at position p is ``sum_j k[:, j] * w[p - j]`` over every earlier input ``w = u *
pregate``, so a step needs the inputs so far, not a fixed-size state. They are kept in ``history`` (batch,
channels, n), fp32, as a ring: the input at position p lives at index ``p % n``. A step writes the new
input there and takes one dot product per channel with the filter's taps gathered in ring order
(``k[(p - s) % n]`` against ``history[s]``). Slots not yet written hold zeros, so a history allocated for
n positions gives the exact causal convolution for the first n positions of a sequence; ``position`` is a
device tensor, so the step keeps fixed shapes and no host sync (what a CUDA graph replays).

This is memory-bound work. Here (the reference, and the path off CUDA) it is a gather of the filter,
shared by the batch, and one batched matrix-vector product; on CUDA one Triton kernel
(:mod:`.step_kernels`, op ``fftconv_update``, 4x faster at 65K positions) reads the history and the filter
once. The parallel :func:`genomix.kernels.fftconv.fftconv` is what reads prompts.
"""
from __future__ import annotations

import torch

from ..dispatch import records_graph, use_triton


def fftconv_update(
    history: torch.Tensor,
    position: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
) -> torch.Tensor:
    """One new position of :func:`~genomix.kernels.fftconv.fftconv` (causal form).

    ``history`` (B, H, n) fp32: the earlier inputs ``u * pregate`` of a sequence, the one at position p at
    index ``p % n``; this one is written in place at ``position`` (an integer tensor of one element on
    history's device; the caller advances it). ``u``, ``pregate``, ``postgate``: (B, H); ``k``: (H, n), the
    filter's first n taps; ``D``: (H,). Returns ``postgate * (sum_j k[:, j] * w[position - j] + u * pregate
    * D)`` (B, H) in u's dtype, computed in fp32 as :func:`fftconv` does; exact while ``position < n``.
    Differentiable on every device: where autograd records the call, the reference runs (the kernel has no
    backward).
    """
    if history.dim() != 3 or u.shape != history.shape[:2]:
        raise ValueError(f"fftconv_update: history must be (batch, channels, n) and u (batch, channels), "
                         f"got {tuple(history.shape)} and {tuple(u.shape)}")
    if history.dtype != torch.float32:
        raise TypeError(f"fftconv_update: the history must be fp32, got {history.dtype}")
    for name, t in (("u", u), ("k", k), ("D", D), ("pregate", pregate), ("postgate", postgate)):
        if t is not None and not t.is_floating_point():  # an integer u would come back truncated
            raise TypeError(f"fftconv_update: {name} must be a floating-point tensor, got {t.dtype}")
    if position.numel() != 1 or position.is_floating_point() or position.device != history.device:
        raise ValueError(f"fftconv_update: position must be one integer on {history.device}, got "
                         f"{tuple(position.shape)} {position.dtype} on {position.device}")
    if k.shape != history.shape[1:]:
        raise ValueError(f"fftconv_update: k must be (channels, n) = {tuple(history.shape[1:])} like the "
                         f"history, got {tuple(k.shape)}")
    if D is not None and D.shape != (u.shape[1],):
        raise ValueError(f"fftconv_update: D must be ({u.shape[1]},), got {tuple(D.shape)}")
    for name, gate in (("pregate", pregate), ("postgate", postgate)):
        if gate is not None and gate.shape != u.shape:
            raise ValueError(f"fftconv_update: {name} must be {tuple(u.shape)} like u, got {tuple(gate.shape)}")
    w = u.float() if pregate is None else u.float() * pregate.float()
    if (use_triton(history, u, k, op="fftconv_update") and history.is_contiguous()
            and not records_graph(history, w, k, D, postgate)):
        from .step_kernels import ring_dot_triton  # imports triton: only when this path is taken

        y = ring_dot_triton(history, position, w.contiguous(), k.float().contiguous())
    else:
        y = _ring_dot(history, position, w, k)
    if D is not None:
        y = y + w * D.float()
    if postgate is not None:
        y = y * postgate.float()
    return y.to(u.dtype)


def _ring_dot(history: torch.Tensor, position: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The reference of the step's core: ``w`` (B, H) fp32 written at ring slot ``position % n``, then
    ``sum_s history[..., s] * k[:, (position - s) % n]`` (B, H) fp32."""
    n = history.shape[-1]
    slot = position.reshape(1) % n
    history.index_copy_(-1, slot, w.unsqueeze(-1))
    taps = k.float().index_select(-1, (slot - torch.arange(n, device=history.device)) % n)  # k[(p - s) % n]
    return torch.einsum("bhs,hs->bh", history, taps)


__all__ = ["fftconv_update"]
