"""Monarch Mixer vs a Transformer of equal width and depth: training-step throughput and peak memory.

For each sequence length L the script times one forward+backward step (bf16 autocast, fp32 params,
next-token loss) of

- ``m2``: the causal M2 LM with the kernels the dispatch picks on CUDA (on-chip Triton FFT convolution
  up to L = 4096 in 16-bit, cuFFT with fused Triton passes beyond; Triton short conv, LayerNorm, GLU),
- ``m2-ref``: the same model forced onto the PyTorch reference FFT convolution
  (``GENOMIX_REFERENCE_OPS=fftconv,fftconv-short,fftconv-cufft``), so the kernels' share of the speed-up is visible,
- ``m2-bert``: the bidirectional M2 masked LM (same width/depth, ``fftconv(bidirectional=True)``),
- ``transformer``: the pre-norm causal Transformer (SDPA, i.e. FlashAttention on H100, RoPE, GELU MLP),

with ``batch = tokens // L`` (the same tokens per step at every L). With ``--cuda-graphs`` every model is
also timed with its forward+backward captured as one CUDA graph (``genomix.train.cuda_graph``; rows
``mode: graph``), which removes the host's kernel-issue time from steps that are bound by it. Timed with
``triton.testing.do_bench`` (median, after warm-up, fresh inputs from a pool, gradients cleared every
step), the host time to issue one step (``host ms``: near the step time means launch-bound), then peak
memory of one step at batch 1. Before timing, the M2 models' Triton and reference
outputs are compared on the GPU. Prints a table, writes ``bench_m2.json`` (atomically) to ``--out``.

    PYTHONPATH=. python pipelines/bench_m2.py --out results/
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.dispatch import FFTCONV_OPS, environment, fftconv_path
from genomix.models import build
from genomix.train.cuda_graph import GraphedTrainingStep


def _model(kind: str, width: int, depth: int, heads: int, max_len: int) -> torch.nn.Module:
    common = dict(d_model=width, n_layer=depth, d_inner=4 * width, max_seq_len=max_len)
    if kind in ("m2", "m2-ref"):
        return build("m2-small-32k", **common)
    if kind in ("m2-dense", "m2-blockdiag"):  # same mixer, other MLP layers: where the time goes
        return build("m2-small-32k", mlp_linear=kind.split("-")[1], **common)
    if kind == "m2-bert":
        return build("m2-bert-small-1k", mlp_linear="monarch", **common)
    return build("transformer-small-32k", n_head=heads, **common)


def _force_reference(on: bool) -> contextlib.AbstractContextManager:
    """Context that routes ``fftconv`` (long and on-chip) to the PyTorch reference when ``on``; the other
    kernels (the short causal conv) keep their default (the dispatch reads the environment per call)."""
    return environment({"GENOMIX_REFERENCE_OPS": ",".join(FFTCONV_OPS)} if on else {})


def _labels(ids: torch.Tensor, masked: bool) -> torch.Tensor:
    """Next-token labels (the ids; the model shifts them), or for a masked LM every 7th token id kept."""
    return ids if not masked else torch.where(ids % 7 == 0, ids, torch.full_like(ids, -100))


def _step_fn(model: torch.nn.Module, pool: list[torch.Tensor], masked: bool) -> Callable[[], None]:
    """One training step's compute on the next input of the pool (no optimizer: same for all models)."""
    state = {"i": 0}

    def step() -> None:
        ids = pool[state["i"] % len(pool)]
        state["i"] += 1
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids, labels=_labels(ids, masked)).loss
        loss.backward()

    return step


def _graphed_step_fn(model: torch.nn.Module, pool: list[torch.Tensor], masked: bool) -> Callable[[], None]:
    """The same step as :func:`_step_fn`, replayed from a CUDA graph captured on the pool's first input."""
    def batch(ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": ids, "labels": _labels(ids, masked)}

    graphed = GraphedTrainingStep(model, batch(pool[0]))
    state = {"i": 0}

    def step() -> None:
        graphed(batch(pool[state["i"] % len(pool)]))
        state["i"] += 1

    return step


def _peak_gib(step: Callable[[], None]) -> float:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def _host_ms(step: Callable[[], None], repeats: int = 20) -> float:
    """Median milliseconds the host spends issuing one step (from an idle GPU, no synchronisation inside):
    when it is close to the step time, the step is bound by Python/launch overhead, not by the GPU."""
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    torch.cuda.synchronize()
    return sorted(times)[len(times) // 2]


def _inputs(batch: int, length: int, n: int = 3) -> list[torch.Tensor]:
    return [torch.randint(7, 11, (batch, length), device="cuda") for _ in range(n)]


def check_dispatch(width: int, depth: int, length: int) -> list[dict[str, Any]]:
    """GPU correctness of the models' fftconv path: Triton vs reference logits, and causality."""
    rows = []
    for kind in ("m2", "m2-bert"):
        torch.manual_seed(0)
        model = _model(kind, width, depth, 4, length).cuda().eval()
        ids = _inputs(2, length, 1)[0]
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model(ids).logits.float()
            with _force_reference(True):
                ref = model(ids).logits.float()
            row = {"model": kind, "L": length, "max_abs_diff_vs_reference": (fast - ref).abs().max().item(),
                   "logit_scale": ref.abs().max().item()}
            if kind == "m2":
                t = length // 2
                changed = ids.clone()
                changed[:, t + 1:] = torch.randint(7, 11, changed[:, t + 1:].shape, device="cuda")
                row["causal_leak_max_abs"] = (model(changed).logits.float()[:, : t + 1] - fast[:, : t + 1]).abs().max().item()
        rows.append(row)
        del model
    return rows


def bench(lengths: list[int], tokens: int, width: int, depth: int, heads: int, kinds: list[str],
          graphs: bool) -> list[dict[str, Any]]:
    from triton.testing import do_bench

    rows = []
    for length in lengths:
        batch = max(1, tokens // length)
        for kind in kinds:
            for mode in ("eager", "graph") if graphs else ("eager",):
                row: dict[str, Any] = {"model": kind, "mode": mode, "L": length, "batch": batch}
                model = None
                try:
                    torch.manual_seed(0)
                    model = _model(kind, width, depth, heads, length).cuda().train()
                    with _force_reference(kind == "m2-ref"):
                        make_step = _graphed_step_fn if mode == "graph" else _step_fn
                        step = make_step(model, _inputs(batch, length), masked=kind == "m2-bert")
                        ms = do_bench(step, warmup=50, rep=300, return_mode="median")
                        row.update(ms=ms, tokens_per_s=batch * length / (ms / 1e3), host_ms=_host_ms(step))
                        if mode == "eager":
                            row["peak_gib_batch"] = _peak_gib(step)
                            row["peak_gib_b1"] = _peak_gib(_step_fn(model, _inputs(1, length, 1), kind == "m2-bert"))
                except torch.cuda.OutOfMemoryError:
                    row["error"] = "OOM"
                except Exception as exc:  # record and go on: one failing configuration must not hide the rest
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                finally:
                    model = step = None  # noqa: F841
                    torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    by = {(r["model"], r["mode"], r["L"]): r for r in rows}
    lines = ["| L | batch | model | mode | step ms | host ms | tokens/s | peak GiB (batch) | peak GiB (B=1) "
             "| speed-up vs Transformer (same mode) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        head = f"| {r['L']:,} | {r['batch']} | {r['model']} | {r['mode']} |"
        if "error" in r:
            lines.append(f"{head} {r['error']} | | | | | |")
            continue
        base = by.get(("transformer", r["mode"], r["L"]))
        ratio = f"{base['ms'] / r['ms']:.2f}×" if base and "ms" in base else "—"
        peaks = (f"{r['peak_gib_batch']:.2f} | {r['peak_gib_b1']:.3f}" if "peak_gib_batch" in r else "— | —")
        lines.append(f"{head} {r['ms']:.2f} | {r['host_ms']:.2f} | {r['tokens_per_s'] / 1e6:.2f} M | {peaks} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for bench_m2.json")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536],
                    help="sequence lengths L to time, in tokens (default: 1024 4096 16384 65536)")
    ap.add_argument("--tokens", type=int, default=65536, help="tokens per step (batch = tokens // L)")
    ap.add_argument("--width", type=int, default=256, help="d_model of every model (default: 256)")
    ap.add_argument("--depth", type=int, default=4, help="layers of every model (default: 4)")
    ap.add_argument("--heads", type=int, default=4, help="attention heads of the Transformer (default: 4)")
    ap.add_argument("--models", nargs="+",
                    default=["m2", "m2-ref", "m2-dense", "m2-blockdiag", "m2-bert", "transformer"],
                    help="models to time: m2, m2-ref, m2-dense and m2-blockdiag (M2 with dense or block-diagonal "
                         "MLP layers), m2-bert, transformer (default: all six)")
    ap.add_argument("--cuda-graphs", action="store_true", help="also time each model's step replayed from a CUDA graph")
    args = ap.parse_args(argv)
    require_cuda(ap)
    try:
        checks = check_dispatch(args.width, args.depth, 4096)
    except Exception as exc:  # report, then still time what runs
        checks = [{"error": f"{type(exc).__name__}: {str(exc)[:300]}"}]
    for c in checks:
        print(json.dumps(c), flush=True)
    rows = bench(args.lengths, args.tokens, args.width, args.depth, args.heads, args.models, args.cuda_graphs)
    meta = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
        "fftconv_path": fftconv_path(),
        "width": args.width, "depth": args.depth, "heads": args.heads, "tokens_per_step": args.tokens,
        "dtype": "bf16 autocast, fp32 params", "timing": "triton.testing.do_bench median, fwd+bwd",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "bench_m2.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "checks": checks, "rows": rows}, indent=1))
    tmp.replace(args.out / "bench_m2.json")
    print(json.dumps(meta))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
