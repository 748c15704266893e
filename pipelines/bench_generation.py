"""Generation with Mamba, HyenaDNA and causal M2: the recurrent path (prompt prefilled in one pass, then one step per
token; on a GPU with and without the step replayed from a CUDA graph) against the sliding window (the whole
sequence rerun for every token), same run, same model and prompt.

Builds named sizes with fresh weights (fp32), checks that :meth:`prefill` leaves the state that stepping
through the prompt's first ``--agreement-tokens`` tokens one by one leaves (next-token logits and state
tensors, relative max difference), then times greedy :func:`genomix.models.generation.generate` both ways
and checks that the tokens agree (``graphed s`` is the recurrent path with CUDA-graph steps, ``recurrent
s`` without them; on the CPU there are no graphs and both are the eager step; ``graphed, ref ops s``
replays the step with the fused step kernels switched to their PyTorch references; ``ms per token``: the
step alone, after the prefill). Last, beam search with ``--beams`` beams per prompt against greedy generation
of as many rows (each prompt repeated), both on the graphed recurrent path and warmed up: what keeping the
beams costs (their ranking, and the state's rows reordered after every step). A HyenaDNA or M2 state holds
prompt and new tokens (its step is a dot product over all of them). Prints tables and writes JSON. Runs on
CUDA when available, else on the CPU.

    PYTHONPATH=. python pipelines/bench_generation.py --out DIR
    PYTHONPATH=. python pipelines/bench_generation.py --models mamba-7m-1m hyenadna-large-1m --prompt 4096 \
        --new 128 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genomix.cli.option_types import positive_int
from genomix.kernels.bench_common import exit_on_bad_input
from genomix.kernels.dispatch import environment
from genomix.models import build, generation, load_config
from genomix.models.step_graph import ENV_SWITCH, state_tensors, step_function
from genomix.outputs import atomic_write_text, make_output_dir


#: The fused generation-step kernels, named for the dispatch (their PyTorch references when listed in
#: GENOMIX_REFERENCE_OPS).
STEP_OPS = "selective_state_update,causal_conv1d_update,fftconv_update"
#: The fewest new tokens: :func:`_step_ms` times the steps after a warm-up of 3.
MIN_NEW = 4


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _prefill_agreement(model: torch.nn.Module, prompt: torch.Tensor) -> dict:
    """Relative max differences between :meth:`prefill` and token-by-token :meth:`step` over ``prompt``:
    the next-token logits, and the largest over the state tensors that hold anything."""
    batch, length = prompt.shape
    with torch.no_grad():
        filled = model.allocate_state(batch, prompt.device, length)
        got = model.prefill(prompt, filled)
        stepped = model.allocate_state(batch, prompt.device, length)
        for t in range(length):
            want = model.step(prompt[:, t], stepped)
    pairs = zip(state_tensors(filled), state_tensors(stepped))
    return {"prefill_vs_steps_logits": _rel(got, want),
            "prefill_vs_steps_state": max(_rel(a, b) for a, b in pairs if b.abs().max() > 0)}


def _timed(run, cuda: bool):
    """Seconds of ``run()`` (the GPU synchronised before and after) and what it returned."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def _timed_generate(model: torch.nn.Module, prompt: torch.Tensor, new: int, recurrent: bool, graphs: bool = True
                    ) -> tuple[float, torch.Tensor]:
    """Seconds and tokens of greedy generation on the chosen path (``graphs``: the recurrent step from a
    CUDA graph where there is one)."""
    with environment({ENV_SWITCH: "1" if graphs else "0"}):
        return _timed(lambda: generation.generate(model, prompt, new, greedy=True, recurrent=recurrent),
                      prompt.is_cuda)


def _step_ms(model: torch.nn.Module, prompt: torch.Tensor, new: int, graphs: bool) -> float:
    """Milliseconds per token of the recurrent step alone (after the prompt's prefill and a warm-up of 3
    steps, over up to 100 of the ``new`` tokens a state is allocated for): a replayed CUDA graph, or the
    eager step."""
    steps = min(100, new - 3)
    with torch.no_grad(), environment({ENV_SWITCH: "1" if graphs else "0"}):
        state = model.allocate_state(prompt.shape[0], prompt.device, prompt.shape[1] + new)
        model.prefill(prompt, state)
        step = step_function(model, state, prompt.shape[0])
        token = prompt[:, -1]
        for _ in range(3):
            step(token)
        if prompt.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(token)
        if prompt.is_cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mamba-tiny-1k", "mamba-7m-1m", "hyenadna-tiny-1k",
                                                        "hyenadna-large-1m"],
                        help="named model sizes to time, fresh weights (default: mamba-tiny-1k mamba-7m-1m "
                             "hyenadna-tiny-1k hyenadna-large-1m)")
    parser.add_argument("--prompt", type=positive_int, default=768, help="prompt length")
    parser.add_argument("--new", type=positive_int, default=128,
                        help=f"tokens to generate (at least {MIN_NEW}: the step timing warms up on 3 of them)")
    parser.add_argument("--batch", type=positive_int, default=2, help="random prompts per batch (default: 2)")
    parser.add_argument("--beams", type=positive_int, default=4, help="beams per prompt for the beam-search timing")
    parser.add_argument("--agreement-tokens", type=positive_int, default=512,
                        help="prompt tokens stepped one by one against the prefill")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for bench_generation.json (created if missing; default: current folder)")
    args = parser.parse_args(argv)
    if args.new < MIN_NEW:
        parser.error(f"--new must be at least {MIN_NEW}: the step alone is timed after a warm-up of 3 steps")
    with exit_on_bad_input(parser):  # an unknown name is refused before the first model is timed
        for name in args.models:
            load_config(name)
    make_output_dir(args.out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = build(name, task="causal-lm").to(device).eval()
        prompt = torch.randint(7, 11, (args.batch, args.prompt), generator=generator).to(device)
        row = {"model": name, "device": str(device), "batch": args.batch, "prompt": args.prompt, "new": args.new,
               "GENOMIX_TRITON_OPS": os.environ.get("GENOMIX_TRITON_OPS", ""),
               **_prefill_agreement(model, prompt[:, :args.agreement_tokens])}
        _timed_generate(model, prompt, 2, recurrent=True)  # warm-up: kernels compiled, cuBLAS handles made
        row["graphed_s"], graphed = _timed_generate(model, prompt, args.new, recurrent=True)
        with environment({"GENOMIX_REFERENCE_OPS": STEP_OPS}):
            row["graphed_ref_ops_s"], graphed_ref = _timed_generate(model, prompt, args.new, recurrent=True)
        row["recurrent_s"], recurrent = _timed_generate(model, prompt, args.new, recurrent=True, graphs=False)
        row["window_s"], window = _timed_generate(model, prompt, args.new, recurrent=False)
        row["step_ms_graphed"] = _step_ms(model, prompt, args.new, graphs=True)
        row["step_ms_eager"] = _step_ms(model, prompt, args.new, graphs=False)
        with environment({"GENOMIX_REFERENCE_OPS": STEP_OPS}):
            row["step_ms_graphed_ref_ops"] = _step_ms(model, prompt, args.new, graphs=True)
            row["step_ms_eager_ref_ops"] = _step_ms(model, prompt, args.new, graphs=False)
        row["same_tokens"] = all(torch.equal(t, window) for t in (recurrent, graphed, graphed_ref))
        row["beams"] = args.beams
        generation.beam_search(model, prompt, 2, args.beams)  # warm-up: its first call paid one-time costs
        row["beam_search_s"], _ = _timed(lambda: generation.beam_search(model, prompt, args.new, args.beams),
                                         prompt.is_cuda)
        row["greedy_as_many_rows_s"], _ = _timed_generate(model, prompt.repeat_interleave(args.beams, dim=0),
                                                          args.new, recurrent=True)
        rows.append(row)
    atomic_write_text(args.out / "bench_generation.json", json.dumps(rows, indent=1))
    print(f"{'model':<18} {'device':<6} {'B x prompt + new':>18} {'graphed s':>10} {'graphed, ref ops s':>19} "
          f"{'recurrent s':>12} {'window s':>9} {'same':>5} {'logits diff':>12} {'state diff':>11}")
    for r in rows:
        shape = f"{r['batch']} x {r['prompt']} + {r['new']}"
        diffs = f"{r['prefill_vs_steps_logits']:>12.1e} {r['prefill_vs_steps_state']:>11.1e}"
        print(f"{r['model']:<18} {r['device']:<6} {shape:>18} {r['graphed_s']:>10.3f} {r['graphed_ref_ops_s']:>19.3f} "
              f"{r['recurrent_s']:>12.3f} {r['window_s']:>9.2f} {str(r['same_tokens']):>5} {diffs}")
    print(f"\n{'model':<18} ms per token: {'graphed':>8} {'graphed, ref ops':>17} {'eager':>8} {'eager, ref ops':>15}")
    for r in rows:
        print(f"{r['model']:<18} {'':>14} {r['step_ms_graphed']:>8.3f} {r['step_ms_graphed_ref_ops']:>17.3f} "
              f"{r['step_ms_eager']:>8.3f} {r['step_ms_eager_ref_ops']:>15.3f}")
    print(f"\n{'model':<18} {'beams':>5} {'beam search s':>14} {'greedy, as many rows s':>23} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<18} {r['beams']:>5} {r['beam_search_s']:>14.3f} {r['greedy_as_many_rows_s']:>23.3f} "
              f"{r['beam_search_s'] / r['greedy_as_many_rows_s']:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
