"""One kernel op at a benchmark shape, run once inside a profiler range, for Nsight Compute.

Each workload is warmed up (Triton compiles, cuFFT plans) before ``cudaProfilerStart``, so with
``--profile-from-start off`` ncu sees exactly one call's kernels and none of the compilation:

    ncu --clock-control none --profile-from-start off --set full --import-source yes \\
        -o OUT/scan-fwd python kernels/ncu_workloads.py scan-fwd --length 1048576

Workloads (shapes of ``kernels/bench_scan.py`` and ``kernels/bench_fftconv.py``):
``scan-infer`` / ``scan-fwd`` / ``scan-bwd``: the selective scan's forward without autograd (no chunk-start
states, as in inference and ``kernels/bench_scan.py``'s forward) / forward with chunk-start states (as in
training) / backward, at B=1, E=512, N=16, bf16 with D, z and Δ-bias; ``fftconv-fwd`` / ``fftconv-fwdbwd``: the
long convolution on the path given by ``--path`` (``cufft``: cuFFT with the fused Triton passes, the
CUDA default beyond 4K; ``cufft-two-level``: with its two-level transforms forced on; ``triton``: the
Monarch kernels; any key of ``bench_fftconv.PATHS``), bf16 u, B·H·L = 256 M, L one of
``bench_fftconv.SHAPES``.
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_fftconv import PATHS, SHAPES


def _scan(length: int, mode: str, overrides: list[str]) -> Callable[[], None]:
    """The scan call of workload ``scan-<mode>`` (``infer``, ``fwd`` or ``bwd``) at ``DEFAULT_TILING`` with
    ``overrides`` (``NAME=VALUE`` texts, :func:`bench_scan.tiling_with`)."""
    from genomix.kernels.scan.ops import selective_scan_triton
    from genomix.kernels.bench_scan import make_inputs, tiling_with

    tiling = tiling_with(overrides)
    inputs = make_inputs(length)
    if mode == "infer":
        def infer() -> None:
            with torch.no_grad():
                selective_scan_triton(*inputs, tiling=tiling)
        return infer
    inputs = [t.requires_grad_() if t.is_floating_point() else t for t in inputs]
    dout = torch.randn_like(inputs[0])
    if mode == "fwd":
        return lambda: selective_scan_triton(*inputs, tiling=tiling)
    out = selective_scan_triton(*inputs, tiling=tiling)

    def run() -> None:
        torch.autograd.grad(out, inputs, dout, retain_graph=True)

    return run


def _fftconv(length: int, path: str, backward: bool) -> Callable[[], None]:
    batch, heads = SHAPES[length]
    u = torch.randn(batch, heads, length, device="cuda").to(torch.bfloat16).requires_grad_(backward)
    k = (torch.randn(heads, length, device="cuda") / length ** 0.5).requires_grad_(backward)
    D = torch.randn(heads, device="cuda").requires_grad_(backward)
    dy = torch.randn(batch, heads, length, device="cuda").to(torch.bfloat16)
    conv = PATHS[path]
    if not backward:
        def forward() -> None:
            with torch.no_grad():
                conv(u, k, D)
        return forward
    return lambda: conv(u, k, D).backward(dy)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", choices=["scan-infer", "scan-fwd", "scan-bwd", "fftconv-fwd", "fftconv-fwdbwd"],
                    help="the op call to profile: the selective scan's inference forward, training forward or "
                         "backward, or the long convolution's forward or forward+backward")
    ap.add_argument("--length", type=int, default=1 << 20,
                    help="sequence length L; fftconv workloads take one of bench_fftconv.SHAPES (default: 1048576)")
    ap.add_argument("--path", default="cufft", choices=sorted(PATHS), help="fftconv path (bench_fftconv.PATHS)")
    ap.add_argument("--tiling", nargs="*", default=[], metavar="NAME=VALUE",
                    help="scan: fields of ops.DEFAULT_TILING to override, e.g. hints=True bc16=True")
    args = ap.parse_args()
    require_cuda(ap)
    if args.workload.startswith("fftconv") and args.length not in SHAPES:
        ap.error(f"fftconv workloads take --length in {sorted(SHAPES)} (bench_fftconv's shapes)")
    if args.workload.startswith("scan"):
        run = _scan(args.length, args.workload.removeprefix("scan-"), overrides=args.tiling)
    else:
        run = _fftconv(args.length, args.path, backward=args.workload == "fftconv-fwdbwd")
    run()  # compile, plan, allocate
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    run()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
