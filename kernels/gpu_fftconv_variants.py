"""One GPU run that checks the v2 fftconv kernels and times them against v1 and the PyTorch reference.

1. Correctness of ``v2`` (``plan.VARIANTS``) at real shapes, bf16 (two shapes before the timings,
   one after; fp32 after the timings: its tf32x3 kernels compile slowest): fresh random inputs, white-noise (non-decaying) filters, gates and
   skip term, causal and bidirectional; the forward written into a NaN-poisoned buffer; forward and
   all five gradients against a float64 reference (relative L2: fp32 <= 1e-4, bf16 <= 1e-2).
2. Timing, bf16, B*H*L = 256 M elements, ``triton.testing.do_bench`` medians: the reference, v1, v2
   and single-change / launch-shape variants of v2 at L = 4K, 256K, 1M (the sweep only where it
   changes something), forward and (ref and v2 everywhere, v1 at 1M) forward+backward with peak
   memory; each variant's forward error against the fp32 reference output is recorded with its time.

A failing variant is recorded and the run goes on. Prints a table last; writes
``gpu_fftconv_variants.json`` into ``--out`` (a folder, created if missing).

    PYTHONUNBUFFERED=1 PYTHONPATH=. timeout 200 python kernels/gpu_fftconv_variants.py --out OUTDIR

``--compare V [V ...] [--launch-length L]``: only check the last named variant at ``COMPARE_CHECKS``
(bf16 and fp32) and time the reference and the named variants forward and forward+backward at L.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Callable, Iterable

import torch
import triton
import triton.testing

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.fftconv import fftconv_ref, fftconv_triton
from genomix.kernels.fftconv.autograd import _precision
from genomix.kernels.fftconv.ops import conv_apply, filter_spectrum_triton
from genomix.kernels.fftconv.plan import VARIANTS, Tuning, plan_for
from genomix.kernels.bench_fftconv import peak_gib

V2 = VARIANTS["v2"]
SWEEP: dict[str, Tuning] = {  # name -> tuning; each differs from v2 (or v1) in one thing
    "v1": VARIANTS["v1"],
    "v2": V2,
    "v1+spectrum": Tuning(triton_spectrum=True),
    "v2-bf16dots": dataclasses.replace(V2, dots_fp16=False),
    "v2+bf16z": dataclasses.replace(V2, bf16_z=True),
    "v2-dense": dataclasses.replace(V2, two_level=False),
    "v2-col2048": dataclasses.replace(V2, col_elems=2048),
    "v2-col8192": dataclasses.replace(V2, col_elems=8192),
    "v2-colw4": dataclasses.replace(V2, col_warps=4),
    "v2-row2048": dataclasses.replace(V2, max_row=2048),
    "v2-roww4": dataclasses.replace(V2, row_warps=4),
    "v3": VARIANTS["v3"],
    "v2+half": dataclasses.replace(V2, half_tiles=True),
    "v2+pair": dataclasses.replace(V2, pair_batch=True),
}
#: ``--launch-sweep``: v2's launch-shape variants at one length (1M unless ``--launch-length``), forward
#: only. Nsight Compute (2026-12-02) put v2's 1M kernels at 12-25 % occupancy (126-255 registers, 8-warp
#: CTAs) and 13-34 % of HBM bandwidth: latency-bound, so smaller programs / fewer warps per program are
#: the first thing to try.
LAUNCH_SWEEP = ("v2-colw4", "v2-roww4", "v2-col2048", "v2-row2048", "v2-col8192")
TIMING = {4096: (256, 256), 262144: (4, 256), 1 << 20: (1, 256)}  # L -> (B, H)
#: ``--compare``: short-path cases checked for the last named variant before its timings: the 8192-point
#: tile in pairs, an odd batch (one pair, one lone sequence) on a bidirectional 2048-point tile, B = 1.
COMPARE_CHECKS = [(4, 16, 4000, False, True), (3, 5, 1000, True, True), (1, 8, 4096, False, True)]
SHORT_PATH_ONLY = ("v3", "v2+half", "v2+pair")  # the same kernels as v2 beyond L = 4096
OPTIONAL = [  # (L, variant) timed after ref/v1/v2 at every L, while the time budget lasts
    *((1 << 20, n) for n in SWEEP if n not in ("v1", "v2", *SHORT_PATH_ONLY)),
    (262144, "v2-row2048"),
    *((L, n) for L in (4096, 262144) for n in ("v1+spectrum", "v2-bf16dots", "v2+bf16z")),
]
FWDBWD = {"v2": (4096, 262144, 1 << 20), "v1": (1 << 20,)}  # fwd+bwd timed for these (and ref everywhere)


def _fwdbwd_timed(L: int, name: str) -> bool:
    """Whether the full run times forward+backward of ``name`` at ``L`` (the reference always)."""
    return name == "ref" or L in FWDBWD.get(name, ())
CHECKS = [  # (B, H, L, bidirectional, gates): 8192-point short path, dense and two-step column passes
    (4, 16, 4000, False, True),
    (2, 8, 30_001, True, True),
    (1, 4, 1 << 20, False, True),
]
TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2}
TIME_BUDGET_S = 110.0  # optional variants are skipped past this (the lead's timeout is 200 s)


class _Stop(Exception):
    """Raised by the SIGTERM handler so that a timed-out run still writes its JSON and table."""


_STOPPED: list[int] = []  # set by the handler: libraries may wrap the _Stop it raises in their own errors


def _on_sigterm(signum, frame):
    _STOPPED.append(signum)
    raise _Stop()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def check(B: int, H: int, L: int, bid: bool, gates: bool, dtype: torch.dtype, tuning: Tuning) -> dict:
    """Poisoned-buffer forward plus forward/backward of one variant against float64."""
    dev = "cuda"
    u = torch.randn(B, H, L, device=dev).to(dtype)
    k = torch.randn(H, 2 * L if bid else L, device=dev) / (L ** 0.5)  # white noise: no decay
    D = torch.randn(H, device=dev)
    pre = torch.randn(B, H, L, device=dev).to(dtype) if gates else None
    post = torch.randn(B, H, L, device=dev).to(dtype) if gates else None
    ts = [u, k, D, pre, post]
    prec = _precision(dtype, False)
    plan = plan_for(L, tuning, prec)
    spec = filter_spectrum_triton(k, plan, bid, prec, tuning) if tuning.triton_spectrum else None
    poisoned = torch.full((B, H, L), float("nan"), device=dev, dtype=dtype)
    if spec is not None:
        conv_apply(u, pre, D, post, spec, plan, dtype, prec, tuning, out=poisoned)
    unwritten = int(torch.isnan(poisoned).sum())
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in ts]
    y = fftconv_triton(*leaves, bidirectional=bid, tuning=tuning)
    dy = torch.randn_like(y)
    y.backward(dy)
    ref_leaves = [t.detach().double().requires_grad_() if t is not None else None for t in ts]
    r = fftconv_ref(*ref_leaves, bidirectional=bid)
    r.backward(dy.double())
    errs = {"y": rel(y, r)}
    if spec is not None:
        errs["y_poisoned"] = rel(poisoned, r)
    for name, a, b in zip(("du", "dk", "dD", "dpre", "dpost"), leaves, ref_leaves):
        if a is not None:
            errs[name] = rel(a.grad, b.grad)
    worst = max(errs.values())
    ok = unwritten == 0 and worst <= TOL[dtype] and all(v == v for v in errs.values())
    return {"unwritten": unwritten, "errors": errs, "worst": worst, "ok": ok}


def make_inputs(L: int, B: int, H: int) -> dict:
    """bf16 u and dy, fp32 filter and D, and the fp32 reference output."""
    u = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    k = torch.randn(H, L, device="cuda") / L ** 0.5
    D = torch.randn(H, device="cuda")
    dy = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        y_ref = fftconv_ref(u, k, D)
    return {"u": u, "k": k, "D": D, "dy": dy, "y_ref": y_ref}


def time_variant(L: int, inp: dict, name: str, t0: float, backward: bool) -> dict:
    """fwd ms and error vs the reference output (+ fwd+bwd ms and peak GiB if ``backward``)."""
    u, k, D, dy = inp["u"], inp["k"], inp["D"], inp["dy"]
    row: dict = {"L": L, "B": u.shape[0], "H": u.shape[1], "variant": name}
    try:
        if name == "ref":
            def f(*a):
                return fftconv_ref(*a)
        else:
            def f(*a, _t=SWEEP[name]):
                return fftconv_triton(*a, tuning=_t)

        def fwd():
            with torch.no_grad():
                return f(u, k, D)

        y = fwd()
        row["rel_err_vs_ref"] = rel(y, inp["y_ref"]) if name != "ref" else 0.0
        del y
        row["fwd_ms"] = triton.testing.do_bench(fwd, warmup=10, rep=60, return_mode="median")
        if backward:
            ul, kl, Dl = (t.detach().clone().requires_grad_() for t in (u, k, D))

            def fwdbwd():
                f(ul, kl, Dl).backward(dy)
                ul.grad = kl.grad = Dl.grad = None

            fwdbwd()
            row["fwdbwd_ms"] = triton.testing.do_bench(fwdbwd, warmup=10, rep=60, return_mode="median")
            row["fwdbwd_peak_gib"] = peak_gib(fwdbwd)[0]
            del ul, kl, Dl
    except _Stop:
        raise
    except Exception as e:  # record and go on: one bad variant must not hide the others
        if _STOPPED:
            raise _Stop() from e
        row["error"] = f"{type(e).__name__}: {e}"[:400]
    torch.cuda.empty_cache()
    row["t"] = round(time.time() - t0, 1)
    print(json.dumps(row), flush=True)
    return row


def report(out: str, checks: list[dict], timings: list[dict], t0: float, final: bool) -> None:
    """Write the JSON (after every row, so a killed run keeps what it measured); print the table if final."""
    ref = {r["L"]: r for r in timings if r["variant"] == "ref" and "error" not in r}
    for r in timings:
        base = ref.get(r["L"], {})
        for key in ("fwd", "fwdbwd"):
            if f"{key}_ms" in r and f"{key}_ms" in base and r["variant"] != "ref":
                r[f"{key}_speedup"] = base[f"{key}_ms"] / r[f"{key}_ms"]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "variants": {k: dataclasses.asdict(v) for k, v in SWEEP.items()}, "checks": checks,
              "timings": timings, "wall_s": round(time.time() - t0, 1), "complete": final}
    path = os.path.join(out, "gpu_fftconv_variants.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(path + ".tmp", path)
    if not final:
        return
    print(f"\n{result['device']}, triton {triton.__version__}, wall {result['wall_s']} s")
    print(f"{'check':>5} {'dtype':>8} {'B':>2} {'H':>3} {'L':>8} {'bid':>4} {'worst err':>10} {'unwritten':>9} ok")
    for r in checks:
        print(f"{r['variant']:>5} {r['dtype']:>8} {r['B']:>2} {r['H']:>3} {r['L']:>8} {str(r['bidirectional'])[0]:>4} "
              f"{r.get('worst', float('nan')):>10.2e} {r.get('unwritten', -1):>9} {r['ok']} {r.get('error', '')[:80]}")
    print(f"{'L':>8} {'variant':>12} | {'fwd ms':>8} {'x ref':>6} {'err':>8} | {'f+b ms':>8} {'x ref':>6} {'GiB':>6}")
    for r in sorted(timings, key=lambda r: (r["L"], r["variant"] != "ref", r["variant"] not in ("v1", "v2"))):
        if "error" in r:
            print(f"{r['L']:>8} {r['variant']:>12} | FAILED {r['error'][:100]}")
            continue
        fb = (f"{r['fwdbwd_ms']:>8.2f} {r.get('fwdbwd_speedup', 1.0):>6.2f} {r['fwdbwd_peak_gib']:>6.2f}"
              if "fwdbwd_ms" in r else "")
        print(f"{r['L']:>8} {r['variant']:>12} | {r['fwd_ms']:>8.2f} {r.get('fwd_speedup', 1.0):>6.2f} "
              f"{r['rel_err_vs_ref']:>8.1e} | {fb}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".",
                    help="folder for gpu_fftconv_variants.json (created if missing; default: current folder)")
    ap.add_argument("--launch-sweep", action="store_true",
                    help="only the reference, v2 and LAUNCH_SWEEP at --launch-length, forward only (no checks)")
    ap.add_argument("--launch-length", type=int, default=1 << 20, choices=sorted(TIMING),
                    help="L of --launch-sweep and --compare (default: 1048576)")
    ap.add_argument("--compare", nargs="+", choices=sorted(SWEEP), metavar="VARIANT",
                    help="only: check the last VARIANT at COMPARE_CHECKS (bf16 and fp32), then time the reference "
                         "and each VARIANT forward and forward+backward at --launch-length")
    args = ap.parse_args()
    require_cuda(ap)
    os.environ.pop("GENOMIX_FORCE_REFERENCE", None)
    os.makedirs(args.out, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    t0 = time.time()
    torch.manual_seed(int(t0))
    checks: list[dict] = []
    timings: list[dict] = []
    def run_checks(dtype: torch.dtype, cases: list[tuple], variant: str = "v2") -> None:
        for case in cases:
            row = {"B": case[0], "H": case[1], "L": case[2], "bidirectional": case[3], "gates": case[4],
                   "dtype": str(dtype).split(".")[-1], "variant": variant}
            try:
                row.update(check(*case, dtype, SWEEP[variant]))
            except _Stop:
                raise
            except Exception as e:
                if _STOPPED:
                    raise _Stop() from e
                row.update(ok=False, error=f"{type(e).__name__}: {e}"[:400])
            row["t"] = round(time.time() - t0, 1)
            print(json.dumps(row), flush=True)
            checks.append(row)
            report(args.out, checks, timings, t0, final=False)
            torch.cuda.empty_cache()

    def time_all(L: int, inp: dict, names: Iterable[str], backward: Callable[[str], bool]) -> None:
        for name in names:
            timings.append(time_variant(L, inp, name, t0, backward=backward(name)))
            report(args.out, checks, timings, t0, final=False)

    def compare() -> None:
        for dtype in (torch.bfloat16, torch.float32):
            run_checks(dtype, COMPARE_CHECKS, args.compare[-1])
        L = args.launch_length
        time_all(L, make_inputs(L, *TIMING[L]), ("ref", *args.compare), lambda name: True)

    def launch_sweep() -> None:
        L = args.launch_length
        time_all(L, make_inputs(L, *TIMING[L]), ("ref", "v2", *LAUNCH_SWEEP), lambda name: False)

    def full_run() -> None:
        # Order: what matters most first (compiles dominate the wall time; tf32x3 kernels compile slowest).
        run_checks(torch.bfloat16, [CHECKS[0], CHECKS[2]])  # the new code paths: 8192 short, two-step
        for L, (B, H) in TIMING.items():
            time_all(L, make_inputs(L, B, H), ("ref", "v1", "v2"), functools.partial(_fwdbwd_timed, L))
        run_checks(torch.bfloat16, [CHECKS[1]])
        run_checks(torch.float32, CHECKS[1:])
        for L, name in OPTIONAL:
            if time.time() - t0 > TIME_BUDGET_S:
                timings.append({"L": L, "variant": name, "error": "skipped: time budget"})
                continue
            time_all(L, make_inputs(L, *TIMING[L]), (name,), functools.partial(_fwdbwd_timed, L))

    run = compare if args.compare else launch_sweep if args.launch_sweep else full_run
    try:
        run()
    except _Stop:
        print("SIGTERM: stopping early; the table below holds what was measured", flush=True)
    report(args.out, checks, timings, t0, final=True)
    if args.launch_sweep:
        return 0
    return 0 if checks and all(r["ok"] for r in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
