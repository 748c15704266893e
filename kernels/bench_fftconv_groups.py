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

import torch

from genomix.kernels.bench_common import cuda_kernel_ms, graph_replay, median_ms, require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import fftconv_ref
from genomix.kernels.fftconv.cufft_fused import fftconv_cufft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for bench_fftconv_groups_<length>.json (created if missing)")
    ap.add_argument("--length", type=int, default=1 << 20, help="sequence length L (default: 1048576)")
    ap.add_argument("--channels", type=int, default=256, help="number of channels H, batch 1 (default: 256)")
    ap.add_argument("--groups", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                    help="channel group sizes g to time, one forward call per group (default: 1 2 4 8 16 32 64)")
    args = ap.parse_args()
    require_cuda(ap)
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
        result["ref_ms"] = median_ms(lambda: fftconv_ref(u, k, D), "cuda")
        result["whole_ms"] = median_ms(whole, "cuda")
        result["whole_graph_ms"] = median_ms(graph_replay(whole), "cuda")
        for g in args.groups:
            def grouped(g: int = g) -> None:
                for i in range(0, H, g):
                    fftconv_cufft(u[:, i:i + g], k[i:i + g], D[i:i + g])

            grouped()
            result["rows"].append({"group": g, "eager_ms": median_ms(grouped, "cuda"),
                                   "graph_ms": median_ms(graph_replay(grouped), "cuda")})
            torch.cuda.empty_cache()
        group_of_4 = lambda: fftconv_cufft(u[:, :4], k[:4], D[:4])  # noqa: E731
        group_of_4()
        result["kernels_whole"] = cuda_kernel_ms(whole)
        result["kernels_group_of_4"] = cuda_kernel_ms(group_of_4)
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
