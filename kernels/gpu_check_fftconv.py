"""GPU correctness checks of the Triton fftconv at real shapes (run on the lent H100).

``--path triton`` (default) checks the Monarch-FFT kernels; ``--path cufft`` the cuFFT path with fused
Triton elementwise kernels (:mod:`genomix.kernels.fftconv.cufft_fused`), whose outputs come from fresh
allocations: there the caching allocator is filled with NaN first, so a skipped element shows as NaN.

Fresh random inputs for every case, non-decaying (white-noise) filters, gates and skip term on,
causal and bidirectional, odd and non-power-of-two lengths, both the on-chip and the multi-pass path;
on the cuFFT path the no-grad forward of batches >= 2 at 32K-128K runs on three levels (paired rows).
Forward outputs are written into a NaN-poisoned buffer (every element must be overwritten); on the
Triton path so are the fused extra outputs (the forward's kept pre-postgate z, and the backward pass's
du, dpregate and dpostgate written by one apply kernel). Forward and every gradient are compared with a
float64 reference by relative L2 error (fp32 <= 1e-4, bf16 <= 1e-2). bf16 cases with L <= 4096 (the
M2 shape class) and fp32 ones with L <= 2048 run the on-chip short path, the others the multi-pass one;
dy is fed as a transposed (B, L, H) view, as M2 hands it back. The variant is ``plan.current_tuning()``
(``GENOMIX_FFTCONV_VARIANT=v2`` to check v2).
bf16 inputs also run cases with extreme magnitudes: ``RANGE_CASES`` on the cuFFT path (fp16 spectra),
``SHORT_RANGE_CASES`` on the Triton path's on-chip kernels (fp16 dot operands).
Prints a table last and writes JSON to ``--out``.

    PYTHONPATH=. python kernels/gpu_check_fftconv.py --out OUTDIR [--path cufft]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import write_json
from genomix.kernels.fftconv import fftconv, fftconv_ref
from genomix.kernels.fftconv.autograd import _precision, _spectrum
from genomix.kernels.fftconv import cufft_fused, three_level, two_level
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft
from genomix.kernels.fftconv.ops import conv_apply
from genomix.kernels.fftconv.plan import current_tuning, plan_for

CASES = [  # (B, H, L, bidirectional, gates)
    (4, 16, 4096, False, True),
    (3, 5, 1000, True, True),
    (2, 8, 32768, False, True),
    (4, 6, 65_536, False, True),
    (3, 4, 70_001, True, True),
    (1, 3, 100_003, True, True),
    (2, 4, 262_144, False, False),
    (1, 4, 1 << 20, False, True),
    (1, 2, 1 << 22, False, True),
]
#: cuFFT path, 16-bit inputs: fp16 spectra whose range scaling must hold for coherent inputs (spectra of
#: 1e9 and more unscaled) and gradients of 1e-20 (zero in fp16 unscaled). Same (B, H, L, bid, gates) form.
RANGE_CASES = [(1, 4, 1 << 20, False, True), (2, 3, 30_001, True, True), (4, 2, 40_000, False, True)]
#: The same extreme magnitudes on the Triton path's on-chip kernels (fp16 dot operands, range-scaled per
#: tile): GUE-like lengths, where a fine-tuned pretrained HyenaDNA once overflowed fp16 to NaN.
SHORT_RANGE_CASES = [(8, 64, 70, False, True), (4, 16, 1000, True, True), (2, 8, 4096, False, True)]
TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}
DEVICE = "cuda"  # a CPU smoke run of the Triton checks (interpreter, tiny case) sets "cpu"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def inputs(B: int, H: int, L: int, bid: bool, gates: bool, dtype: torch.dtype) -> list:
    dev = DEVICE
    u = torch.randn(B, H, L, device=dev).to(dtype)
    k = torch.randn(H, 2 * L if bid else L, device=dev) / (L ** 0.5)  # white noise: does not decay
    D = torch.randn(H, device=dev)
    pre = torch.randn(B, H, L, device=dev).to(dtype) if gates else None
    post = torch.randn(B, H, L, device=dev).to(dtype) if gates else None
    return [u, k, D, pre, post]


def _poisoned_triton(ts: list, bid: bool, dtype: torch.dtype) -> tuple[torch.Tensor, str]:
    """The Monarch kernels' forward written into a NaN-filled output, and the plan it used."""
    u, k, D, pre, post = ts
    prec, tuning = _precision(dtype, False), current_tuning()
    plan = plan_for(u.shape[-1], tuning, prec)
    poisoned = torch.full(u.shape, float("nan"), device=DEVICE, dtype=dtype)
    spec, peak = _spectrum(k, plan, bid, prec, tuning)
    conv_apply(u, pre, D, post, spec, plan, dtype, prec, tuning, out=poisoned, peak=peak)
    return poisoned, f"n={plan.n} n2={plan.n2} n1={plan.n1}"


def _poisoned_triton_fused(ts: list, dy: torch.Tensor, bid: bool, dtype: torch.dtype) -> dict:
    """The fused extra outputs of the Monarch kernels written into NaN-filled buffers: the forward's z
    (pre-postgate output) and the backward apply pass's du, dpregate, dpostgate (as autograd.py calls it)."""
    u, k, D, pre, post = ts
    prec, tuning = _precision(dtype, False), current_tuning()
    plan = plan_for(u.shape[-1], tuning, prec)

    def nan_like(t):
        return torch.full(t.shape, float("nan"), device=DEVICE, dtype=t.dtype)

    out = {"z": nan_like(u)}
    spec, peak = _spectrum(k, plan, bid, prec, tuning)
    conv_apply(u, pre, D, post, spec, plan, dtype, prec, tuning, store_y=False, z=out["z"], peak=peak)
    out["du"] = nan_like(u)
    if pre is not None:
        out["dpre"] = nan_like(pre)
    if post is not None:
        out["dpost"] = nan_like(post)
    cspec, peak = _spectrum(k, plan, bid, prec, tuning, conj=True)
    conv_apply(dy, post, D, pre, cspec, plan, dtype, prec, tuning, out=out["du"], m2=u, out2=out.get("dpre"),
               zin=out["z"] if post is not None else None, out3=out.get("dpost"), peak=peak)
    return out


def _poisoned_cufft(ts: list, bid: bool) -> tuple[torch.Tensor, str]:
    """The cuFFT path's forward after the caching allocator was filled with NaN (its outputs are fresh)."""
    torch.cuda.empty_cache()
    nan_fill = torch.full((16 * ts[0].numel(),), float("nan"), device="cuda")
    del nan_fill
    plan = cufft_fused._plan(ts[0], False)
    levels = (3 if three_level.applies(plan, ts[0].shape[0]) else 2) if two_level.applies(plan) else 1
    with torch.no_grad():
        return (fftconv_cufft(*ts, bidirectional=bid),
                f"cufft n={plan.n} {'fp16' if plan.half else 'fp32'} spectra, {levels} level(s) forward")


def check(B: int, H: int, L: int, bid: bool, gates: bool, dtype: torch.dtype, path: str = "triton",
          extreme: bool = False) -> dict:
    """One case; ``extreme``: inputs with a large common offset, filters with a large mean, dy ~ 1e-20."""
    ts = inputs(B, H, L, bid, gates, dtype)
    if extreme:
        ts[0] = (ts[0].float() * 3e3 + 2e3).to(dtype)
        ts[1] = ts[1] * 50 * L ** 0.5 + 10
    poisoned, plan = _poisoned_cufft(ts, bid) if path == "cufft" else _poisoned_triton(ts, bid, dtype)
    unwritten = int(torch.isnan(poisoned).sum())
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in ts]
    y = (fftconv_cufft if path == "cufft" else fftconv)(*leaves, bidirectional=bid)
    # as in the M2 model (out_linear(y.transpose(1, 2))): the gradient arrives with time stride H
    dy = (torch.randn(B, L, H, device=y.device) * (1e-20 if extreme else 1.0)).to(dtype).transpose(1, 2)
    y.backward(dy)
    ref_leaves = [t.detach().double().requires_grad_() if t is not None else None for t in ts]
    r = fftconv_ref(*ref_leaves, bidirectional=bid)
    r.backward(dy.double())
    errs = {"y": rel(y, r), "y_poisoned": rel(poisoned, r)}
    for name, a, b in zip(("du", "dk", "dD", "dpre", "dpost"), leaves, ref_leaves):
        if a is not None:
            errs[name] = rel(a.grad, b.grad)
    if path != "cufft":
        fused = _poisoned_triton_fused(ts, dy.contiguous(), bid, dtype)
        unwritten += sum(int(torch.isnan(t).sum()) for t in fused.values())
        with torch.no_grad():
            zref = fftconv_ref(*(t.detach().double() if t is not None else None for t in ts[:4]), None,
                               bidirectional=bid)
        errs["z_poisoned"] = rel(fused["z"], zref)
        for name, b in zip(("du", "dpre", "dpost"), (ref_leaves[0], ref_leaves[3], ref_leaves[4])):
            if name in fused:
                errs[name + "_poisoned"] = rel(fused[name], b.grad)
    worst = max(errs.values())
    ok = unwritten == 0 and worst <= TOL[dtype] and all(v == v for v in errs.values())
    return {"B": B, "H": H, "L": L, "bidirectional": bid, "gates": gates, "dtype": str(dtype).split(".")[-1],
            "path": path, "extreme": extreme, "plan": plan, "unwritten": unwritten, "errors": errs,
            "worst": worst, "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".",
                    help="folder for gpu_check_fftconv_<path>.json (created if missing; default: current folder)")
    ap.add_argument("--path", choices=("triton", "cufft"), default="triton",
                    help="triton: the Monarch-FFT kernels; cufft: the cuFFT path with fused Triton elementwise "
                         "kernels (default: triton)")
    ap.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"],
                    help="input dtypes to check (default: float32 bfloat16)")
    args = ap.parse_args()
    require_cuda(ap)
    os.environ.pop("GENOMIX_FORCE_REFERENCE", None)
    os.environ["GENOMIX_TRITON_OPS"] = "fftconv"  # the dispatch's CUDA default for fftconv is the reference
    torch.manual_seed(int(time.time()))
    rows = []
    for dtype in (getattr(torch, name) for name in args.dtypes):
        extreme = [] if dtype != torch.bfloat16 else RANGE_CASES if args.path == "cufft" else SHORT_RANGE_CASES
        for case, is_extreme in [(c, False) for c in CASES] + [(c, True) for c in extreme]:
            t0 = time.time()
            try:
                row = check(*case, dtype, args.path, is_extreme)
            except Exception as e:  # report and go on: one bad shape must not hide the others
                row = {"B": case[0], "H": case[1], "L": case[2], "bidirectional": case[3], "gates": case[4],
                       "dtype": str(dtype).split(".")[-1], "ok": False, "error": f"{type(e).__name__}: {e}"[:400]}
            row["seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    write_json(Path(args.out) / f"gpu_check_fftconv_{args.path}.json",
               {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "tuning": repr(current_tuning()), "rows": rows})
    print(f"{'dtype':>8} {'B':>2} {'H':>3} {'L':>8} {'bid':>4} {'gate':>4} {'ext':>3} {'worst rel err':>13} {'unwritten':>9} ok")
    for r in rows:
        print(f"{r['dtype']:>8} {r['B']:>2} {r['H']:>3} {r['L']:>8} {str(r['bidirectional'])[0]:>4} {str(r['gates'])[0]:>4} "
              f"{str(r.get('extreme', False))[0]:>3} "
              f"{r.get('worst', float('nan')):>13.2e} {r.get('unwritten', -1):>9} {r['ok']}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
