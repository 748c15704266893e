"""PyTorch references of LayerNorm and RMSNorm over the last dimension with a chosen output dtype, and of
a pre-norm block's add-norm.

``F.layer_norm`` computed in fp32 (float64 for float64 inputs) with autocast off, then cast to
``out_dtype``: in fp32 exactly what ``nn.LayerNorm`` returns, and under autocast what the model's
``nn.LayerNorm`` (autocast runs it in fp32) followed by the next Linear's cast to bf16 computes.
RMSNorm is mamba_ssm's (``x * rsqrt(mean(x^2) + eps) * weight`` in fp32, no centring, no bias).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _wide(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def layer_norm_ref(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over x's last dim, returned in ``out_dtype`` (x's by default)."""
    wide = _wide(x)
    with torch.autocast(x.device.type, enabled=False):
        out = F.layer_norm(
            x.to(wide), x.shape[-1:], None if weight is None else weight.to(wide),
            None if bias is None else bias.to(wide), eps,
        )
    return out.to(out_dtype or x.dtype)


def rms_norm_ref(
    x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over x's last dim in fp32 (float64 for float64 x), returned
    in ``out_dtype`` (x's by default)."""
    xf = x.to(_wide(x))
    out = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps)
    if weight is not None:
        out = out * weight.to(xf.dtype)
    return out.to(out_dtype or x.dtype)


def add_norm_ref(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None = None,
    eps: float = 1e-5, rms: bool = False, out_dtype: torch.dtype | None = None,
    residual_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pre-norm block's add-norm (mamba_ssm's ``Block`` / fused add-norm): ``s = x + residual`` (``x`` alone
    without one) in ``residual_dtype`` (None: the sum's own dtype), then ``norm(s)`` computed from s in
    the weight's dtype (RMSNorm with ``rms``, else LayerNorm). Returns ``(norm(s) in out_dtype, s)``."""
    total = x if residual is None else residual + x
    if residual_dtype is not None:
        total = total.to(residual_dtype)
    normed = total if weight is None else total.to(weight.dtype)
    y = rms_norm_ref(normed, weight, eps, out_dtype) if rms else layer_norm_ref(normed, weight, bias, eps, out_dtype)
    return y, total
