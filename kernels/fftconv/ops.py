"""Host side of the Triton fftconv: launches the kernels of one plan, forward pieces and backward pieces.

Inputs are (B, H, L) contiguous; the filter spectrum comes from :mod:`.plan` already permuted and
scaled. Two building blocks cover forward and backward:

- :func:`conv_apply`: ``post * (conv(u*pre) + u*pre*D)`` for a given spectrum (the backward's
  input gradient is the same call with the conjugate spectrum and ``dy``, ``postgate`` as inputs).
- :func:`cross_spectrum`: ``sum_b conj(X_b) G_b`` in stored order, from which dk follows.
"""
from __future__ import annotations

import torch

from .plan import Plan, constants
from .triton_kernels import col_fwd_kernel, col_inv_kernel, row_conv_kernel, row_xspec_kernel


def _nw(plan: Plan) -> int:
    return 4 if plan.n1 <= 1024 else 8


def _col_forward(u: torch.Tensor, pre: torch.Tensor | None, plan: Plan, c: dict, prec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Column pass of the long path: planar fp32 (B*H, N2, N1) buffers."""
    BH = u.shape[0] * u.shape[1]
    zr = torch.empty(BH, plan.n2, plan.n1, device=u.device, dtype=torch.float32)
    zi = torch.empty_like(zr)
    BK, BC, BN = min(64, plan.n2), 64, min(32, plan.n2 // 2)
    grid = (BH, plan.n2 // BK, plan.n1 // BC)
    col_fwd_kernel[grid](
        u, u if pre is None else pre, zr, zi, c["fcr"], c["fci"], plan.L,
        N2=plan.n2, N1=plan.n1, BK=BK, BC=BC, BN=BN, HAS_PRE=pre is not None, PREC=prec, num_warps=4,
    )
    return zr, zi


def conv_apply(
    u: torch.Tensor,
    pre: torch.Tensor | None,
    D: torch.Tensor | None,
    post: torch.Tensor | None,
    spec: tuple[torch.Tensor, torch.Tensor],
    plan: Plan,
    out_dtype: torch.dtype,
    prec: str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``post * (irfft(rfft(u*pre) * spectrum)[:L] + u*pre*D)`` with the Triton kernels.

    ``out`` (optional, (B, H, L) of ``out_dtype``, contiguous) receives the result; the GPU checks
    pass a poisoned buffer to prove that every element is written.
    """
    B, H, L = u.shape
    c = constants((plan.n2, plan.a, plan.bd), u.device)
    y = torch.empty(B, H, L, device=u.device, dtype=out_dtype) if out is None else out
    kr, ki = spec
    dummy = u
    flags = dict(HAS_PRE=pre is not None, HAS_D=D is not None, HAS_POST=post is not None, PREC=prec)
    row_consts = (c["far"], c["fai"], c["fbr"], c["fbi"], c["twr"], c["twi"])
    if plan.short:
        row_conv_kernel[(B * H, 1)](
            u, pre if pre is not None else dummy, D if D is not None else dummy, post if post is not None else dummy, y,
            dummy, dummy, kr, ki, *row_consts, H, L, 1,
            A=plan.a, BD=plan.bd, REAL_IO=True, num_warps=_nw(plan), **flags,
        )
        return y
    zr, zi = _col_forward(u, pre, plan, c, prec)
    row_conv_kernel[(B * H, plan.n2)](
        dummy, dummy, dummy, dummy, dummy, zr, zi, kr, ki, *row_consts, H, L, plan.n2,
        A=plan.a, BD=plan.bd, REAL_IO=False, HAS_PRE=False, HAS_D=False, HAS_POST=False, PREC=prec,
        num_warps=_nw(plan),
    )
    BK, BC, BN = min(64, plan.n2 // 2), 64, min(32, plan.n2)
    grid = (B * H, (plan.n2 // 2) // BK, plan.n1 // BC)
    col_inv_kernel[grid](
        zr, zi, u, pre if pre is not None else dummy, D if D is not None else dummy,
        post if post is not None else dummy, y, c["fcr"], c["fci"], H, L,
        N2=plan.n2, N1=plan.n1, BK=BK, BC=BC, BN=BN, num_warps=4, **flags,
    )
    return y


def cross_spectrum(
    u: torch.Tensor,
    pre: torch.Tensor | None,
    dy: torch.Tensor,
    post: torch.Tensor | None,
    plan: Plan,
    prec: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_b conj(FFT(u*pre)) * FFT(dy*post)`` per channel, planar fp32 (H, N) in stored order."""
    B, H, L = u.shape
    c = constants((plan.n2, plan.a, plan.bd), u.device)
    sr = torch.empty(H, plan.n, device=u.device, dtype=torch.float32)
    si = torch.empty_like(sr)
    row_consts = (c["far"], c["fai"], c["fbr"], c["fbi"], c["twr"], c["twi"])
    flags = dict(HAS_PRE=pre is not None, HAS_POST=post is not None, PREC=prec)
    # num_stages=1: pipelining the batch loop would copy its two row transforms' operands per stage
    # and overflow shared memory (266 KB needed at a 64x64 row on the H100).
    if plan.short:
        row_xspec_kernel[(1, H)](
            u, pre if pre is not None else u, dy, post if post is not None else u,
            u, u, u, u, sr, si, *row_consts, B, H, L, 1,
            A=plan.a, BD=plan.bd, REAL_IN=True, num_warps=_nw(plan), num_stages=1, **flags,
        )
        return sr, si
    xr, xi = _col_forward(u, pre, plan, c, prec)
    gr, gi = _col_forward(dy, post, plan, c, prec)
    row_xspec_kernel[(plan.n2, H)](
        u, u, u, u, xr, xi, gr, gi, sr, si, *row_consts, B, H, L, plan.n2,
        A=plan.a, BD=plan.bd, REAL_IN=False, num_warps=_nw(plan), num_stages=1, **flags,
    )
    return sr, si
