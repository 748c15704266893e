"""Where the time and memory of a model's forward and training step go on the GPU, per operator.

Builds a named model (fresh weights, random tokens, bf16 autocast, per-block activation checkpointing
for the training step as ``genomix pretrain`` runs it unless ``--no-checkpointing``), profiles one
forward and one training step with ``torch.profiler`` after a warm-up, and prints the operators with the
most GPU time, also split by input shape (their allocations go to the JSON). ``--memory-snapshot``
records one more training step's allocations and prints what is alive at its peak, by the line of
genomix code that allocated it. Writes ``profile_model.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/profile_model.py --model hyenadna-large-1m --length 1048576 --out DIR [--memory-snapshot]
    PYTHONPATH=. python pipelines/profile_model.py --model m2-small-32k --length 4096 --batch 16 --no-checkpointing --out DIR
    PYTHONPATH=. python pipelines/profile_model.py --model caduceus-ps-131k-d256-16L --task masked-lm --length 131072 --out DIR
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.dispatch import fftconv_path
from genomix.models import build
from genomix.train.run import enable_activation_checkpointing


def _profiled(fn: Callable[[], None], n: int) -> dict:
    """Profile one call of ``fn`` after a warm-up: the ``n`` entries with the most self GPU time (name,
    calls, GPU ms, share of the kernel time, GiB allocated), the ``n`` operators with the most GPU time
    split by input shapes (which tensor a copy or a multiply works on), the ``n`` with the most self host
    time (what a launch-bound step spends its time on), the total kernel time and the peak GiB.

    The profiler lists both operators (``aten::*``, their launches' time) and the kernels themselves,
    so the total and the shares count kernel entries only: summing every entry would count twice."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], profile_memory=True,
                 record_shapes=True) as prof:
        fn()
        torch.cuda.synchronize()

    def ranked(events) -> list:
        return sorted((e for e in events if e.self_device_time_total > 0),
                      key=lambda e: e.self_device_time_total, reverse=True)

    events = ranked(prof.key_averages())
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) or 1.0

    def row(e) -> dict:
        return {"op": e.key[:80], "calls": e.count, "gpu_ms": e.self_device_time_total / 1e3,
                "share": e.self_device_time_total / kernel_us,
                "alloc_gib": max(e.self_device_memory_usage, 0) / 2**30}

    by_shape = [e for e in ranked(prof.key_averages(group_by_input_shape=True)) if e.device_type == DeviceType.CPU]
    host = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "top_host": [{"op": e.key[:80], "calls": e.count, "host_ms": e.self_cpu_time_total / 1e3} for e in host[:n]],
        "host_ms": sum(e.self_cpu_time_total for e in host) / 1e3,
        "top": [row(e) for e in events[:n]],
        "top_by_shape": [{**row(e), "shapes": str(e.input_shapes)[:160]} for e in by_shape[:n]],
        "gpu_ms": kernel_us / 1e3,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def _memory_snapshot(step: Callable[[], None], path: Path, top: int) -> dict:
    """Record every allocation of one call of ``step`` (with Python stacks), dump the allocator snapshot
    (drag it into https://pytorch.org/memory_viz) and return what was alive at the step's peak, grouped by
    the innermost genomix/kernels frame that allocated it."""
    base = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=500_000)
    try:
        step()
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
        torch.cuda.memory._dump_snapshot(str(path))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    print(f"allocator snapshot of one training step: {path}")
    return _alive_at_peak(snapshot["device_traces"][torch.cuda.current_device()], base, top)


def _allocation_site(frames: list[dict]) -> str:
    for frame in frames:
        name = frame.get("filename", "")
        if "/genomix/" in name or "/kernels/" in name:
            return f"{name.rsplit('/', 2)[-2]}/{name.rsplit('/', 1)[-1]}:{frame.get('line')} {frame.get('name')}"
    return "(outside genomix)"


def _alive_at_peak(trace: list[dict], base: int, top: int) -> dict:
    """Replay the allocation trace; at the highest total, sum the live blocks by allocation site."""
    live: dict[int, dict] = {}
    total = peak = 0
    at_peak: list[dict] = []
    for event in trace:
        if event["action"] == "alloc":
            live[event["addr"]] = event
            total += event["size"]
            if total > peak:
                peak, at_peak = total, list(live.values())
        elif event["action"] == "free_completed" and event["addr"] in live:
            total -= live.pop(event["addr"])["size"]
    sites: dict[str, list[int]] = {}
    for event in at_peak:
        entry = sites.setdefault(_allocation_site(event.get("frames", [])), [0, 0])
        entry[0] += event["size"]
        entry[1] += 1
    ranked = sorted(sites.items(), key=lambda item: item[1][0], reverse=True)[:top]
    result = {"before_step_gib": base / 2**30, "step_peak_gib": peak / 2**30,
              "sites": [{"site": site, "gib": size / 2**30, "blocks": n} for site, (size, n) in ranked]}
    print(f"\nalive at the step's peak: {result['before_step_gib']:.2f} GiB before the step + "
          f"{result['step_peak_gib']:.2f} GiB allocated in it, by allocation site:")
    for row in result["sites"]:
        print(f"  {row['gib']:8.2f} GiB {row['blocks']:5d} blocks  {row['site']}")
    return result


def _print(title: str, result: dict) -> None:
    print(f"\n{title}: {result['gpu_ms']:.1f} ms of GPU kernels, peak {result['peak_gib']:.2f} GiB")
    print(f"{'op':<60} {'calls':>6} {'GPU ms':>9} {'share':>7}")
    for r in result["top"]:
        print(f"{r['op'][:60]:<60} {r['calls']:>6} {r['gpu_ms']:>9.2f} {100 * r['share']:>6.1f}%")
    print("operators by input shapes:")
    for r in result["top_by_shape"]:
        print(f"  {r['op'][:28]:<28} {r['calls']:>5} {r['gpu_ms']:>9.2f}  {r['shapes']}")
    print(f"host (CPU) time, self, by operator: {result['host_ms']:.1f} ms in all (profiler overhead included)")
    for r in result["top_host"]:
        print(f"  {r['op'][:50]:<50} {r['calls']:>6} {r['host_ms']:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hyenadna-large-1m",
                        help="named model size, fresh weights (default: hyenadna-large-1m)")
    parser.add_argument("--length", type=int, default=1_048_576,
                        help="tokens per random sequence (default: 1048576)")
    parser.add_argument("--batch", type=int, default=1,
                        help="sequences per forward and training step (default: 1)")
    parser.add_argument("--task", default="causal-lm", choices=["causal-lm", "masked-lm"],
                        help="the head to train (masked-lm for bidirectional models such as Caduceus)")
    parser.add_argument("--no-checkpointing", action="store_true", help="profile the training step without "
                        "activation checkpointing (as bench_m2 times it)")
    parser.add_argument("--top", type=int, default=18,
                        help="rows per table: operators, and with --memory-snapshot allocation sites (default: 18)")
    parser.add_argument("--memory-snapshot", action="store_true",
                        help="also dump the allocator's history of one training step (memory_snapshot.pickle)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for profile_model.json, and memory_snapshot.pickle with --memory-snapshot "
                             "(created if missing; default: current folder)")
    args = parser.parse_args()
    require_cuda(parser)
    torch.manual_seed(0)
    model = build(args.model, task=args.task, max_seq_len=args.length + 2).cuda()
    ids = torch.randint(7, 11, (args.batch, args.length), device="cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(input_ids=ids)

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    result = {"model": args.model, "task": args.task, "length": args.length, "batch": args.batch,
              "device": torch.cuda.get_device_name(),
              "checkpointing": not args.no_checkpointing, "fftconv_path": fftconv_path()}
    model.eval()
    result["forward"] = _profiled(forward, args.top)
    _print("forward", result["forward"])
    model.train()
    if not args.no_checkpointing:
        enable_activation_checkpointing(model)
    result["train_step"] = _profiled(train_step, args.top)
    _print(f"training step ({'checkpointed blocks' if not args.no_checkpointing else 'no checkpointing'})",
           result["train_step"])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory_snapshot:
        result["memory_at_peak"] = _memory_snapshot(train_step, args.out / "memory_snapshot.pickle", args.top)
    tmp = args.out / ".profile_model.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out / "profile_model.json")


if __name__ == "__main__":
    main()
