"""Normalization layers that call the genomix kernels.

:class:`LayerNorm` is ``nn.LayerNorm`` (same constructor, parameters and state-dict keys, so checkpoints
and ``isinstance(m, nn.LayerNorm)`` initializers keep working) whose forward goes through
:func:`genomix.kernels.layer_norm`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.layer_norm import add_norm, layer_norm

#: Dtypes autocast casts; it leaves float64 alone, and so does :class:`LayerNorm`.
_AUTOCAST_INPUTS = (torch.float32, torch.bfloat16, torch.float16)


def autocast_output_dtype(dtype: torch.dtype, device: str) -> torch.dtype:
    """The dtype a norm of ``dtype`` values hands to the next Linear: the autocast dtype where autocast is on
    for ``device`` (the Linear would cast to it anyway), else ``dtype`` itself."""
    if dtype in _AUTOCAST_INPUTS and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return dtype


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` computed in one pass that returns the autocast dtype under autocast.

    Under autocast ``nn.LayerNorm`` runs in fp32 and returns fp32, which the next Linear then casts to
    bf16 with another full copy (at L = 1M on an H200 the norm of HyenaDNA's fp32 residual stream took
    1.8 ms and the cast 0.4 ms). Here the kernel reads x once, normalizes in fp32 and writes the autocast
    dtype directly (x's dtype outside autocast), so the cast the next Linear would do costs nothing. The
    numbers are ``nn.LayerNorm``'s followed by that cast; on CPU without Triton, exactly so.

    ``autocast_output=False`` keeps x's dtype under autocast too (a model's final norm, whose output is
    the hidden state users embed with): the same single pass, without the rounding to 16 bits.
    """

    def __init__(self, *args, autocast_output: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.autocast_output = autocast_output

    def _out_dtype(self, dtype: torch.dtype, device: str) -> torch.dtype:
        return autocast_output_dtype(dtype, device) if self.autocast_output else dtype

    def add_and_norm(self, x: torch.Tensor, residual: torch.Tensor,
                     inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``s = residual + x`` and ``self(s)``, returned as ``(self(s), s)``: a pre-norm block's residual add
        and its next norm in one pass each way on CUDA (:func:`genomix.kernels.layer_norm.add_norm`), the
        same numbers as the add followed by :meth:`forward`. ``inplace`` (no gradients) writes s into
        ``residual``, which must already have the sum's dtype."""
        total_dtype = torch.promote_types(x.dtype, residual.dtype)
        if len(self.normalized_shape) != 1:
            total = residual.add_(x) if inplace else residual + x
            return self(total), total
        return add_norm(x, residual, self.weight, self.bias, self.eps, False,
                        self._out_dtype(total_dtype, x.device.type), inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = self._out_dtype(x.dtype, x.device.type)
        dims = len(self.normalized_shape)
        if tuple(x.shape[-dims:]) != tuple(self.normalized_shape):
            raise ValueError(f"LayerNorm: expected input of shape (*, {', '.join(map(str, self.normalized_shape))}), "
                             f"got {tuple(x.shape)}")
        # Several normalized dims (nn.LayerNorm allows them) are the same statistics over one flattened row.
        weight = None if self.weight is None else self.weight.flatten()
        bias = None if self.bias is None else self.bias.flatten()
        return layer_norm(x.flatten(-dims), weight, bias, self.eps, out_dtype).view(x.shape)
