"""kernels/portability.py: a kernel's Triton IR from a cache folder rebuilt for other GPUs, with the shared
memory each build takes checked against the target's per-block limit. Built offline (Triton's bundled
ptxas, no GPU): a small kernel fits everywhere, a 5-stage 128x128x64 fp16 matmul (4 x 32 KiB of operand
buffers in flight) fits an A100 and an H100 but not an sm_86/sm_89 card's 99 KiB. The cache is filled in a
subprocess, since the suite runs Triton's interpreter, which compiles nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genomix.kernels import portability

_FILL = r'''
import sys
try:
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
except ImportError:
    print("NO-CUDA-BACKEND")
    raise SystemExit(0)
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget


@triton.jit
def _scale(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets, mask=offsets < n) * 2.0, mask=offsets < n)


@triton.jit
def _matmul(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows, cols, inner = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rows[:, None] * K + (k + inner)[None, :])
        b = tl.load(b_ptr + (k + inner)[:, None] * BN + cols[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rows[:, None] * BN + cols[None, :], acc)


BUILDS = {
    "scale": (_scale, {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32"}, {"BLOCK": 1024}, {"num_warps": 4}),
    "matmul": (_matmul, {"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "K": "i32"},
               {"BM": 128, "BN": 128, "BK": 64}, {"num_warps": 8, "num_stages": 5}),
}
for name in sys.argv[1:]:
    kernel, signature, constexprs, options = BUILDS[name]
    signature = {**signature, **{key: "constexpr" for key in constexprs}}
    aligned = {(i,): [["tt.divisibility", 16]] for i, arg in enumerate(kernel.arg_names)
               if arg.endswith("_ptr") or arg == "K"}  # as fresh tensors and the launcher's specialisation give
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=aligned)
    triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
'''


def _fill_cache(cache: Path, *kernels: str) -> None:
    """Compile ``kernels`` for sm_90 into the Triton cache folder ``cache``, as a GPU run would leave it."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GENOMIX_FORCE_TRITON")}
    env["TRITON_CACHE_DIR"] = str(cache)
    script = cache.parent / "fill_cache.py"  # Triton reads a jit function's source from its file
    script.write_text(_FILL)
    run = subprocess.run([sys.executable, str(script), *kernels], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    if run.stdout.strip() == "NO-CUDA-BACKEND":
        pytest.skip("this Triton build has no CUDA backend to compile with")


def test_a_small_kernel_fits_every_target_and_a_deep_pipeline_only_the_large_ones(tmp_path):
    cache = tmp_path / "cache"
    _fill_cache(cache, "scale", "matmul")
    kernels = portability.cached_kernels(cache)
    assert [k.name for k in kernels] == ["_matmul", "_scale"]
    assert kernels[0].options["num_stages"] == 5 and kernels[0].options["num_warps"] == 8

    results = {(r.kernel, r.target): r for r in portability.check(cache, (80, 86, 90))}
    assert all(results["_scale", target].fits for target in (80, 86, 90))
    assert results["_matmul", 80].fits and results["_matmul", 90].fits
    over = results["_matmul", 86]
    assert not over.fits and over.error is None and over.shared > portability.SHARED_LIMIT[86]
    assert results["_scale", 90].registers and results["_scale", 90].stack == 0


def test_the_command_writes_its_table_and_fails_on_a_kernel_over_a_limit(tmp_path, capsys):
    cache = tmp_path / "cache"
    _fill_cache(cache, "matmul")
    entries = sorted(str(p) for p in cache.rglob("*"))
    assert portability.main(["check", str(cache), "--targets", "89", "90", "--out", str(tmp_path / "out")]) == 1
    summary = capsys.readouterr().out
    assert "| _matmul | sm_89 | 1 | 128.0 | 99 | 0 | 1 |" in summary and "| _matmul | sm_90 | 1 |" in summary
    assert portability.main(["check", str(cache), "--targets", "89", "--all"]) == 1
    table = capsys.readouterr().out
    assert "| _matmul | sm_89 (L4/L40/RTX 40) |" in table and "**over the limit**" in table
    saved = json.loads((tmp_path / "out" / "portability.json").read_text())
    assert [(r["kernel"], r["target"]) for r in saved] == [("_matmul", 89), ("_matmul", 90)]
    assert sorted(str(p) for p in cache.rglob("*")) == entries  # the rebuilds went to a scratch cache


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no Triton kernels"):
        portability.check(tmp_path, (86,))
