"""PyTorch reference of the Mamba-1 selective scan (mamba_ssm's ``selective_scan_ref`` semantics).

Shapes follow mamba_ssm (kernel layout, channels before length):

- ``u``, ``delta``, ``z``: ``(batch, E, L)``
- ``A``: ``(E, N)`` (real; ``A = -exp(A_log)`` in Mamba)
- ``B``, ``C``: ``(batch, N, L)`` or ``(batch, groups, N, L)`` with ``E`` divisible by ``groups``
- ``D``, ``delta_bias``: ``(E,)``

The recurrence per channel ``e`` and state ``n`` is::

    dt_t   = softplus(delta_t + delta_bias)          (when delta_softplus)
    h_t    = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
    y_t    = <h_t, C_t> + D * u_t,   out_t = y_t * silu(z_t)

The state is accumulated in float32 whatever the input dtype, and the output has ``u``'s dtype. The loop
runs over time in chunks so that memory stays ``O(batch * E * chunk * N)`` instead of materialising the
``(batch, E, L, N)`` state tensor; it is the CPU path and the ground truth the Triton kernel is tested
against, not a fast path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Time steps whose decay/input terms are formed at once in the reference (bounds its memory).
_REF_CHUNK = 256


def expand_groups(X: torch.Tensor, channels: int) -> torch.Tensor:
    """``(batch, N, L)`` or ``(batch, groups, N, L)`` -> ``(batch, E or 1, N, L)`` for broadcasting."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    groups = X.shape[1]
    if channels % groups:
        raise ValueError(f"channels ({channels}) must be divisible by the number of B/C groups ({groups})")
    return X.repeat_interleave(channels // groups, dim=1)


def selective_scan_ref(
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
    """Selective scan in plain PyTorch (differentiable by autograd); see the module docstring.

    Returns ``out`` of shape ``(batch, E, L)`` in ``u``'s dtype, and with ``return_last_state`` also
    the final state ``(batch, E, N)`` in float32. ``initial_state`` (batch, E, N): the state before the
    first step (zero when None), to continue a sequence in pieces.
    """
    dtype_in = u.dtype
    batch, channels, length = u.shape
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    A = A.float()
    Bx = expand_groups(B.float(), channels)
    Cx = expand_groups(C.float(), channels)
    # a copy: the caller may overwrite its state tensor in place (a layer's cache) before the backward
    state = (u.new_zeros(batch, channels, A.shape[1]) if initial_state is None
             else initial_state.to(torch.float32, copy=True))
    ys = []
    for start in range(0, length, _REF_CHUNK):
        stop = min(start + _REF_CHUNK, length)
        dt = delta[:, :, start:stop]  # (b, e, l)
        decay = torch.exp(dt.unsqueeze(-1) * A[None, :, None, :])  # (b, e, l, n)
        drive = (dt * u[:, :, start:stop]).unsqueeze(-1) * Bx[..., start:stop].transpose(-1, -2)
        c_chunk = Cx[..., start:stop].transpose(-1, -2)  # (b, e|1, l, n)
        for t in range(stop - start):
            state = decay[:, :, t] * state + drive[:, :, t]
            ys.append((state * c_chunk[:, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, channels, 0)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    out = y.to(dtype_in)
    return (out, state) if return_last_state else out


def selective_state_update_ref(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                               B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                               z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                               dt_softplus: bool = True) -> torch.Tensor:
    """One token of the recurrence above (mamba_ssm's ``selective_state_update``): ``state`` (batch, E, N)
    fp32 advanced in place by x, dt, z (batch, E) and B, C (batch, N); returns the gated output (batch, E)
    in x's dtype. fp32 arithmetic; the Triton kernel (:mod:`.step`) is tested against it."""
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    xf = x.float()
    decay = torch.exp(dt.unsqueeze(-1) * A.float())
    state.copy_(decay * state + (dt * xf).unsqueeze(-1) * B.float().unsqueeze(1))
    y = (state * C.float().unsqueeze(1)).sum(-1)
    if D is not None:
        y = y + D.float() * xf
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(x.dtype)
