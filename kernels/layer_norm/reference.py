"""PyTorch reference of LayerNorm over the last dimension with a chosen output dtype.

``F.layer_norm`` computed in fp32 (float64 for float64 inputs) with autocast off, then cast to
``out_dtype``: in fp32 exactly what ``nn.LayerNorm`` returns, and under autocast what the model's
``nn.LayerNorm`` (autocast runs it in fp32) followed by the next Linear's cast to bf16 computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_ref(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over x's last dim, returned in ``out_dtype`` (x's by default)."""
    wide = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        out = F.layer_norm(
            x.to(wide), x.shape[-1:], None if weight is None else weight.to(wide),
            None if bias is None else bias.to(wide), eps,
        )
    return out.to(out_dtype or x.dtype)
