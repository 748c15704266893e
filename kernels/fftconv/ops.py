"""Host side of the Triton fftconv: launches the kernels of one plan, forward pieces and backward pieces.

Inputs are (B, H, L) contiguous; the filter spectrum comes already permuted and scaled (from
:func:`.plan.filter_spectrum` in v1, :func:`filter_spectrum_triton` in v2). Two building blocks cover
forward and backward:

- :func:`conv_apply`: ``post * (conv(u*pre) + u*pre*D)`` for a given spectrum; its final pass can
  also write the pre-``post`` result, two more products and per-program partial sums. The forward
  keeps z that way; the backward is the same call with the conjugate spectrum and ``dy``,
  ``postgate`` as inputs, writing du, dpregate, dpostgate and the dD partials in one pass.
- :func:`cross_spectrum`: ``sum_b conj(X_b) G_b`` in stored order, from which dk follows.

Every launch takes a :class:`.plan.Tuning` (which v2 changes, which launch shapes).
"""
from __future__ import annotations

import torch

from ..dispatch import interpreting
from .plan import Plan, Tuning, col_split, constants, hermitian_part
from .reference import combined_filter
from .triton_kernels import (
    col2_fwd_kernel,
    col2_inv_kernel,
    col_fwd_kernel,
    col_inv_kernel,
    row_conv_kernel,
    row_spec_kernel,
    row_xspec_kernel,
)


class _Launch:
    """What one call's launches share: the plan, precision flags, constants and launch shapes."""

    def __init__(self, plan: Plan, prec: str, tuning: Tuning, device: torch.device) -> None:
        self.plan, self.prec, self.t = plan, prec, tuning
        sixteen = prec == "tf32"  # 16-bit inputs without fp32_intermediate
        use16 = tuning.dots16 and sixteen
        mode = (3 if tuning.dots_fp16 else 1) + (1 if interpreting() else 0)
        self.dot16 = mode if use16 else 0  # the kernels' DOT16 mode (see triton_kernels._mm)
        self.zdtype = torch.bfloat16 if tuning.bf16_z and sixteen else torch.float32
        dtype16 = (torch.float16 if tuning.dots_fp16 else torch.bfloat16) if use16 else None
        self.c = constants((plan.n2, plan.a, plan.bd), device, dtype16)
        self.row_consts = tuple(self.c[k] for k in ("far", "fai", "fbr", "fbi", "twr", "twi"))
        self.row_warps = tuning.row_warps or (4 if plan.n1 <= 1024 else 8)
        # short path: rows of the tile that hold input / output (L <= n/2); dots need 16 rows or more
        self.ah = plan.a // 2 if tuning.half_tiles and plan.a >= 32 else plan.a
        self.two_level = tuning.two_level and plan.n2 >= tuning.two_level_min_n2
        if self.two_level:
            self.q, self.p = col_split(plan.n2)
            self.bc = max(1, min(plan.n1, tuning.col_elems // plan.n2))

    def pairs(self, batch: int) -> bool:
        """Whether the short path convolves batch elements in pairs (one complex row per program)."""
        return self.plan.short and self.t.pair_batch and batch >= 2

    def col2_consts(self) -> tuple[torch.Tensor, ...]:
        """DFT matrices and twiddle of the two-step column pass, in kernel argument order."""
        return tuple(self.c[k] for k in ("fqr", "fqi", "fpr", "fpi", "t2r", "t2i"))

    def col_forward(self, x: torch.Tensor, pre: torch.Tensor | None, rows: int, length: int,
                    full: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Column pass of the long path over ``rows`` real sequences of ``length`` (row stride):
        planar (rows, N2, N1) buffers in the Z dtype. ``full``: the input may fill all N points."""
        plan = self.plan
        zr = torch.empty(rows, plan.n2, plan.n1, device=x.device, dtype=self.zdtype)
        zi = torch.empty_like(zr)
        pre_arg = x if pre is None else pre
        if self.two_level:
            col2_fwd_kernel[(rows * (plan.n1 // self.bc),)](
                x, pre_arg, zr, zi, *self.col2_consts(), length,
                Q=self.q, P=self.p, N1=plan.n1, BC=self.bc, HAS_PRE=pre is not None, PREC=self.prec,
                DOT16=self.dot16, num_warps=self.t.col_warps,
            )
            return zr, zi
        BK, BC, BN = min(64, plan.n2), 64, min(32, plan.n2 // 2)
        col_fwd_kernel[(rows, plan.n2 // BK, plan.n1 // BC)](
            x, pre_arg, zr, zi, self.c["fcr"], self.c["fci"], length,
            N2=plan.n2, N1=plan.n1, BK=BK, BC=BC, BN=BN, NRED=plan.n2 if full else plan.n2 // 2,
            HAS_PRE=pre is not None, PREC=self.prec, DOT16=self.dot16, num_warps=4,
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
    tuning: Tuning,
    out: torch.Tensor | None = None,
    *,
    store_y: bool = True,
    z: torch.Tensor | None = None,
    m2: torch.Tensor | None = None,
    out2: torch.Tensor | None = None,
    zin: torch.Tensor | None = None,
    out3: torch.Tensor | None = None,
    dsum: torch.Tensor | None = None,
    peak: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """``post * (irfft(rfft(u*pre) * spectrum)[:L] + u*pre*D)`` with the Triton kernels.

    ``out`` (optional, (B, H, L) of ``out_dtype``, contiguous) receives the result; the GPU checks
    pass a poisoned buffer to prove that every element is written. ``store_y=False``: no output
    (returns None). The same final pass can also write, with ``zv`` the result before ``post``:
    ``z = zv``, ``out2 = zv * m2``, ``out3 = u * zin`` (all (B, H, L) contiguous, any dtype) and
    ``dsum[h] = sum over batch and time of u*pre * m2 * post`` ((H,) fp32; ``m2`` required). The
    backward uses all of them at once (see autograd.py). ``peak``: :func:`spectrum_peak` of ``spec``, which
    the on-chip path with fp16 operands needs (computed here when not given).
    """
    B, H, L = u.shape
    ln = _Launch(plan, prec, tuning, u.device)
    y = None
    if store_y:
        y = torch.empty(B, H, L, device=u.device, dtype=out_dtype) if out is None else out
    if (out2 is not None or dsum is not None) and m2 is None:
        raise ValueError("conv_apply: out2 and dsum need m2")
    if (out3 is None) != (zin is None):
        raise ValueError("conv_apply: out3 and zin go together")
    kr, ki = spec
    dummy = u
    if plan.short and ln.dot16 >= 3 and peak is None:
        peak = spectrum_peak(kr, ki)
    flags = dict(HAS_PRE=pre is not None, HAS_D=D is not None, HAS_POST=post is not None, PREC=prec, DOT16=ln.dot16,
                 STORE_Y=store_y, STORE_Z=z is not None, STORE_Y2=out2 is not None, STORE_Y3=out3 is not None,
                 DSUM=dsum is not None)
    pre_a, d_a, post_a, y_a, z_a, m2_a, y2_a, zin_a, y3_a = (
        t if t is not None else dummy for t in (pre, D, post, y, z, m2, out2, zin, out3))
    pair = ln.pairs(B)
    rows = 2 * ((B + 1) // 2) * H if pair else B * H  # a pair's missing second sequence writes a zero part
    if plan.short:
        parts_per_row = 1
    elif ln.two_level:
        parts_per_row = plan.n1 // ln.bc
    else:
        parts_per_row = ((plan.n2 // 2) // min(64, plan.n2 // 2)) * (plan.n1 // 64)
    parts = torch.empty(rows * parts_per_row, device=u.device, dtype=torch.float32) if dsum is not None else dummy
    extras = (z_a, m2_a, y2_a, zin_a, y3_a, parts)
    if plan.short:
        row_conv_kernel[(rows // 2 if pair else rows, 1)](
            u, pre_a, d_a, post_a, y_a, *extras, dummy, dummy, kr, ki, dummy if peak is None else peak,
            *ln.row_consts, B * H, H, L, 1,
            A=plan.a, BD=plan.bd, REAL_IO=True, AH=ln.ah, PAIR=pair, num_warps=ln.row_warps, **flags,
        )
    else:
        zr, zi = ln.col_forward(u, pre, B * H, L)
        row_conv_kernel[(B * H, plan.n2)](
            dummy, dummy, dummy, dummy, dummy, *(dummy,) * 6, zr, zi, kr, ki, dummy, *ln.row_consts, B * H, H, L,
            plan.n2,
            A=plan.a, BD=plan.bd, REAL_IO=False, HAS_PRE=False, HAS_D=False, HAS_POST=False, PREC=prec,
            DOT16=ln.dot16, num_warps=ln.row_warps,
        )
        if ln.two_level:
            col2_inv_kernel[(B * H * parts_per_row,)](
                zr, zi, u, pre_a, d_a, post_a, y_a, *extras, *ln.col2_consts(), H, L,
                Q=ln.q, P=ln.p, N1=plan.n1, BC=ln.bc, num_warps=tuning.col_warps, **flags,
            )
        else:
            BK, BC, BN = min(64, plan.n2 // 2), 64, min(32, plan.n2)
            col_inv_kernel[(B * H, (plan.n2 // 2) // BK, plan.n1 // BC)](
                zr, zi, u, pre_a, d_a, post_a, y_a, *extras, ln.c["fcr"], ln.c["fci"], H, L,
                N2=plan.n2, N1=plan.n1, BK=BK, BC=BC, BN=BN, num_warps=4, **flags,
            )
    if dsum is not None:
        torch.sum(parts.view(-1, H, parts_per_row), dim=(0, 2), out=dsum)
    return y


def spectrum_peak(sr: torch.Tensor, si: torch.Tensor) -> torch.Tensor:
    """Each channel's largest ``max(|Re|, |Im|)`` of a planar (H, n) spectrum, (H,) fp32: the bound on the
    filter that the on-chip convolution scales its product by (:func:`.triton_kernels.row_conv_kernel`)."""
    return torch.maximum(sr.abs().amax(dim=1), si.abs().amax(dim=1))


def filter_spectrum_triton(
    k: torch.Tensor, plan: Plan, bidirectional: bool, prec: str, tuning: Tuning, conj: bool = False,
    peak: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filter's spectrum in stored order, scaled by 1/n, by the convolution's own transforms.

    Same result as :func:`.plan.filter_spectrum` (planar fp32 (H, n)) without torch's rfft, the
    permutation gathers or the channel chunks: the column and row transforms leave it in stored
    order. A bidirectional filter is first laid out as its length-n circular form. ``peak`` (on-chip
    plans only): an (H,) fp32 buffer that receives :func:`spectrum_peak` from the same pass.
    """
    H = k.shape[0]
    ln = _Launch(plan, prec, tuning, k.device)
    kc = combined_filter(k.float(), plan.L, plan.n, True).contiguous() if bidirectional else k.float().contiguous()
    lk = kc.shape[-1]
    sr = torch.empty(H, plan.n, device=k.device, dtype=torch.float32)
    si = torch.empty_like(sr)
    common = dict(A=plan.a, BD=plan.bd, CONJ=conj, PREC=prec, DOT16=ln.dot16, num_warps=ln.row_warps)
    if plan.short:
        row_spec_kernel[(H, 1)](kc, kc, kc, sr, si, kc if peak is None else peak, *ln.row_consts, lk, 1,
                                1.0 / plan.n, REAL_IN=True, PEAK=peak is not None, **common)
        return sr, si
    if peak is not None:
        raise ValueError("filter_spectrum_triton: peak is for on-chip plans")
    zr, zi = ln.col_forward(kc, None, H, lk, full=bidirectional)
    row_spec_kernel[(H, plan.n2)](
        kc, zr, zi, sr, si, kc, *ln.row_consts, lk, plan.n2, 1.0 / plan.n, REAL_IN=False, **common
    )
    return sr, si


def cross_spectrum(
    u: torch.Tensor,
    pre: torch.Tensor | None,
    dy: torch.Tensor,
    post: torch.Tensor | None,
    plan: Plan,
    prec: str,
    tuning: Tuning,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_b conj(FFT(u*pre)) * FFT(dy*post)`` per channel, planar fp32 (H, N) in stored order."""
    B, H, L = u.shape
    ln = _Launch(plan, prec, tuning, u.device)
    sr = torch.empty(H, plan.n, device=u.device, dtype=torch.float32)
    si = torch.empty_like(sr)
    flags = dict(HAS_PRE=pre is not None, HAS_POST=post is not None, PREC=prec, DOT16=ln.dot16)
    # num_stages=1: pipelining the batch loop would copy its two row transforms' operands per stage
    # and overflow shared memory (266 KB needed at a 64x64 row on the H100).
    if plan.short:
        pair = ln.pairs(B)
        row_xspec_kernel[(1, H)](
            u, pre if pre is not None else u, dy, post if post is not None else u,
            u, u, u, u, sr, si, *ln.row_consts, B, H, L, 1,
            A=plan.a, BD=plan.bd, REAL_IN=True, AH=ln.ah, PAIR=pair, num_warps=ln.row_warps, num_stages=1,
            **flags,
        )
        return hermitian_part(sr, si, plan) if pair else (sr, si)
    xr, xi = ln.col_forward(u, pre, B * H, L)
    gr, gi = ln.col_forward(dy, post, B * H, L)
    row_xspec_kernel[(plan.n2, H)](
        u, u, u, u, xr, xi, gr, gi, sr, si, *ln.row_consts, B, H, L, plan.n2,
        A=plan.a, BD=plan.bd, REAL_IN=False, num_warps=ln.row_warps, num_stages=1, **flags,
    )
    return sr, si
