"""PyTorch reference of the short causal depthwise convolution (HyenaDNA/M2 ``short_filter``, Mamba ``conv1d``).

``out[b, c, t] = act(bias[c] + sum_j weight[c, j] * x[b, c, t - (K-1) + j])`` with ``x`` zero before
``t = 0``: exactly ``nn.Conv1d(C, C, K, groups=C, padding=K-1)(x)[..., :L]``, the form the released
checkpoints were trained with. The reference computes in fp32 (float64 for float64 inputs) outside
autocast and returns x's dtype, as the Triton kernels do. It is written as K shifted multiply-adds rather
than ``F.conv1d``, which first copies a transposed view (Mamba's conv input is a channel slice of the
time-major in-projection) and took twice as long on it (78 against 36 ms for a (1, 512, 16384) input, once,
on the 2-core development machine); the shifted form keeps x's layout, so the output stays time-major too,
which the scan and the x-projection read without copies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = (None, "silu")


def causal_conv1d_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """Causal depthwise convolution of ``x`` (B, C, L) with per-channel filters ``weight`` (C, K).

    ``bias`` (C,) is added before ``activation`` (None or ``"silu"``, Mamba's). Returns (B, C, L) in x's dtype.
    """
    dtype_in, wide = x.dtype, torch.promote_types(x.dtype, torch.float32)
    width = weight.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        x, weight = x.to(wide), weight.to(wide)
        out = x * weight[:, -1:]  # keeps x's memory layout: a time-major view is not copied
        for tap in range(width - 1):  # tap j reads the input K - 1 - j steps back
            back = width - 1 - tap
            out[..., back:].addcmul_(x[..., :-back], weight[:, tap:tap + 1])
        if bias is not None:
            out.add_(bias.to(wide)[:, None])
        if activation == "silu":
            out = F.silu(out)
    return out.to(dtype_in)


def causal_conv1d_update_ref(
    state: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """One new position of :func:`causal_conv1d` (a generation step): ``state`` (B, C, K) fp32 holds the
    last K inputs, oldest first (zeros before the sequence); it shifts by one, takes ``x`` (B, C) as its
    newest input, in place, and the output (B, C) is the convolution at that position, in x's dtype."""
    state.copy_(torch.roll(state, shifts=-1, dims=-1))
    state[:, :, -1] = x.float()
    out = (state * weight.float()).sum(-1)
    if bias is not None:
        out = out + bias.float()
    if activation == "silu":
        out = F.silu(out)
    return out.to(x.dtype)
