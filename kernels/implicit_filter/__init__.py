"""Implicit long-convolution filter (Hyena's and M2's): the dispatch point over a PyTorch reference and
Triton kernels.

The filter is a sine MLP of positional features, a projection onto the channels and an exponential
decay (:mod:`.reference`). In PyTorch that is ~30 small kernels a layer forward and backward on
(L, filter_order) tensors plus three (C, L) passes for the decay: ~1.5 ms of an M2 training step at
64K tokens on an H200 (BENCHMARKS.md, "Monarch Mixer vs Transformer"). The Triton path runs it as one
forward kernel (MLP in registers, projection and decay fused, the filter written once; with a backward
to follow it also keeps each sine layer's pre-activation) and, backward, one kernel each for dL/dh and
dW_out and one per sine layer (:mod:`.ops`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..dispatch import forcing_triton, use_triton
from .reference import SineLayer, implicit_filter_ref
from .tf32_matmul import filter_projection, sixteen_bit_autocast

__all__ = ["SineLayer", "filter_projection", "implicit_filter", "implicit_filter_ref",
           "implicit_filter_triton", "implicit_filter_with_sumsq", "sixteen_bit_autocast"]


def _check(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
           decay_rates: torch.Tensor | None) -> None:
    """Shapes that chain: z (L, E), t (L,), layer i maps K_i -> R, out_weight (C, R), decay_rates (C,)."""
    if z.dim() != 2 or t.shape != (z.shape[0],):
        raise ValueError(f"implicit_filter: z must be (L, E) and t (L,), got {tuple(z.shape)} and {tuple(t.shape)}")
    if not layers:
        raise ValueError("implicit_filter: at least one sine layer is needed")
    width = z.shape[1]
    for i, (weight, bias, freq) in enumerate(layers):
        order = weight.shape[0]
        if weight.shape != (order, width) or bias.numel() != order or freq.numel() != order:
            raise ValueError(f"implicit_filter: layer {i} must take {width} inputs with (R,) bias and frequency, got "
                             f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, freq {tuple(freq.shape)}")
        width = order
    if out_weight.dim() != 2 or out_weight.shape[1] != width:
        raise ValueError(f"implicit_filter: out_weight must be (C, {width}), got {tuple(out_weight.shape)}")
    if decay_rates is not None and decay_rates.shape != (out_weight.shape[0],):
        raise ValueError(f"implicit_filter: decay_rates must be ({out_weight.shape[0]},), got {tuple(decay_rates.shape)}")


def _triton_shapes(z: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor) -> bool:
    """Whether the Triton kernels take these sizes: fp32, one filter order, not wider than they hold."""
    from .ops import MAX_FEATURES, MAX_ORDER

    tensors = [z, out_weight, *(p for layer in layers for p in layer)]
    order = out_weight.shape[1]
    return (all(p.dtype == torch.float32 for p in tensors) and z.shape[1] <= MAX_FEATURES and order <= MAX_ORDER
            and all(w.shape[0] == order for w, _, _ in layers) and z.shape[0] > 0)


def _triton_filter(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
                   decay_rates: torch.Tensor | None, shift: float, tf32: bool,
                   row_sumsq: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, each channel's sum of k^2 if ``row_sumsq`` else an empty tensor) on the Triton path."""
    from .ops import ImplicitFilterFn  # imports triton: only when this path is taken

    w0, inner = layers[0][0], layers[1:]
    order = w0.shape[0]
    inner_weights = (torch.stack([w for w, _, _ in inner]) if inner
                     else w0.new_empty((0, order, order)))
    biases = torch.stack([b.reshape(order) for _, b, _ in layers])
    freqs = torch.stack([f.reshape(order) for _, _, f in layers])
    rates = decay_rates.contiguous() if decay_rates is not None else None
    save = torch.is_grad_enabled() and any(  # else no pre-activations kept
        p.requires_grad for p in (out_weight, *(p for layer in layers for p in layer)))
    return ImplicitFilterFn.apply(z.contiguous(), t.contiguous(), w0.contiguous(), inner_weights.contiguous(),
                                  biases, freqs, out_weight.contiguous(), rates, shift, tf32, save, row_sumsq)


def implicit_filter_triton(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
                           decay_rates: torch.Tensor | None, shift: float = 0.0, tf32: bool = False) -> torch.Tensor:
    """The Triton path of :func:`implicit_filter` (fp32 CUDA tensors, or the interpreter; every layer of one
    width R <= ``ops.MAX_ORDER``, at most ``ops.MAX_FEATURES`` features)."""
    return _triton_filter(z, t, layers, out_weight, decay_rates, shift, tf32, row_sumsq=False)[0]


def _takes_triton(z: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor, tf32: bool) -> bool:
    """The Triton path is taken under 16-bit autocast (``tf32``) only: its products are TF32 tensor-core
    ones (three passes where accuracy matters, ~2^-21 relative, and MUFU sines), right next to bf16's
    rounding but not fp32's, so fp32 runs keep the exact reference (``GENOMIX_FORCE_TRITON`` overrides)."""
    return ((tf32 or forcing_triton()) and _triton_shapes(z, layers, out_weight)
            and use_triton(z, out_weight, op="implicit_filter"))


def implicit_filter(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
                    decay_rates: torch.Tensor | None, shift: float = 0.0, tf32: bool = False) -> torch.Tensor:
    """The (C, L) implicit filter ``(W_out @ MLP(z)^T) * (exp(-rate_c t_l) + shift)``, fp32, contiguous.

    z: (L, E) positional features; t: (L,) their normalised times; layers: (weight (R, K), bias (R,),
    frequency (R,) or (1, R)) of each ``sin(f * (x W^T + b))`` layer, K = E for the first; out_weight:
    (C, R), bias-free; decay_rates: (C,) non-negative rates (no gradient flows to them), or None for an
    unmodulated filter. ``tf32`` (the model is under 16-bit autocast) lets the projection use TF32
    tensor cores on CUDA (see :func:`_takes_triton`). Gradients flow to every layer parameter and to
    out_weight.
    """
    return implicit_filter_with_sumsq(z, t, layers, out_weight, decay_rates, shift, tf32, want_sumsq=False)[0]


def implicit_filter_with_sumsq(z: torch.Tensor, t: torch.Tensor, layers: Sequence[SineLayer], out_weight: torch.Tensor,
                               decay_rates: torch.Tensor | None, shift: float = 0.0, tf32: bool = False,
                               want_sumsq: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(:func:`implicit_filter`, each channel's sum of squares of the filter, (C,) fp32, not differentiable)
    where the Triton kernel sums them as it writes the filter (at no extra pass; None on the reference
    path, or unless ``want_sumsq``). The half-precision FFT convolution range-scales each filter row by
    its norm and would otherwise read the whole filter once more for it (``fftconv(k_sumsq=...)``)."""
    _check(z, t, layers, out_weight, decay_rates)
    if _takes_triton(z, layers, out_weight, tf32):
        k, sumsq = _triton_filter(z, t, layers, out_weight, decay_rates, shift, tf32, want_sumsq)
        return k, sumsq if want_sumsq else None
    return implicit_filter_ref(z, t, layers, out_weight, decay_rates, shift, tf32), None
