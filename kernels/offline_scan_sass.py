"""Compile the selective-scan kernels for an H100/H200 (sm_90a) on a machine without a GPU, and count what
they issue.

Triton compiles for a CUDA target wherever its NVIDIA backend is installed, and ships ``ptxas`` and
``cuobjdump``. For one kernel at the benchmark's flags (bf16 u/Δ/z, z, D, Δ-bias, softplus, fast math; 16-byte
aligned pointers and E, L multiples of 16, which Triton specialises on), this prints the registers and
spills (``cuobjdump --dump-resource-usage``), the SASS instruction count, every loop (a backward branch) with
its length and commonest opcodes, and optionally the TTGIR's layouts. These are the offline numbers in
kernels/scan/NOTES.md; a GPU call is still what decides (a count is not a time).

    PYTHONPATH=. python kernels/offline_scan_sass.py seq-fwd --const SUMMARY=True --maxnreg 128
    PYTHONPATH=. python kernels/offline_scan_sass.py seq-bwd --layouts
    PYTHONPATH=. python kernels/offline_scan_sass.py seq-bwd --loads   # each load's distance to its first use

``--loads`` lists, for every memory load (global, local, shared) in the innermost loops, how many instructions
separate it from the first instruction that reads what it loaded: a load from L2 used a few instructions later
stalls its warp for the whole latency unless other warps fill the scheduler (a static hint; Nsight Compute's
per-instruction stall samples on a GPU say which ones cost time).
"""
from __future__ import annotations

import argparse
import ast
import collections
import re

#: Per kernel: (module, function, constexprs at the benchmark's setting, the pointer arguments holding
#: activations, bf16 in the benchmark).
#: ``BLOCK_E`` follows from the warp count (one channel per thread).
KERNELS = {
    "seq-fwd": ("triton_seq", "_seq_fwd_kernel",
                dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, SAVE_STATES=False, SUMMARY=False,
                     TILE_IO=True, PREFETCH=True, ASM=True, N=16, T=128, HINTS=False, SUB=16, INLINE_PTX=True),
                ("u_ptr", "dt_ptr", "z_ptr", "out_ptr")),
    "seq-bwd": ("triton_seq_bwd", "_seq_bwd_kernel",
                dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, SUMMARY=False, N=16, T=128, S=4,
                     WARP_E=32, WARP_ASM=True, ASM=True, HINTS=False, HAS_DINIT=False, INLINE_PTX=True),
                ("u_ptr", "dt_ptr", "z_ptr", "dout_ptr", "du_ptr", "ddt_ptr", "dz_ptr")),
}

#: Integer arguments known to be multiples of 16 at the benchmark's shapes.
DIVISIBLE = ("E", "L", "L_bc")


#: Opcodes of shared-memory traffic and barriers: in these kernels, layout conversions (a state moved between
#: the layout it is computed in and the one a load or store was given).
_SHARED_MEMORY_OPS = frozenset({"STS", "LDS", "STSM", "LDSM", "BAR"})


def compile_scan_kernel(name: str, warps: int = 1, consts: dict | None = None, maxnreg: int | None = None,
                        divisible: tuple[str, ...] = DIVISIBLE, dtype: str = "bf16"):
    """Triton's compiled kernel (``.asm`` holds "ttgir", "ptx", ...) for sm_90a; ``consts`` override the
    benchmark's constexprs. The activations are ``dtype``; packed B/C
    (``BC_ptr``) are bf16 pairs (int32); other pointers fp32."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget

    module, function, defaults, bf16 = KERNELS[name]
    kernel = getattr(importlib.import_module(f"genomix.kernels.scan.{module}"), function)
    constexprs = {**defaults, "BLOCK_E": 32 * warps, **(consts or {})}
    constexprs = {k: v for k, v in constexprs.items() if k in kernel.arg_names}
    signature, attrs = {}, {}
    for i, arg in enumerate(kernel.arg_names):
        if arg in constexprs:
            signature[arg] = "constexpr"
            continue
        if arg == "BC_ptr":
            signature[arg] = "*i32"
        elif arg.endswith("_ptr"):
            signature[arg] = f"*{dtype}" if arg in bf16 else "*fp32"
        else:
            signature[arg] = "i32"
        if arg.endswith("_ptr") or arg in divisible:  # fresh tensors are 16-byte aligned
            attrs[(i,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": warps, **({"maxnreg": maxnreg} if maxnreg else {})}
    return triton.compile(source, target=GPUTarget("cuda", 90, 128), options=options)


def sass(cubin: bytes) -> tuple[str, list[tuple[int, str]]]:
    """(the kernel's registers and stack bytes, where spills go; [(address, opcode line)]) of the cubin Triton
    built, read with the ``cuobjdump`` Triton itself uses (a ``ptxas`` of our choosing may not read the PTX
    version that Triton emits: triton 3.9 writes PTX for its newer bundled assembler)."""
    from genomix.kernels.portability import cuobjdump, resource_usage

    registers, stack = resource_usage(cubin)
    code = [(int(m.group(1), 16), m.group(2).strip()) for m in
            re.finditer(r"/\*([0-9a-f]{4,6})\*/\s+([^;]*);", cuobjdump(cubin, "-sass"))]
    return f"{registers} registers, {stack} bytes stack (spills)", code


_PREDICATE = re.compile(r"^@!?U?P[0-9T]\s+")


def _operands(line: str) -> tuple[str, list[str]]:
    """(opcode with modifiers, operand texts) of one SASS line, its predicate dropped."""
    op, _, rest = _PREDICATE.sub("", line).strip().partition(" ")
    return op, [part.strip() for part in rest.split(",")] if rest else []


def opcode(line: str) -> str:
    """The opcode of one SASS line, without its predicate and modifiers (``@!P0 LDG.E.64 …`` -> ``LDG``)."""
    return _operands(line.strip())[0].split(".")[0]


def loops(code: list[tuple[int, str]]) -> list[tuple[int, int, list[tuple[str, int]]]]:
    """Every backward branch's loop: (first address, instruction count, commonest opcodes)."""
    found = []
    for address, line in code:
        target = re.search(r"BRA\s+(?:`?\(?)?0x([0-9a-f]+)", line)
        if target and int(target.group(1), 16) < address:
            body = [op for a, op in code if int(target.group(1), 16) <= a <= address]
            found.append((int(target.group(1), 16), len(body), collections.Counter(map(opcode, body)).most_common(12)))
    return found


_LOADS = ("LDG", "LDL", "LDS", "LDSM", "LD")


def _registers(text: str, width: int = 1) -> set[str]:
    """The general registers an operand text names (``R4.64`` is R4 and R5; ``width`` for a destination)."""
    found = set()
    for m in re.finditer(r"\bR(\d+)(\.64)?", text):
        count = 2 if m.group(2) else width
        found.update(f"R{int(m.group(1)) + i}" for i in range(count))
    return found


def load_use_distances(body: list[tuple[int, str]]) -> list[tuple[int, str, int | None]]:
    """For each load in ``body`` (a loop's (address, line) list): (address, opcode, instructions until the first
    later instruction in the body that reads a register it writes; None if none does before the loop ends)."""
    registers = [sass_registers(line) for _, line in body]  # each line's, once
    found = []
    for i, (address, line) in enumerate(body):
        loaded = registers[i][1]
        if not loaded:
            continue
        distance = next((j - i for j in range(i + 1, len(body)) if loaded & registers[j][0]), None)
        found.append((address, _operands(line)[0], distance))
    return found


def sass_registers(line: str) -> tuple[set[str], set[str]]:
    """(the general registers one SASS line reads, those it loads into: empty unless it is a load)."""
    op, operands = _operands(line.strip())
    reads = set().union(*map(_registers, operands[1:] or [""]))
    if op.split(".")[0] not in _LOADS or not operands:
        return reads, set()
    width = 4 if ".128" in op or op.startswith("LDSM") else 2 if ".64" in op else 1
    return reads, _registers(operands[0].split()[0], width)


def innermost_loops(code: list[tuple[int, str]]) -> list[tuple[int, list[tuple[int, str]]]]:
    """(first address, body) of every loop that contains no other loop."""
    spans = [(start, start + 16 * (size - 1)) for start, size, _ in loops(code)]
    inner = [(a, b) for a, b in spans if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in spans)]
    return [(a, [(x, line) for x, line in code if a <= x <= b]) for a, b in inner]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kernel", choices=sorted(KERNELS),
                        help="the scan kernel to compile: seq-fwd (forward, triton_seq) or seq-bwd "
                             "(backward, triton_seq_bwd)")
    parser.add_argument("--warps", type=int, default=1,
                        help="warps per program; BLOCK_E is 32 channels per warp (default: 1)")
    parser.add_argument("--maxnreg", type=int, default=None,
                        help="register cap per thread (default: none, the compiler's choice)")
    parser.add_argument("--const", action="append", default=[], metavar="NAME=VALUE",
                        help="override a constexpr (Python literal), e.g. SUMMARY=True, S=8")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="the activations' dtype")
    parser.add_argument("--layouts", action="store_true", help="print the TTGIR's layout definitions")
    parser.add_argument("--loads", action="store_true",
                        help="each load in the innermost loops with its distance (instructions) to its first use")
    args = parser.parse_args()
    consts = {k: ast.literal_eval(v) for k, v in (c.split("=", 1) for c in args.const)}
    compiled = compile_scan_kernel(args.kernel, args.warps, consts, args.maxnreg, dtype=args.dtype)
    info, code = sass(compiled.asm["cubin"])
    print(f"{args.kernel} {args.dtype} warps={args.warps} maxnreg={args.maxnreg} {consts}: {info}")
    print(f"SASS instructions: {len(code)}")
    shared = collections.Counter(op for op in (opcode(line) for _, line in code) if op in _SHARED_MEMORY_OPS)
    print("shared memory and barriers (layout conversions): "
          + (", ".join(f"{op} {n}" for op, n in sorted(shared.items())) or "none"))
    for start, size, ops in loops(code):
        print(f"loop at 0x{start:x}: {size} instructions; " + ", ".join(f"{op} {n}" for op, n in ops))
    if args.loads:
        for start, body in innermost_loops(code):
            rows = load_use_distances(body)
            print(f"loop at 0x{start:x}: {len(rows)} loads; address opcode distance")
            print("\n".join(f"  0x{a:x} {op} {'-' if d is None else d}" for a, op, d in rows))
    if args.layouts:
        print("\n".join(line for line in compiled.asm["ttgir"].splitlines() if line.startswith("#") and
                        not line.startswith("#loc")))


if __name__ == "__main__":
    main()
