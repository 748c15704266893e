"""Pretraining throughput of HyenaDNA ``large-1m``: training step, forward, longest trainable context.

One run measures, with random token ids (no genome files needed), batch 1:

* a training step (forward + backward + AdamW step) at ``--seq-len`` with per-block activation
  checkpointing and bf16 autocast on CUDA: step time, tokens/s, peak GiB;
* a forward pass (inference, no grad) at the same length: tokens/s, peak GiB;
* the longest trainable context: training steps at doubling lengths up to ``--max-len`` until the
  GPU runs out of memory.

It times the same model and step that ``genomix pretrain`` runs (``genomix.train`` builds the model the
same way and enables checkpointing through the same switch), without Lightning's bookkeeping around it.

    PYTHONPATH=. python pipelines/bench_pretrain.py --out DIR                       # GPU, defaults
    PYTHONPATH=. python pipelines/bench_pretrain.py --seq-len 4096 --d-model 32 --max-len 8192 --out DIR  # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genomix.cli.option_types import positive_int
from genomix.devices import resolve_device
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.kernels.dispatch import fftconv_path
from genomix.models import build
from genomix.outputs import atomic_write_text, make_output_dir
from genomix.train.run import enable_activation_checkpointing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)  # CPU paths run in fp32


def _timed(fn: Callable[[], None], device: torch.device, repeats: int,
           warmup: bool = True) -> tuple[float, float | None]:
    """Median seconds of ``fn`` (after one warm-up call unless ``warmup=False``), and peak GiB allocated."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if warmup:
        fn()  # Triton compilation/autotuning, allocator growth
        _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return times[len(times) // 2], peak


def make_model(args: argparse.Namespace, max_len: int, device: torch.device) -> torch.nn.Module:
    overrides: dict[str, Any] = {"max_seq_len": max_len + 2}
    if args.d_model:
        overrides.update(d_model=args.d_model, d_inner=4 * args.d_model)
    if args.n_layer:
        overrides["n_layer"] = args.n_layer
    model = build(args.model, task="causal-lm", **overrides).to(device)
    if not args.no_checkpointing:
        enable_activation_checkpointing(model, offload=args.offload_checkpoints, keep_scan=args.keep_scan)
    return model


def train_step_fn(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
                  device: torch.device) -> Callable[[], None]:
    def step() -> None:
        with _autocast(device):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def forward_fn(model: torch.nn.Module, ids: torch.Tensor, device: torch.device) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad(), _autocast(device):
            model(input_ids=ids)

    return forward


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    length, batch = args.seq_len, args.batch
    model = make_model(args, max(args.max_len, length), device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(7, 11, (batch, length), device=device)
    result: dict[str, Any] = {
        "model": args.model, "parameters": params, "n_layer": model.config.n_layer, "d_model": model.config.d_model,
        "batch": batch, "seq_len": length, "checkpointing": not args.no_checkpointing,
        "offload_checkpoints": args.offload_checkpoints,
        "precision": "bf16-mixed" if device.type == "cuda" else "fp32", "device": _device_name(device),
        "torch": torch.__version__, "memory_limit_gib": args.memory_limit_gib,
        "fftconv_path": fftconv_path(),
    }
    model.train()
    step_s, peak = _timed(train_step_fn(model, optimizer, ids, device), device, args.repeats)
    result["train"] = {"step_s": step_s, "tokens_per_s": batch * length / step_s, "peak_gib": peak}
    _free(device)
    model.eval()
    fwd_s, fwd_peak = _timed(forward_fn(model, ids, device), device, args.repeats)
    result["forward"] = {"s": fwd_s, "tokens_per_s": batch * length / fwd_s, "peak_gib": fwd_peak}
    model.train()
    del ids
    _free(device)
    result["longest"] = longest_trainable(model, optimizer, args, device)
    return result


def longest_trainable(model: torch.nn.Module, optimizer: torch.optim.Optimizer, args: argparse.Namespace,
                      device: torch.device) -> dict[str, Any]:
    """Training steps at ``seq_len``·2^k up to ``max_len``; the longest that fits, with its numbers.

    One step per length, no warm-up (kernels are compiled by then): the question is whether it fits,
    and the step time is indicative only.
    """
    tried: list[dict[str, Any]] = []
    length = args.seq_len
    while length <= args.max_len:
        ids = torch.randint(7, 11, (1, length), device=device)
        try:
            step_s, peak = _timed(train_step_fn(model, optimizer, ids, device), device, 1, warmup=False)
            tried.append({"seq_len": length, "fits": True, "step_s": step_s, "tokens_per_s": length / step_s,
                          "peak_gib": peak})
        except torch.cuda.OutOfMemoryError:
            tried.append({"seq_len": length, "fits": False})
            optimizer.zero_grad(set_to_none=True)
            break
        finally:
            del ids
            _free(device)
        length *= 2
    fits = [t for t in tried if t["fits"]]
    return {"max_trainable_seq_len": fits[-1]["seq_len"] if fits else 0, "search_limit": args.max_len, "tried": tried}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(r: dict[str, Any]) -> None:
    print(f"{r['model']} ({r['n_layer']} layers, d_model {r['d_model']}, {r['parameters'] / 1e6:.2f} M params) "
          f"on {r['device']}, {r['precision']}, batch {r['batch']}, checkpointing {r['checkpointing']}"
          f"{' (checkpoints in host memory)' if r.get('offload_checkpoints') else ''}")
    print(f"{'measurement':<26} {'L':>10} {'time s':>9} {'tokens/s':>12} {'peak GiB':>9}")
    t, f = r["train"], r["forward"]
    print(f"{'training step':<26} {r['seq_len']:>10} {t['step_s']:>9.3f} {t['tokens_per_s']:>12.4g} {_fmt(t['peak_gib'], '9.2f')}")
    print(f"{'forward':<26} {r['seq_len']:>10} {f['s']:>9.3f} {f['tokens_per_s']:>12.4g} {_fmt(f['peak_gib'], '9.2f')}")
    for row in r["longest"]["tried"]:
        if row["fits"]:
            print(f"{'training step (search)':<26} {row['seq_len']:>10} {row['step_s']:>9.3f} "
                  f"{row['tokens_per_s']:>12.4g} {_fmt(row['peak_gib'], '9.2f')}")
        else:
            print(f"{'training step (search)':<26} {row['seq_len']:>10} {'out of memory':>32}")
    limit = f", memory capped at {r['memory_limit_gib']} GiB" if r.get("memory_limit_gib") else ""
    print(f"longest trainable context (searched up to {r['longest']['search_limit']}{limit}): "
          f"{r['longest']['max_trainable_seq_len']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hyenadna-large-1m",
                        help="named model size, fresh weights (default: hyenadna-large-1m)")
    parser.add_argument("--seq-len", type=positive_int, default=1_048_576,
                        help="tokens per sequence of the timed training step and forward, and the context "
                             "search's first length (default: 1048576)")
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="sequences per timed training step and forward; the context search uses 1 (default: 1)")
    parser.add_argument("--max-len", type=positive_int, default=16 * 1_048_576, help="longest length the context search tries")
    parser.add_argument("--d-model", type=int, help="override the model width (tiny CPU runs)")
    parser.add_argument("--n-layer", type=int, help="override the number of layers")
    parser.add_argument("--no-checkpointing", action="store_true", help="train without activation checkpointing")
    parser.add_argument("--offload-checkpoints", action="store_true",
                        help="keep the block-boundary checkpoints in host memory (the recipe's offload_checkpoints)")
    parser.add_argument("--keep-scan", action="store_true",
                        help="keep the selective scan's forward outputs through checkpointing (Mamba, Caduceus)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed training steps and forwards after one warm-up; the median is reported "
                             "(default: 3)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--memory-limit-gib", type=float,
                        help="cap this process's GPU memory (e.g. 79 to answer 'fits an 80 GB H100' on a larger card)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_pretrain.json (created if missing; default: current folder)")
    args = parser.parse_args()
    if args.offload_checkpoints and args.no_checkpointing:
        parser.error("--offload-checkpoints needs activation checkpointing (drop --no-checkpointing)")
    if args.max_len < args.seq_len:
        parser.error(f"--max-len {args.max_len} is below --seq-len {args.seq_len}: the context search starts at "
                     "--seq-len and doubles up to --max-len")
    with exit_on_bad_input(parser):  # no such device, an unknown model name, an --out under a file
        device = resolve_device(args.device)
        torch.manual_seed(0)
        if args.memory_limit_gib and device.type == "cuda":
            index = device.index or 0
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib * 2**30 / total), index)
        make_output_dir(args.out)
        result = measure(args, device)
    path = args.out / "bench_pretrain.json"
    atomic_write_text(path, json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
