"""Selective scan (Mamba-1): one dispatch point over a PyTorch reference and Triton kernels.

:func:`selective_scan` runs the Triton kernels (:mod:`.triton_scan`, wrapped by :mod:`.ops`) when
:func:`genomix.kernels.dispatch.use_triton` says so (CUDA tensors, or ``GENOMIX_FORCE_TRITON=1`` with
``TRITON_INTERPRET=1`` on CPU) and the state size is a power of two; otherwise the reference.
:func:`selective_state_update` is one token of the same recurrence (generation), dispatched alike.
"""
from __future__ import annotations

import torch

from ..dispatch import records_graph, use_triton
from .reference import selective_scan_ref, selective_state_update_ref


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan with mamba_ssm's semantics and shapes (see :mod:`.reference`). Inputs of
    other shapes or dtypes are refused with a ValueError or TypeError naming the argument (the kernels
    index by the shapes they are given and would read past mismatched tensors). ``initial_state`` (batch,
    E, N): the state before the first step (zero when None), to continue a sequence read in pieces.
    Gradients reach it, and flow back from the returned last state, so pieces can be trained through
    (truncated backpropagation through time keeps them apart with ``detach()``)."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    _check_initial(initial_state, u, A)
    if use_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, op="selective_scan"):
        from .ops import selective_scan_triton, triton_supported

        if triton_supported(A):
            return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                         initial_state)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                              initial_state)


def _check_initial(initial_state: torch.Tensor | None, u: torch.Tensor, A: torch.Tensor) -> None:
    """Refuse an initial state of the wrong shape or dtype."""
    if initial_state is None:
        return
    want = (u.shape[0], u.shape[1], A.shape[1])
    if not initial_state.is_floating_point() or tuple(initial_state.shape) != want:
        raise ValueError(f"selective_scan: initial_state must be a floating-point {want} = (batch, channels, "
                         f"state) tensor, got {tuple(initial_state.shape)} {initial_state.dtype}")


def _check(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Refuse arguments whose shapes or dtypes do not fit mamba_ssm's layout (:mod:`.reference`)."""
    named = (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", delta_bias))
    for name, t in named:
        if t is not None and not t.is_floating_point():
            raise TypeError(f"selective_scan: {name} must be a floating-point tensor, got {t.dtype}")
    if u.dim() != 3 or min(u.shape) < 1:
        raise ValueError(f"selective_scan: u must be (batch, channels, length), each at least 1, got {tuple(u.shape)}")
    batch, channels, length = u.shape
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and t.shape != u.shape:
            raise ValueError(f"selective_scan: {name} must be {tuple(u.shape)} like u, got {tuple(t.shape)}")
    if A.dim() != 2 or A.shape[0] != channels or A.shape[1] < 1:
        raise ValueError(f"selective_scan: A must be (channels={channels}, state >= 1), got {tuple(A.shape)}")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        grouped = t.dim() == 4 and t.shape[1] >= 1 and channels % t.shape[1] == 0
        if not ((t.dim() == 3 or grouped) and t.shape[0] == batch and tuple(t.shape[-2:]) == (state, length)):
            raise ValueError(f"selective_scan: {name} must be (batch, state, length) = {(batch, state, length)} or "
                             f"(batch, groups dividing {channels}, state, length), got {tuple(t.shape)}")
    if B.shape != C.shape:
        raise ValueError(f"selective_scan: B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"selective_scan: {name} must be ({channels},), got {tuple(t.shape)}")


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
) -> torch.Tensor:
    """One token of :func:`selective_scan`'s recurrence (mamba_ssm's ``selective_state_update``): ``state``
    (batch, E, N) fp32 advances in place by x, dt, z (batch, E) and B, C (batch, N); returns the gated
    output (batch, E) in x's dtype. A (E, N), D and dt_bias (E,) as for :func:`selective_scan`. Differentiable on
    every device: where autograd records the call, the reference runs (the kernel has no backward)."""
    _check_step(state, x, dt, A, B, C, D, z, dt_bias)
    inputs = (state, x, dt, A, B, C, D, z, dt_bias)
    if use_triton(*inputs, op="selective_state_update") and state.is_contiguous() and not records_graph(*inputs):
        from .step import selective_state_update_triton  # imports triton: only when this path is taken

        return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def _check_step(state, x, dt, A, B, C, D, z, dt_bias) -> None:
    """Refuse :func:`selective_state_update` arguments that do not fit the state's (batch, E, N)."""
    if state.dim() != 3 or state.dtype != torch.float32:
        raise ValueError(f"selective_state_update: state must be fp32 (batch, channels, state), got "
                         f"{tuple(state.shape)} {state.dtype}")
    batch, channels, size = state.shape
    shapes = {"x": (x, (batch, channels)), "dt": (dt, (batch, channels)), "z": (z, (batch, channels)),
              "A": (A, (channels, size)), "B": (B, (batch, size)), "C": (C, (batch, size)), "D": (D, (channels,)),
              "dt_bias": (dt_bias, (channels,))}
    for name, (t, want) in shapes.items():
        if t is not None and not t.is_floating_point():
            raise TypeError(f"selective_state_update: {name} must be a floating-point tensor, got {t.dtype}")
        if t is not None and tuple(t.shape) != want:
            raise ValueError(f"selective_state_update: {name} must be {want} for a state of shape "
                             f"{tuple(state.shape)}, got {tuple(t.shape)}")


__all__ = ["selective_scan", "selective_scan_ref", "selective_state_update", "selective_state_update_ref"]
