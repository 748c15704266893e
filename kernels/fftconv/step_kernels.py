"""One new position of the causal long convolution in one Triton kernel (HyenaDNA's and M2's generation
step): the ring write and each channel's dot product with the filter taps in ring order, reading the
history and the filter once. Semantics and the CPU path: :func:`.step.fftconv_update`, whose PyTorch form
gathers the filter into a new tensor and runs a batched matrix-vector product (four passes over the
history's size instead of two; on an H200, 0.649 against 2.608 ms per ``hyenadna-large-1m`` token at 65,664
positions).

The history is long (every earlier position), so each (sequence, channel block) is cut into slices of
positions, one program each; the slices' partial sums are added, with the skip term and gate, by a few
small PyTorch ops (a graph replays them with the kernel).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Channels per program, and positions per step of a program's loop.
BLOCK_H = 8
BLOCK_S = 256
#: Positions per program (a multiple of BLOCK_S): enough programs to fill the GPU at long histories.
SLICE = 4096


@triton.jit
def _ring_dot_kernel(hist_ptr, k_ptr, w_ptr, pos_ptr, part_ptr, batch, channels, n, slice_len,
                     BLOCK_H: tl.constexpr, BLOCK_S: tl.constexpr):
    """Program (b, channel block, slice): partial[slice, b, c] = sum over positions s of the slice of
    ``w if s == slot else history[b, c, s]`` times ``k[c, (p - s) % n]``; the program whose slice holds the
    ring slot ``p % n`` writes w there (``w`` is this position's input u·pregate, fp32)."""
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    part = tl.program_id(2)
    cmask = c < channels
    p = tl.load(pos_ptr).to(tl.int64)
    slot = p % n
    w = tl.load(w_ptr + b * channels + c, mask=cmask, other=0.0)
    rows = (b * channels + c).to(tl.int64) * n
    krows = c.to(tl.int64) * n
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    start = part * slice_len
    for s0 in range(start, tl.minimum(start + slice_len, n), BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        smask = s < n
        mask = cmask[:, None] & smask[None, :]
        h = tl.load(hist_ptr + rows[:, None] + s[None, :], mask=mask, other=0.0)
        h = tl.where(s[None, :] == slot, w[:, None], h)
        lag = slot - s
        lag = tl.where(lag < 0, lag + n, lag)
        k = tl.load(k_ptr + krows[:, None] + lag[None, :], mask=mask, other=0.0)
        acc += tl.sum(h * k, axis=1)
    tl.store(part_ptr + (part * batch + b) * channels + c, acc, mask=cmask)
    if (slot >= start) & (slot < start + slice_len):
        tl.store(hist_ptr + rows + slot, w, mask=cmask)


def ring_dot_triton(history: torch.Tensor, position: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``sum_j k[:, j] * input[position - j]`` (B, H) fp32 after writing ``w`` (B, H) fp32 at the ring slot
    ``position % n`` of ``history`` (B, H, n) fp32 (in place); ``k`` (H, n) fp32. Contiguous tensors."""
    batch, channels, n = history.shape
    slices = triton.cdiv(n, SLICE)
    partial = torch.empty(slices, batch, channels, dtype=torch.float32, device=history.device)
    _ring_dot_kernel[(batch, triton.cdiv(channels, BLOCK_H), slices)](
        history, k, w, position, partial, batch, channels, n, SLICE, BLOCK_H=BLOCK_H, BLOCK_S=BLOCK_S,
        num_warps=4,
    )
    return partial.sum(0)


__all__ = ["ring_dot_triton"]
