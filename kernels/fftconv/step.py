"""One new position of the causal long convolution, for token-by-token generation (HyenaDNA's step).

The convolution's output at position t is ``sum_j k[:, j] * w[t - j]`` over every earlier input ``w = u *
pregate``, so a step needs the inputs so far, not a fixed-size state. They are kept in ``history`` (batch,
channels, n), fp32, newest first: each step shifts it by one and writes the new input at index 0, and the
output is then one dot product per channel against the filter's first ``n`` taps. Slots not yet written
hold zeros, so a history allocated for n positions gives the exact causal convolution for the first n
positions of a sequence with fixed shapes (what a CUDA graph replays).

This is memory-bound GEMV work that PyTorch issues as a shift copy and one batched matmul, so it has no
Triton kernel; the parallel :func:`genomix.kernels.fftconv.fftconv` is what reads prompts.
"""
from __future__ import annotations

import torch


def fftconv_update(
    history: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    pregate: torch.Tensor | None = None,
    postgate: torch.Tensor | None = None,
) -> torch.Tensor:
    """One new position of :func:`~genomix.kernels.fftconv.fftconv` (causal form).

    ``history`` (B, H, n) fp32: the earlier inputs ``u * pregate``, newest first, updated in place with
    this one. ``u``, ``pregate``, ``postgate``: (B, H); ``k``: (H, n), the filter's first n taps; ``D``:
    (H,). Returns ``postgate * (sum_j k[:, j] * history[:, :, j] + u * pregate * D)`` (B, H) in u's dtype,
    computed in fp32 as :func:`fftconv` does.
    """
    if history.dim() != 3 or u.shape != history.shape[:2]:
        raise ValueError(f"fftconv_update: history must be (batch, channels, n) and u (batch, channels), "
                         f"got {tuple(history.shape)} and {tuple(u.shape)}")
    if history.dtype != torch.float32:
        raise TypeError(f"fftconv_update: the history must be fp32, got {history.dtype}")
    if k.shape != history.shape[1:]:
        raise ValueError(f"fftconv_update: k must be (channels, n) = {tuple(history.shape[1:])} like the "
                         f"history, got {tuple(k.shape)}")
    if D is not None and D.shape != (u.shape[1],):
        raise ValueError(f"fftconv_update: D must be ({u.shape[1]},), got {tuple(D.shape)}")
    for name, gate in (("pregate", pregate), ("postgate", postgate)):
        if gate is not None and gate.shape != u.shape:
            raise ValueError(f"fftconv_update: {name} must be {tuple(u.shape)} like u, got {tuple(gate.shape)}")
    w = u.float() if pregate is None else u.float() * pregate.float()
    history.copy_(history.roll(1, dims=-1))
    history[..., 0] = w
    y = torch.einsum("bhj,hj->bh", history, k.float())
    if D is not None:
        y = y + w * D.float()
    if postgate is not None:
        y = y * postgate.float()
    return y.to(u.dtype)


__all__ = ["fftconv_update"]
