"""Inference forwards three ways, same run, on a GPU: eager, eager with the filters' spectra kept
(:func:`genomix.models.fixed_filters`), and replayed from a CUDA graph (:class:`genomix.models.GraphedForward`).

Each case is ``MODEL:LENGTH:BATCH`` (fresh weights, bf16 autocast, random bases). For each way: median ms per
forward (CUDA events around each call, so time the GPU waits for the host counts), tokens/s, and the ratios to
eager; the graph's output against the eager forward with kept spectra (the same kernels: 0 expected) and
against the plain eager forward (relative L2 of the logits). Prints a table and writes JSON.

    PYTHONPATH=. python pipelines/bench_inference_graph.py --out DIR \\
        --cases hyenadna-large-1m:32768:1 hyenadna-small-32k:4096:32 m2-small-32k:4096:16
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genomix.kernels.bench_common import cuda_event_median_ms, require_cuda
from genomix.kernels.bench_scan import write_json
from genomix.models import GraphedForward, build, fixed_filters


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    torch.cuda.synchronize()
    return cuda_event_median_ms(fn, repeats)


def bench_case(name: str, length: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build(name, max_seq_len=max(length, 1)).cuda().eval()
    ids = torch.randint(7, 11, (batch, length), device="cuda")
    row: dict = {"model": name, "length": length, "batch": batch}

    def eager():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(input_ids=ids).logits

    plain = eager().float()
    row["eager_ms"] = _median_ms(eager, repeats)
    with fixed_filters(model):
        kept = eager().float()
        row["fixed_ms"] = _median_ms(eager, repeats)
    graphed = GraphedForward(model, ids)
    out = graphed(ids).logits.float()
    row["graph_ms"] = _median_ms(lambda: graphed(ids), repeats)
    row["graph_max_abs_diff_vs_fixed"] = float((out - kept).abs().max())
    row["fixed_max_abs_diff_vs_eager"] = float((kept - plain).abs().max())
    row["graph_rel_diff_vs_eager"] = float((out - plain).norm() / plain.norm())
    for way in ("eager", "fixed", "graph"):
        row[f"{way}_tokens_per_s"] = batch * length / row[f"{way}_ms"] * 1e3
        row[f"{way}_speedup"] = row["eager_ms"] / row[f"{way}_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["hyenadna-large-1m:32768:1", "hyenadna-small-32k:4096:32"],
                        help="MODEL:LENGTH:BATCH")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed forwards per way and case; the median is reported (default: 20)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_inference_graph.json (created if missing; default: current folder)")
    args = parser.parse_args()
    require_cuda(parser)
    rows = []
    for case in args.cases:
        name, length, batch = case.split(":")
        try:
            rows.append(bench_case(name, int(length), int(batch), args.repeats))
        except Exception as exc:  # a model whose forward cannot be captured is reported, not fatal
            rows.append({"model": name, "length": int(length), "batch": int(batch), "error": repr(exc)})
        torch.cuda.empty_cache()  # the case's model and graph are gone with its frame
        print(rows[-1], flush=True)
    write_json(args.out / "bench_inference_graph.json", {"device": torch.cuda.get_device_name(), "rows": rows})
    print(f"{'model':>20} {'L':>7} {'B':>3} {'eager ms':>9} {'fixed ms':>9} {'graph ms':>9} {'fixed x':>7} "
          f"{'graph x':>7} {'graph-fixed':>11} {'vs eager':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:>20} {r['length']:>7} {r['batch']:>3} failed: {r['error']}")
            continue
        print(f"{r['model']:>20} {r['length']:>7} {r['batch']:>3} {r['eager_ms']:>9.2f} {r['fixed_ms']:>9.2f} "
              f"{r['graph_ms']:>9.2f} {r['fixed_speedup']:>6.2f}x {r['graph_speedup']:>6.2f}x "
              f"{r['graph_max_abs_diff_vs_fixed']:>11.1e} {r['graph_rel_diff_vs_eager']:>8.1e}")


if __name__ == "__main__":
    main()
