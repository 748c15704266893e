"""The seq backward's warp transpose-reduction (inline PTX) assumes a register layout: one channel per
lane, its N = 16 states in order. Triton chooses layouts itself, so this compiles the kernel for sm_90
(offline: Triton's own compiler and ptxas, no GPU; in a subprocess, since the suite runs Triton's
interpreter) with the argument divisibility the launcher allows that path for
(``ops.warp_transpose_applies``: L a multiple of 16) and checks the layout of the PTX operand in the
TTGIR. A Triton version that lays the tensor out otherwise fails here, before it can produce wrong dB/dC
on a GPU (as lengths not divisible by 16 did with triton 3.6)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

_COMPILE = r'''
import sys
try:
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
except ImportError:
    print("NO-CUDA-BACKEND")
    raise SystemExit(0)
from genomix.kernels.offline_scan_sass import compile_scan_kernel

print(compile_scan_kernel("seq-bwd", warps=1, divisible=tuple(sys.argv[1].split(","))).asm["ttgir"])
'''


def _operand_layout(divisible: tuple[str, ...]) -> str:
    """The layout attribute of the transpose-reduction asm's operand in the compiled TTGIR."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GENOMIX_FORCE_TRITON")}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-c", _COMPILE, ",".join(divisible)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    if run.stdout.strip() == "NO-CUDA-BACKEND":
        pytest.skip("this Triton build has no CUDA backend to compile with")
    ttgir = run.stdout
    asm_line = next(line for line in ttgir.splitlines() if "elementwise_inline_asm" in line and "bfly" in line)
    layout = re.search(r"-> tensor<16x32xf32, #(\w+)>", asm_line).group(1)
    return next(line for line in ttgir.splitlines() if line.startswith(f"#{layout} "))


def test_transpose_reduction_operand_is_one_channel_per_lane():
    layout = _operand_layout(divisible=("E", "L", "L_bc"))
    assert "threadsPerWarp = [1, 32]" in layout and "warpsPerCTA = [1, 1]" in layout, layout
    per_thread = int(re.search(r"sizePerThread = \[(\d+), 1\]", layout).group(1))
    assert 16 % per_thread == 0 and "order = [0, 1]" in layout, layout  # states in each thread, in order


def test_load_use_distances_follow_registers_through_a_loop_body():
    """The offline ``--loads`` report: a load's distance is the count of instructions up to the first one that
    reads a register it wrote (a vector load writes several; a ``.64`` operand reads two); a register that is
    only overwritten, or used as an address of a later load, does not end the wait it started."""
    from genomix.kernels.offline_scan_sass import innermost_loops, load_use_distances

    body = [
        (0x00, "LDG.E.128 R8, desc[UR4][R2.64]"),
        (0x10, "@!P0 LDG.E R20, desc[UR4][R8.64]"),  # reads R8/R9 as an address: the first use of the 128-bit load
        (0x20, "MOV R21, RZ"),
        (0x30, "FADD R21, R11, R21"),
        (0x40, "LDS.128 R4, [R30+UR6]"),
        (0x50, "MOV R20, R1"),  # overwrites R20 without reading it
        (0x60, "FFMA R7, R5, R6, R7"),
        (0x70, "BRA 0x40"),
    ]
    assert load_use_distances(body) == [(0x00, "LDG.E.128", 1), (0x10, "LDG.E", None), (0x40, "LDS.128", 2)]
    code = body + [(0x80, "BRA 0x0"), (0x90, "EXIT")]  # 0x40-0x70 inside 0x00-0x80: only the first is innermost
    assert [(start, len(loop)) for start, loop in innermost_loops(code)] == [(0x40, 4)]
