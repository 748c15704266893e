"""Where the two-level convolution's forward spends its time, and the Triton levels' launch-shape sweep (GPU).

For each length: the forward of the one-level cuFFT path (the default) and of the opt-in two-level path
(``fftconv/two_level.py``); for each (tile, columns, warps) of the Triton levels in the sweep, the whole
two-level forward (checked against the float64 reference first) and each of its stages timed alone
(norms, the first Triton level with its fused pad, cuFFT's level, the filter's spectrum, product, cuFFT's
inverse level, the last Triton level with its fused epilogue; the three-level path switched off). Where
the three-level forward (``fftconv/three_level.py``) takes the shape, the same for it at each of the
``--middles`` settings (stages: norms, paired first level, the filter's spectrum, the pair scales, the middle
level with the product, the paired last level). bf16 u, fp32 filter and D, B*H*L = 256 M. Prints a table
and writes JSON to ``--out``.

    PYTHONPATH=. python kernels/bench_two_level.py --out OUTDIR [--lengths 1048576] [--sweep 16,16,4,16,1,0 16,16,4,8,1,1]
        [--products 8,256,4 16,256,4] [--middles 16,4,128 8,4,0]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import triton
import triton.testing

from genomix.kernels.bench_common import require_cuda
from genomix.kernels.bench_scan import copy_bandwidth, write_json
from genomix.kernels.fftconv import cufft_fused, fftconv_ref, three_level, two_level
from genomix.kernels.bench_fftconv import benchmark_shape
from genomix.kernels.dispatch import environment


def _ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def _settings(tile: int, columns: int, warps: int, inverse_columns: int | None = None, dots: int = 1,
              inverse_dots: int = 1, maxnreg: int = 0, inverse_maxnreg: int = 0, half_math: int = 0,
              inverse_half_math: int = 0) -> None:
    two_level.TILE, two_level.COLUMNS, two_level.ROW_WARPS = tile, columns, warps
    two_level.DOTS, two_level.INVERSE_DOTS = dots, inverse_dots
    two_level.MAXNREG, two_level.INVERSE_MAXNREG = maxnreg or None, inverse_maxnreg or None
    two_level.HALF_MATH, two_level.INVERSE_HALF_MATH = bool(half_math), bool(inverse_half_math)
    two_level.INVERSE_COLUMNS = columns if inverse_columns is None else inverse_columns


def _defaults() -> tuple[int, ...]:
    """The current Triton-level settings as a sweep entry."""
    return (two_level.TILE, two_level.COLUMNS, two_level.ROW_WARPS, two_level.INVERSE_COLUMNS, two_level.DOTS,
            two_level.INVERSE_DOTS, two_level.MAXNREG or 0, two_level.INVERSE_MAXNREG or 0,
            int(two_level.HALF_MATH), int(two_level.INVERSE_HALF_MATH))


def _operands(u, k, D) -> tuple:
    """(plan, scale, first-level rows, signal, filter spectrum with D folded in, product factor, n_inv) of the
    two-level forward of (u, k, D) at the current settings."""
    plan = cufft_fused._plan(u, False)
    norm, scale = cufft_fused._row_range(plan, u)
    x_rows = two_level.first_level(u, None, scale, plan)
    x = cufft_fused._Signal(cufft_fused._fft(x_rows, inverse=False), scale, norm)
    kf = two_level._filter_spectrum(k, plan, False, skip=D)
    factor, n_inv = cufft_fused._half_product_scales(plan, x, kf, batch_summed=False)
    return plan, scale, x_rows, x, kf, factor, n_inv


def _product(x, kf, factor, out) -> None:
    """The forward's spectral product of ``x`` and ``kf``, written into ``out``."""
    flat = two_level._flat
    cufft_fused.packed_product(flat(x.spectrum), flat(kf.spectrum), flat(out), factor=factor,
                               inner_tile=two_level._level(x.spectrum.shape[-2]))


def stages(u, k, D) -> dict:
    """ms of each stage of the two-level forward at the current settings (the in-place stages run on a
    scratch copy; their results are not used)."""
    plan, scale, x_rows, x, kf, factor, n_inv = _operands(u, k, D)
    out = torch.empty_like(u)
    scratch = x.spectrum.clone()
    return {
        "norms": _ms(lambda: cufft_fused._row_range(plan, u)),
        "first_level": _ms(lambda: two_level.first_level(u, None, scale, plan)),
        "outer_fft": _ms(lambda: cufft_fused._fft(x_rows, inverse=False)),
        "filter": _ms(lambda: two_level._filter_spectrum(k, plan, False, skip=D)),
        "product": _ms(lambda: _product(x, kf, factor, scratch)),
        "outer_ifft": _ms(lambda: cufft_fused._fft(x.spectrum, inverse=True)),
        "last_level": _ms(lambda: two_level.last_level(x_rows, n_inv, None, out)),
    }


def three_level_stages(u, k, D) -> dict:
    """ms of each stage of the three-level forward (paired rows; the middle level in place on a scratch
    copy)."""
    plan = cufft_fused._plan(u, False)
    pairs, split = (u.shape[0] + 1) // 2, three_level._split(plan.n)
    norm, scale = cufft_fused._row_range(plan, u)
    rows = two_level.first_level(u, None, scale, plan, pairs=pairs, split=split)
    kf = three_level._filter_spectrum(k, plan, False, None, skip=D)
    factor, n_inv = three_level._pair_scales(plan, cufft_fused._Signal(rows, scale, norm), kf, pairs)
    scratch = rows.clone()
    out = torch.empty_like(u)
    return {
        "norms": _ms(lambda: cufft_fused._row_range(plan, u)),
        "first_level": _ms(lambda: two_level.first_level(u, None, scale, plan, pairs=pairs, split=split)),
        "filter": _ms(lambda: three_level._filter_spectrum(k, plan, False, None, skip=D)),
        "scales": _ms(lambda: three_level._pair_scales(plan, cufft_fused._Signal(rows, scale, norm), kf, pairs)),
        "middle": _ms(lambda: three_level.middle(scratch, kf.spectrum, factor)),
        "last_level": _ms(lambda: two_level.last_level(rows, n_inv, None, out, pairs=pairs)),
    }


def middle_shapes(fwd, u, k, D, want, shapes: list[tuple[int, ...]]) -> list[dict]:
    """The three-level forward ``fwd`` (error against float64, ms) and its stages for each (rows per
    program, warps, register cap; 0: none[, dots per complex product]) of :func:`.three_level.middle`
    (restored afterwards)."""
    saved = (three_level.MIDDLE_ROWS, three_level.MIDDLE_WARPS, three_level.MIDDLE_MAXNREG,
             three_level.MIDDLE_DOTS)
    rows = []
    try:
        for shape in shapes:
            dots = {width: shape[3] for width in saved[3]} if len(shape) > 3 else saved[3]
            (three_level.MIDDLE_ROWS, three_level.MIDDLE_WARPS, three_level.MIDDLE_MAXNREG,
             three_level.MIDDLE_DOTS) = shape[0], shape[1], shape[2] or None, dots
            row = {"rows": shape[0], "warps": shape[1], "maxnreg": shape[2], "dots": dots}
            try:
                row["rel_err_vs_ref"] = float((fwd().double() - want).norm() / want.norm())
                row["fwd_ms"] = _ms(fwd)
                row["stages_ms"] = three_level_stages(u, k, D)
            except Exception as e:  # a shape that does not compile still leaves the others' numbers
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        (three_level.MIDDLE_ROWS, three_level.MIDDLE_WARPS, three_level.MIDDLE_MAXNREG,
         three_level.MIDDLE_DOTS) = saved
    return rows


def product_shapes(u, k, D, shapes: list[tuple[int, int, int]]) -> list[dict]:
    """ms of the two-level spectral product alone for each (rows per program, block, warps) of
    :func:`.cufft_fused.packed_product` (the module's constants, restored afterwards)."""
    _, _, _, x, kf, factor, _ = _operands(u, k, D)
    scratch = x.spectrum.clone()
    saved = cufft_fused.PACKED_ROWS, cufft_fused.PACKED_BLOCK, cufft_fused.PACKED_WARPS
    rows = []
    try:
        for shape in shapes:
            cufft_fused.PACKED_ROWS, cufft_fused.PACKED_BLOCK, cufft_fused.PACKED_WARPS = shape
            rows.append({"rows": shape[0], "block": shape[1], "warps": shape[2],
                         "ms": _ms(lambda: _product(x, kf, factor, scratch))})
    finally:
        cufft_fused.PACKED_ROWS, cufft_fused.PACKED_BLOCK, cufft_fused.PACKED_WARPS = saved
    return rows


def bench_length(L: int, sweep: list[tuple[int, ...]], products: list[tuple[int, int, int]],
                 middles: list[tuple[int, ...]]) -> dict:
    B, H = benchmark_shape(L)
    u = torch.randn(B, H, L, device="cuda").to(torch.bfloat16)
    k = torch.randn(H, L, device="cuda") / L ** 0.5
    D = torch.randn(H, device="cuda")
    want = fftconv_ref(u, k, D).double()
    row: dict = {"L": L, "B": B, "H": H}

    def fwd():
        with torch.no_grad():
            return cufft_fused.fftconv_cufft(u, k, D)

    default = _defaults()
    row["ref_fwd_ms"] = _ms(lambda: fftconv_ref(u, k, D))
    with two_level.switched_on(False):
        row["one_level_fwd_ms"] = _ms(fwd)
    if three_level.applies(cufft_fused._plan(u, False), B):
        with two_level.switched_on():
            default_middle = (three_level.MIDDLE_ROWS, three_level.MIDDLE_WARPS, three_level.MIDDLE_MAXNREG or 0)
            row["three_level"] = middle_shapes(fwd, u, k, D, want, middles or [default_middle])
    row["variants"] = []
    for setting in sweep:
        _settings(*setting)
        v: dict = {"tile": setting[0], "columns": setting[1], "warps": setting[2],
                   "inverse_columns": two_level.INVERSE_COLUMNS, "dots": two_level.DOTS,
                   "inverse_dots": two_level.INVERSE_DOTS, "maxnreg": two_level.MAXNREG,
                   "inverse_maxnreg": two_level.INVERSE_MAXNREG,
                   "half_math": two_level.HALF_MATH, "inverse_half_math": two_level.INVERSE_HALF_MATH}
        try:
            with two_level.switched_on(), environment({three_level.ENV_SWITCH: "0"}):
                v["rel_err_vs_ref"] = float((fwd().double() - want).norm() / want.norm())
                v["fwd_ms"] = _ms(fwd)
                v["stages_ms"] = stages(u, k, D)
        except Exception as e:  # a shape that does not compile still leaves the others' numbers
            v["error"] = f"{type(e).__name__}: {e}"[:300]
        row["variants"].append(v)
        print(json.dumps(v), flush=True)
        torch.cuda.empty_cache()
    _settings(*default)
    if products:
        row["products"] = product_shapes(u, k, D, products)
    return row


def _print_forward(name: str, v: dict, ref_ms: float) -> None:
    """One forward setting's line: ms, speed-up, error and its stages (or why it failed)."""
    if "error" in v:
        print(f"  {name}: FAILED {v['error']}")
        return
    st = " ".join(f"{k} {t:.2f}" for k, t in v["stages_ms"].items())
    print(f"  {name}: {v['fwd_ms']:.2f} ms ({ref_ms / v['fwd_ms']:.2f}x ref), err {v['rel_err_vs_ref']:.1e} | {st}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".",
                    help="folder for bench_two_level.json (created if missing; default: current folder)")
    ap.add_argument("--lengths", type=int, nargs="*", default=[1 << 20],
                    help="sequence lengths L to time (default: 1048576)")
    ap.add_argument("--sweep", nargs="*", default=None,
                    help="tile,columns,warps[,inverse columns[,dots[,inverse dots[,maxnreg[,inverse maxnreg[,half math[,"
                         "inverse half math]]]]]]] of the Triton levels (inverse columns: as columns; dots per complex "
                         "product: 1 (real embedding), 3 (Gauss) or 4 (chained), default 1; register caps, 0: none; "
                         "half math 1: fp16 work between the dots). Default: the module's settings")
    ap.add_argument("--middles", nargs="*", default=[],
                    help="rows,warps,maxnreg[,dots] of the three-level path's middle level (three_level.MIDDLE_*; "
                         "maxnreg 0: none; dots per complex product 1, 3 or 4 at every middle width), at lengths and batches it takes. "
                         "Default: the module's settings")
    ap.add_argument("--products", nargs="*", default=[],
                    help="rows,block,warps of the spectral product (cufft_fused.PACKED_*), each timed alone")
    args = ap.parse_args()
    require_cuda(ap)
    sweep = [tuple(int(x) for x in s.split(",")) for s in args.sweep] if args.sweep else [_defaults()]
    products = [tuple(int(x) for x in s.split(",")) for s in args.products]
    middles = [tuple(int(x) for x in s.split(",")) for s in args.middles]
    torch.manual_seed(0)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "copy_bandwidth_TBps": copy_bandwidth() / 1e12, "rows": [bench_length(L, sweep, products, middles) for L in args.lengths]}
    write_json(Path(args.out) / "bench_two_level.json", result)
    print(f"{result['device']}, copy {result['copy_bandwidth_TBps']:.2f} TB/s; bf16, forward ms")
    for r in result["rows"]:
        print(f"L={r['L']} ({r['B']}, {r['H']}): reference {r['ref_fwd_ms']:.2f}, one level {r['one_level_fwd_ms']:.2f}")
        for v in r["variants"]:
            _print_forward(f"T={v['tile']} KB={v['columns']}/{v['inverse_columns']} w={v['warps']} dots {v['dots']}/{v['inverse_dots']} regs {v['maxnreg']}/{v['inverse_maxnreg']} fp16 math {int(v['half_math'])}/{int(v['inverse_half_math'])}",
                           v, r["ref_fwd_ms"])
        for m in r.get("three_level", []):
            _print_forward(f"three levels, middle rows={m['rows']} w={m['warps']} regs {m['maxnreg']} dots {m['dots']}", m,
                           r["ref_fwd_ms"])
        for p in r.get("products", []):
            print(f"  product rows={p['rows']} block={p['block']} warps={p['warps']}: {p['ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
