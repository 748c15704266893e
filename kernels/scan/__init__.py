"""Selective scan (Mamba-1): one dispatch point over a PyTorch reference and Triton kernels.

:func:`selective_scan` runs the Triton kernels (:mod:`.triton_scan`, wrapped by :mod:`.ops`) when
:func:`genomix.kernels.dispatch.use_triton` says so (CUDA tensors, or ``GENOMIX_FORCE_TRITON=1`` with
``TRITON_INTERPRET=1`` on CPU) and the state size is a power of two; otherwise the reference.
"""
from __future__ import annotations

import torch

from ..dispatch import use_triton
from .reference import selective_scan_ref


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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan with mamba_ssm's semantics and shapes (see :mod:`.reference`)."""
    if use_triton(u, delta, A, B, C, D, z, delta_bias, op="selective_scan"):
        from .ops import selective_scan_triton, triton_supported

        if triton_supported(A):
            return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


__all__ = ["selective_scan", "selective_scan_ref"]
