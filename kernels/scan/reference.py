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

The state is accumulated in float32 whatever the input dtype, and the output has ``u``'s dtype. It is the
CPU path and the ground truth the Triton kernels are tested against, so it stays a plain loop over time,
arranged so that each step is one PyTorch call on contiguous memory:

- everything is laid out time-major, ``(batch, L, groups, channels per group, N)``, so a step's slice is
  contiguous per sequence (a step of the channel-major layout is a strided slice, and every op on it is
  slow). Mamba's u, Δ, B, C and z are transposed views of time-major memory, so this costs no copy. The
  output takes u's layout: for such a u the same kind of view, which the block's out-projection reads
  without a copy, and otherwise contiguous (batch, E, L), as the Triton kernels return it;
- decays and inputs are formed a chunk of steps at a time (``_REF_CHUNK_ELEMENTS`` values, never the
  ``(batch, E, L, N)`` state tensor), and each step is one ``addcmul``;
- without autograd the states overwrite the chunk's input terms in place and ``y`` is one batched matmul
  with C per chunk; under autograd each step also takes its ``y`` with one matmul, so that only what the
  backward needs is kept (no second copy of the states).

``pipelines/bench_cpu_inference.py`` times it inside the Mamba and Caduceus sizes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Elements (time steps x batch x E x N) of the decay and input terms formed at once: bounds the memory, and
#: 4 MiB fp32 buffers stay in a core's cache through the chunk's passes (on the 2-core development machine,
#: batch 8 x E 512 x N 16: 16-step chunks took 150 ms per 1,024 steps, 256-step chunks 342 ms).
_REF_CHUNK_ELEMENTS = 1 << 20


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

    Returns ``out`` of shape ``(batch, E, L)`` in ``u``'s dtype and memory layout (contiguous, or a
    transposed view of time-major memory when ``u`` is one), and with ``return_last_state`` also
    the final state ``(batch, E, N)`` in float32. ``initial_state`` (batch, E, N): the state before the
    first step (zero when None), to continue a sequence in pieces.
    """
    dtype_in = u.dtype
    batch, channels, length = u.shape
    n_state = A.shape[1]
    groups = 1 if B.dim() == 3 else B.shape[1]
    if channels % groups:
        raise ValueError(f"channels ({channels}) must be divisible by the number of B/C groups ({groups})")
    per_group = channels // groups
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def time_major(x: torch.Tensor, *shape: int) -> torch.Tensor:
        """(batch, ..., L) -> contiguous (batch, L, *shape): free for the transposed views Mamba passes."""
        return x.movedim(-1, 1).contiguous().view(batch, length, *shape)

    u_tm = time_major(u.float(), channels)
    dt = time_major(delta, groups, per_group, 1)
    dtu = dt * u_tm.view(batch, length, groups, per_group, 1)
    Bt = time_major(B.float(), groups, 1, n_state)
    Ct = time_major(C.float(), groups, n_state, 1)
    A = A.float().view(groups, per_group, n_state)
    # a copy: the caller may overwrite its state tensor in place (a layer's cache) before the backward
    state = (u_tm.new_zeros(batch, groups, per_group, n_state) if initial_state is None
             else initial_state.to(torch.float32, copy=True).reshape(batch, groups, per_group, n_state))
    tracked = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, initial_state))
    y = [] if tracked else u_tm.new_empty(batch, length, groups, per_group, 1)
    chunk = max(1, _REF_CHUNK_ELEMENTS // (batch * channels * n_state))
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        decay = torch.exp(dt[:, start:stop] * A)  # (batch, T, groups, per_group, N)
        states = dtu[:, start:stop] * Bt[:, start:stop]  # the input terms, then (without autograd) the states
        steps = zip(states.unbind(1), decay.unbind(1))  # views made in one call, not one indexing per step
        if tracked:
            for (drive_t, decay_t), c_t in zip(steps, Ct[:, start:stop].unbind(1)):
                state = torch.addcmul(drive_t, decay_t, state)
                y.append(torch.matmul(state, c_t))
        else:
            for drive_t, decay_t in steps:
                state = torch.addcmul(drive_t, decay_t, state, out=drive_t)
            y[:, start:stop] = torch.matmul(states, Ct[:, start:stop])  # (a batch slice of y is not contiguous)
    if tracked:
        y = torch.stack(y, dim=1) if y else u_tm.new_zeros(batch, 0, groups, per_group, 1)
    y = y.view(batch, length, channels)
    if D is not None:
        y = y + u_tm * D.float()
    if z is not None:
        y = y * F.silu(time_major(z.float(), channels))
    last = state.clone(memory_format=torch.contiguous_format).view(batch, channels, n_state)
    out = y.to(dtype_in).transpose(1, 2)  # (batch, E, L) over time-major memory
    if not u.transpose(1, 2).is_contiguous():  # u is channel-major: so is the output, as on the Triton path
        out = out.contiguous()
    return (out, last) if return_last_state else out


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
