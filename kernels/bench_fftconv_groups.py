"""Would the long convolution's forward be faster channel group by channel group, its intermediates
staying in L2? A probe for issue 4's 5x target at L = 1M, where the whole forward moves ~16 GiB through
HBM (kernels/fftconv/NOTES.md, "Sixteenth session").

At batch 1 and 256 channels every pass of the cuFFT path's forward writes and reads ~1 GiB of
intermediates, far more than the H200's 50 MB L2. Run on g channels at a time, one group's spectra
(~4 MB per channel) could stay in L2 between the passes. This times the default forward on all channels
against the same forward called once per group of g channels, eagerly and replayed from a CUDA graph
(which removes the host's launch cost and leaves only GPU time), on bf16 u, an fp32 filter and D, as
``bench_fftconv.py`` does, with the reference in the same run. The last lines are the per-kernel GPU
times of one full call and of one 4-channel call (torch.profiler).

    PYTHONPATH=. python kernels/bench_fftconv_groups.py --out DIR [--length 1048576] [--groups 4 16 64]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
import triton.testing

from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import fftconv_ref
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft


def median_ms(fn: Callable[[], object]) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def graph_replay(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` captured in a CUDA graph (after a warm-up on a side stream, as capture requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def kernel_ms(fn: Callable[[], object]) -> list[dict]:
    """GPU time per kernel name of one call of ``fn``."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = [{"kernel": ev.key[:60], "calls": ev.count, "ms": (getattr(ev, "device_time_total", 0) or 0) / 1e3}
            for ev in prof.key_averages()]
    return [r for r in rows if r["ms"] > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--length", type=int, default=1 << 20)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--groups", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64])
    args = ap.parse_args()
    torch.manual_seed(0)
    H, L = args.channels, args.length
    u = torch.randn(1, H, L, device="cuda").to(torch.bfloat16)
    k = torch.randn(H, L, device="cuda") / L ** 0.5
    D = torch.randn(H, device="cuda")
    result = {"device": torch.cuda.get_device_name(), "copy_bandwidth_TBps": copy_bandwidth() / 1e12,
              "length": L, "channels": H, "rows": []}
    with torch.no_grad():
        whole = lambda: fftconv_cufft(u, k, D)  # noqa: E731
        whole()
        result["ref_ms"] = median_ms(lambda: fftconv_ref(u, k, D))
        result["whole_ms"] = median_ms(whole)
        result["whole_graph_ms"] = median_ms(graph_replay(whole))
        for g in args.groups:
            def grouped(g: int = g) -> None:
                for i in range(0, H, g):
                    fftconv_cufft(u[:, i:i + g], k[i:i + g], D[i:i + g])

            grouped()
            result["rows"].append({"group": g, "eager_ms": median_ms(grouped), "graph_ms": median_ms(graph_replay(grouped))})
            torch.cuda.empty_cache()
        result["kernels_whole"] = kernel_ms(whole)
        result["kernels_group_of_4"] = kernel_ms(lambda: fftconv_cufft(u[:, :4], k[:4], D[:4]))
    write_json(args.out / f"bench_fftconv_groups_{L}.json", result)
    print(f"{result['device']}, L = {L}, {H} channels, reference {result['ref_ms']:.2f} ms")
    print(f"all channels at once: {result['whole_ms']:.2f} ms ({result['whole_graph_ms']:.2f} ms from a graph)")
    print(f"{'group':>6} | {'eager ms':>9} | {'graph ms':>9} | {'x whole':>7}")
    for r in result["rows"]:
        print(f"{r['group']:>6} | {r['eager_ms']:>9.2f} | {r['graph_ms']:>9.2f} | {r['graph_ms'] / result['whole_ms']:>7.2f}")
    for name in ("kernels_whole", "kernels_group_of_4"):
        print(name + ": " + ", ".join(f"{r['kernel'][:28]} {r['ms']:.3f}" for r in result[name]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
