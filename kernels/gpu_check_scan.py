"""One GPU round for the selective scan: correctness vs the reference, tile sweep, benchmark, 1 Mb training.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python kernels/gpu_check_scan.py --out $OUT

1. Triton vs reference, forward and backward, fp32 and bf16, L not a multiple of the chunk, B·E > 1,
   channel count not a multiple of the tile, grouped B/C, with and without z, D, Δ-bias; and a sequence
   scanned in two parts, the second from the first's last state (``initial_state``), against the whole.
2. Tile sweep (channels per program x chunk length x segmentation target) at L = 64K; the fastest
   fwd+bwd setting is used below (and for the model step).
3. kernels/bench_scan.py's table at L = 4K, 64K, 1M (B=1, E=512, N=16, bf16).
4. A Mamba model on the GPU: Triton path vs reference path logits, and a training step of the
   7 M-parameter ``mamba-7m-1m`` at L = 2^20 (bf16 autocast, block activation checkpointing, AdamW).
Results go to $OUT/scan_gpu_check.json (rewritten after every section) and a summary table last.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
import traceback
from pathlib import Path

import torch

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import bench_length, copy_bandwidth, print_table, write_json


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def _random_inputs(case: dict, dtype: torch.dtype, g: torch.Generator) -> list[torch.Tensor | None]:
    """[u, Δ, A, B, C, D, z, Δ-bias] on the GPU for a correctness ``case`` (batch, E, N, L, B/C groups or
    None, and whether z, D and Δ-bias are given); Δ around -2 before the softplus, A in [-4.2, -0.2]."""
    kw = dict(device="cuda", generator=g)
    b, E, N, L = case["batch"], case["E"], case["N"], case["L"]
    shp = (b, N, L) if case["groups"] is None else (b, case["groups"], N, L)
    u = torch.randn(b, E, L, **kw).to(dtype)
    delta = (torch.randn(b, E, L, **kw) * 0.5 - 2).to(dtype)
    A = -(torch.rand(E, N, **kw) * 4 + 0.2)
    B, C = torch.randn(*shp, **kw).to(dtype), torch.randn(*shp, **kw).to(dtype)
    D = torch.randn(E, **kw) if case["D"] else None
    z = torch.randn(b, E, L, **kw).to(dtype) if case["z"] else None
    bias = torch.rand(E, **kw) * 0.2 if case["bias"] else None
    return [u, delta, A, B, C, D, z, bias]


def correctness() -> list[dict]:
    from genomix.kernels.scan.ops import DEFAULT_TILING, Tiling, selective_scan_triton
    from genomix.kernels.scan.reference import selective_scan_ref

    tilings = [DEFAULT_TILING, Tiling(4, 64, 4096, bwd_block_e=16, bwd_warps=8)]
    rows = []
    cases = [
        dict(batch=2, E=70, N=16, L=1000, groups=None, z=True, D=True, bias=True),
        dict(batch=2, E=64, N=16, L=777, groups=None, z=False, D=False, bias=False),
        dict(batch=1, E=96, N=8, L=4100, groups=2, z=True, D=True, bias=False),
        dict(batch=3, E=32, N=16, L=129, groups=None, z=False, D=True, bias=True),
        # ragged channel block with L a multiple of 16: the warp transpose-reduction path
        dict(batch=2, E=70, N=16, L=1024, groups=None, z=True, D=True, bias=True),
    ]
    for dtype, tol in ((torch.float32, 2e-4), (torch.bfloat16, 2e-2)):
        for i, case in enumerate(cases):
            g = torch.Generator(device="cuda").manual_seed(len(rows))
            args = _random_inputs(case, dtype, g)
            leaves = [None if t is None else t.detach().clone().requires_grad_() for t in args]
            ref_leaves = [None if t is None else t.detach().clone().requires_grad_() for t in args]
            tiling = tilings[i % 2]  # the default on cases 0, 2, 4
            out, last = selective_scan_triton(*leaves, return_last_state=True, tiling=tiling)
            ref, ref_last = selective_scan_ref(*ref_leaves, return_last_state=True)
            grad = torch.randn(out.shape, device="cuda", generator=g).to(dtype)
            out.backward(grad)
            ref.backward(grad)
            row = dict(dtype=str(dtype), tiling=repr(tiling), **case, out=_rel(out, ref), last_state=_rel(last, ref_last))
            for name, x, y in zip("u delta A B C D z bias".split(), leaves, ref_leaves):
                if x is not None:
                    row["d" + name] = _rel(x.grad, y.grad)
            row["ok"] = all(v <= tol for k, v in row.items() if isinstance(v, float))
            rows.append(row)
            print(row)
    return rows


def initial_state() -> list[dict]:
    """A sequence scanned in two parts, the second from the first's last state, against the whole sequence
    on the reference: outputs and last state, and the second part's gradients against the reference's from
    the same state, through a loss on its outputs and its last state: the initial state's gradient and the
    one flowing back from the last state included; the default ("seq") tiling and the "assoc" kernels,
    several segments, fp32 and bf16."""
    from genomix.kernels.scan.ops import DEFAULT_TILING, Tiling, selective_scan_triton
    from genomix.kernels.scan.reference import selective_scan_ref

    rows = []
    tilings = [DEFAULT_TILING, Tiling(4, 64, 4096, bwd_block_e=16, bwd_warps=8)]
    for dtype, tol in ((torch.float32, 2e-4), (torch.bfloat16, 2e-2)):
        for tiling in tilings:
            g = torch.Generator(device="cuda").manual_seed(len(rows) + 100)
            L, cut = 20001, 7011
            u, delta, A, B, C, D, z, bias = _random_inputs(
                dict(batch=2, E=96, N=16, L=L, groups=None, z=True, D=True, bias=True), dtype, g)
            whole, whole_last = selective_scan_ref(u, delta, A, B, C, D, z, bias, return_last_state=True)
            part = lambda t, sl: t[..., sl].contiguous()  # noqa: E731
            head = [part(t, slice(None, cut)) for t in (u, delta)] + [A] + [part(t, slice(None, cut)) for t in (B, C)]
            _, mid = selective_scan_triton(*head, D, part(z, slice(None, cut)), bias, return_last_state=True,
                                           tiling=tiling)
            tail = [part(t, slice(cut, None)) for t in (u, delta, B, C, z)]
            leaves = [t.clone().requires_grad_() for t in tail]
            ref_leaves = [t.clone().requires_grad_() for t in tail]
            leaves.append(mid.clone().requires_grad_())
            ref_leaves.append(mid.clone().requires_grad_())
            lu, ld, lB, lC, lz, lmid = leaves
            ru, rd, rB, rC, rz, rmid = ref_leaves
            out, last = selective_scan_triton(lu, ld, A, lB, lC, D, lz, bias, return_last_state=True,
                                              initial_state=lmid, tiling=tiling)
            ref, ref_last = selective_scan_ref(ru, rd, A, rB, rC, D, rz, bias, return_last_state=True,
                                               initial_state=rmid)
            grad = torch.randn(out.shape, device="cuda", generator=g).to(dtype)
            grad_last = torch.randn(last.shape, device="cuda", generator=g)
            ((out.float() * grad).sum() + (last * grad_last).sum()).backward()
            ((ref.float() * grad).sum() + (ref_last * grad_last).sum()).backward()
            row = dict(check="initial_state", dtype=str(dtype), tiling=repr(tiling), L=L, cut=cut,
                       out=_rel(out, whole[..., cut:]), last_state=_rel(last, whole_last))
            for name, x, y in zip("u delta B C z initial_state".split(), leaves, ref_leaves):
                row["d" + name] = _rel(x.grad, y.grad)
            row["ok"] = all(v <= tol for k, v in row.items() if isinstance(v, float))
            rows.append(row)
            print(row)
    return rows


def sweep(bandwidth: float) -> list[dict]:
    from genomix.kernels.scan.ops import Tiling

    candidates = [
        Tiling(4, 128, 8192),
        Tiling(4, 128, 8192, fwd_warps=8, bwd_warps=8),
        Tiling(4, 128, 8192, bwd_block_e=8, bwd_warps=8),
        Tiling(4, 64, 4096, bwd_block_e=8),
        Tiling(4, 64, 4096, bwd_block_e=16, bwd_warps=8),
        Tiling(8, 64, 4096, fwd_warps=8, bwd_block_e=16, bwd_warps=8),
        Tiling(4, 64, 4096, fwd_warps=2, bwd_block_e=8, bwd_warps=8),
        Tiling(2, 128, 8192, fwd_warps=2, bwd_block_e=8, bwd_warps=8),
    ]
    rows = []
    for tiling in candidates:
        try:
            rows.append(bench_length(65536, bandwidth, tiling, ref_max_len=0))
        except Exception as exc:  # a tile that does not compile/fit: record and go on
            rows.append(dict(tiling=repr(tiling), error=repr(exc)[:300]))
        print(rows[-1])
    return rows


def model_checks() -> dict:
    import genomix

    result = {}
    torch.manual_seed(0)
    model = genomix.models.build("mamba-tiny-1k").cuda().eval()
    ids = torch.randint(7, 11, (2, 1000), device="cuda")
    with torch.no_grad():
        tri = model(ids).logits
        os.environ["GENOMIX_FORCE_REFERENCE"] = "1"
        ref = model(ids).logits
        os.environ.pop("GENOMIX_FORCE_REFERENCE")
    result["tiny_triton_vs_ref_logits_rel"] = _rel(tri, ref)
    print(result)
    model = genomix.models.build("mamba-7m-1m").cuda().train()
    model.gradient_checkpointing_enable()
    result["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    length = 1 << 20
    ids = torch.randint(7, 11, (1, length), device="cuda")
    times = []
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    result.update(train_L=length, train_step_s=min(times[1:]), train_peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                  loss=float(loss), tokens_per_s=length / min(times[1:]))
    print(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for scan_gpu_check.json (created if missing)")
    parser.add_argument("--skip-sweep", action="store_true",
                        help="skip section 2, the tile sweep (the benchmark then runs ops.DEFAULT_TILING)")
    parser.add_argument("--correctness-only", action="store_true", help="section 1 alone")
    parser.add_argument("--initial-state-only", action="store_true", help="section 1's initial-state check alone")
    args = parser.parse_args()
    require_cuda(parser)
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    path = args.out / "scan_gpu_check.json"
    sections = [("initial_state", initial_state)]
    if not args.initial_state_only:
        sections.insert(0, ("correctness", correctness))
    bandwidth = copy_bandwidth()
    report["copy_gbs"] = bandwidth / 1e9
    if not (args.skip_sweep or args.correctness_only or args.initial_state_only):
        sections.append(("sweep", lambda: sweep(bandwidth)))

    def bench():
        from genomix.kernels.scan import ops

        done = [r for r in report.get("sweep", []) if "fwd_bwd_ms" in r]
        if done:
            best = min(done, key=lambda r: r["fwd_bwd_ms"])
            fields = {f.name for f in dataclasses.fields(ops.Tiling)}
            ops.DEFAULT_TILING = ops.Tiling(**{k: v for k, v in best.items() if k in fields})
            report["chosen_tiling"] = dataclasses.asdict(ops.DEFAULT_TILING)
        return [bench_length(L, bandwidth, ops.DEFAULT_TILING, 4096) for L in (4096, 65536, 1 << 20)]

    if not (args.correctness_only or args.initial_state_only):
        sections += [("bench", bench), ("model", model_checks)]
    for name, fn in sections:
        try:
            report[name] = fn()
        except Exception:
            report[name + "_error"] = traceback.format_exc()[-2000:]
            print(report[name + "_error"])
        torch.cuda.empty_cache()
        write_json(path, report)
    print(f"\ndevice {report['device']}, copy {report['copy_gbs']:.0f} GB/s")
    for name in (n for n in ("correctness", "initial_state") if n in report or n + "_error" in report):
        print(f"{name}:", "all ok" if all(r["ok"] for r in report.get(name, [{"ok": False}])) else "FAIL")
    if "bench" in report:
        print_table(report["bench"])
    if "model" in report:
        print(report["model"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
