"""The implicit long-convolution filter's modules, shared by HyenaDNA and M2.

A filter of C channels over L positions is ``k[c, l] = (W_out @ MLP(z_l))[c] * (exp(-|delta_c| t_l) + shift)``:
positional features z (:class:`PositionalEmbedding`), a sine MLP (``nn.Linear`` layers, each followed by
:class:`Sin`), a bias-free projection onto the channels and a per-channel decay
(:class:`ExponentialModulation`). The modules hold the parameters and buffers under the released
checkpoints' names (``pos_emb.z``, ``implicit_filter.{i}.weight``, ``implicit_filter.{i}.freq``,
``modulation.deltas``); :func:`implicit_filter_taps` computes the filter from them through
:func:`genomix.kernels.implicit_filter` (fused Triton kernels on CUDA, the PyTorch reference elsewhere).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..kernels.implicit_filter import SineLayer, implicit_filter_with_sumsq, sixteen_bit_autocast


class PositionalEmbedding(nn.Module):
    """Features of each position: normalised time ``t`` and ``(emb_dim - 1) / 2`` cos/sin bands.

    Built once for ``max_len`` and stored as buffers ``z`` (1, max_len, emb_dim) and ``t`` (1, max_len, 1),
    as in the released checkpoints; sliced per call.
    """

    def __init__(self, emb_dim: int, max_len: int) -> None:
        super().__init__()
        self.emb_dim, self.max_len = emb_dim, max_len
        z, t = self.features()
        self.register_buffer("z", z)
        self.register_buffer("t", t)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, t) computed on the CPU, also when transformers constructs the model on the meta device."""
        t = torch.linspace(0, 1, self.max_len, device="cpu")[None, :, None]
        bands = (self.emb_dim - 1) // 2
        angle = 2 * math.pi * torch.arange(self.max_len, dtype=torch.float32, device="cpu")[None, :, None] / self.max_len
        phase = torch.linspace(1e-4, bands - 1, bands, device="cpu")[None, None] * angle
        return torch.cat([t, torch.cos(phase), -torch.sin(phase)], dim=-1), t

    @torch.no_grad()
    def reset_buffers(self) -> None:
        z, t = self.features()
        self.z.copy_(z)
        self.t.copy_(t)

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z[:, :length], self.t[:, :length]


class Sin(nn.Module):
    """``sin(freq * x)`` with a learnable (or, with ``train_freq=False``, fixed) per-unit frequency."""

    def __init__(self, dim: int, w: float = 10.0, train_freq: bool = True) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((1, dim), float(w)), requires_grad=train_freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ExponentialModulation(nn.Module):
    """Per-channel decay ``exp(-|delta_c| t) + shift`` (fast to slow over the channels); a no-op factor
    when ``modulate`` is False. ``deltas`` is a buffer: the decay rates are not trained."""

    def __init__(self, channels: int, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5,
                 target: float = 1e-2, shift: float = 0.0, modulate: bool = True) -> None:
        super().__init__()
        self.channels, self.shift, self.modulate = channels, shift, modulate
        self.max_decay = math.log(target) / fast_decay_pct
        self.min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", self.initial_deltas())

    def initial_deltas(self) -> torch.Tensor:
        return torch.linspace(self.min_decay, self.max_decay, self.channels, device="cpu")[None, None]

    @torch.no_grad()
    def reset_buffers(self) -> None:
        self.deltas.copy_(self.initial_deltas())

    def rates(self) -> torch.Tensor | None:
        """The (C,) decay rates ``|delta_c|``, or None for an unmodulated filter."""
        return self.deltas.abs().flatten() if self.modulate else None


def sine_layers(mlp: nn.Sequential) -> list[SineLayer]:
    """(weight, bias, freq) of each (Linear, activation) pair of an implicit-filter MLP, its last
    (projection) layer excluded; an activation only needs a ``freq`` attribute (shared ones included)."""
    body = list(mlp)[:-1]
    return [(linear.weight, linear.bias, act.freq) for linear, act in zip(body[0::2], body[1::2])]


def implicit_filter_taps(mlp: nn.Sequential, pos_emb: PositionalEmbedding, modulation: ExponentialModulation,
                         length: int) -> torch.Tensor:
    """The (channels, length) filter of ``mlp`` (sine layers, then a bias-free projection), channel-major
    and contiguous as the FFT convolution reads it, computed outside autocast in the parameters' dtype.

    Under 16-bit autocast the projection may use TF32 tensor cores (:mod:`genomix.kernels.implicit_filter`);
    fp32 runs and the CPU are plain fp32, so checkpoint parity is unchanged."""
    return implicit_filter_taps_and_sumsq(mlp, pos_emb, modulation, length, want_sumsq=False)[0]


def implicit_filter_taps_and_sumsq(mlp: nn.Sequential, pos_emb: PositionalEmbedding,
                                   modulation: ExponentialModulation, length: int,
                                   want_sumsq: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(:func:`implicit_filter_taps`, each channel's sum of squares of the filter where the Triton kernel
    computed it on the way, else None): what ``fftconv(k_sumsq=...)`` takes."""
    z, t = pos_emb(length)
    out_weight = mlp[-1].weight
    device_type = out_weight.device.type
    tf32 = sixteen_bit_autocast(device_type)
    with torch.autocast(device_type=device_type, enabled=False):
        return implicit_filter_with_sumsq(z[0].to(out_weight.dtype), t[0, :, 0].to(out_weight.dtype),
                                          sine_layers(mlp), out_weight, modulation.rates(), modulation.shift, tf32,
                                          want_sumsq)
