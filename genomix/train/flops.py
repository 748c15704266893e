"""Training FLOPs per token, for the throughput/MFU readout.

Dense layers cost ``6 × parameters`` FLOPs per token for forward and backward (2 forward, 4 backward).
Long convolutions (Hyena) add FFTs whose cost grows with ``log L`` and is independent of the parameter
count; selective scans (Mamba) add a state update per channel and state dimension. Models may define
``flops_per_token(seq_len)`` themselves; otherwise the estimate reads the usual config fields.
"""
from __future__ import annotations

import math

from torch import nn

# Dense bf16 peak of common accelerators in TFLOP/s, for MFU when the user does not give one.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def long_conv_flops_per_token(n_layer: int, d_model: int, order: int, seq_len: int) -> float:
    """Forward+backward FLOPs per token of Hyena's FFT convolutions.

    Each of the ``order - 1`` long convolutions per layer runs three real FFTs of size ``2L`` per
    channel (input, filter, inverse), about ``5 · 2L · log2(2L)`` FLOPs each, i.e. ``10 log2(2L)``
    per token; backward costs twice the forward.
    """
    per_fft = 10.0 * math.log2(2 * max(seq_len, 1))
    return 3.0 * n_layer * max(order - 1, 1) * d_model * 3 * per_fft


def scan_flops_per_token(n_layer: int, d_inner: int, d_state: int) -> float:
    """Forward+backward FLOPs per token of a selective scan (about 9 per channel and state, ×3)."""
    return 3.0 * n_layer * d_inner * d_state * 9


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Estimated training FLOPs per token of ``model`` at windows of ``seq_len``."""
    own = getattr(model, "flops_per_token", None)
    if callable(own):
        return float(own(seq_len))
    flops = 6.0 * count_parameters(model)
    config = getattr(model, "config", None)
    if config is None:
        return flops
    n_layer = int(getattr(config, "n_layer", getattr(config, "num_hidden_layers", 0)) or 0)
    d_model = int(getattr(config, "d_model", getattr(config, "hidden_size", 0)) or 0)
    model_type = str(getattr(config, "model_type", ""))
    if "hyena" in model_type or "m2" in model_type:
        order = int(getattr(config, "hyena_order", 2) or 2)
        flops += long_conv_flops_per_token(n_layer, d_model, order, seq_len)
    elif "mamba" in model_type or "caduceus" in model_type:
        d_state = int(getattr(config, "d_state", 16) or 16)
        d_inner = int(getattr(config, "expand", 2) or 2) * d_model
        directions = 2 if "caduceus" in model_type else 1
        flops += directions * scan_flops_per_token(n_layer, d_inner, d_state)
    return flops


def device_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a CUDA device by name, or ``None`` if unknown (then no MFU is reported)."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None
