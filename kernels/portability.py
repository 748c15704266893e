"""Do the Triton kernels a GPU run compiled also build and fit on other NVIDIA GPUs?

The kernels are tuned and run on H100/H200 (sm_90), whose blocks may take up to 227 KiB of shared memory.
An A100 (sm_80) gives a block 163 KiB, an A10, L4 or RTX 30/40 (sm_86, sm_89) 99 KiB: a kernel config over
that limit fails at launch there with Triton's ``OutOfResources``. This tool answers the question offline,
from the kernels a real run compiled:

1. ``python kernels/portability.py warm`` (on a CUDA machine, with ``TRITON_CACHE_DIR`` pointing at an empty
   folder) runs every op's forward and backward at the lengths the benchmarks use, in fp32 and bf16, so that
   Triton's cache holds each kernel config users hit (the GPU test suite adds the odd shapes).
2. ``python kernels/portability.py check CACHE_DIR --out DIR`` (anywhere Triton and its bundled ``ptxas``
   are installed; no GPU) compiles each cached kernel's Triton IR again for sm_80, sm_86, sm_89 and sm_90
   with the warps and stages it was built with. It prints per kernel and target the most shared memory any
   build takes against the target's per-block limit and the most stack (spills), or with ``--all`` every
   build's row with its registers and any compile error; ``DIR/portability.json`` holds every build. It
   exits 1 if any kernel fails to build or exceeds a target's limit.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: Shared memory a block may opt in to, in bytes (CUDA C programming guide, "Technical Specifications per
#: Compute Capability"), and the GPUs each target stands for in the table.
SHARED_LIMIT = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448}
TARGET_GPUS = {80: "A100/A30", 86: "A10/A40/RTX 30", 89: "L4/L40/RTX 40", 90: "H100/H200"}

#: The options of a cached kernel's metadata that say how it was built (passed on to the recompile).
BUILD_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion")


@dataclass(frozen=True)
class CachedKernel:
    """One kernel in a Triton cache folder: its Triton IR file and the options it was compiled with."""

    name: str
    ttir: Path
    options: dict


@dataclass(frozen=True)
class TargetResult:
    """What one kernel takes on one target: shared bytes, registers and stack bytes per thread (its spills), or
    the compile error."""

    kernel: str
    target: int
    shared: int | None
    limit: int
    registers: int | None
    stack: int | None
    error: str | None

    @property
    def fits(self) -> bool:
        return self.error is None and self.shared is not None and self.shared <= self.limit


def cached_kernels(cache: Path) -> list[CachedKernel]:
    """Every kernel with Triton IR and metadata under ``cache`` (one per compiled specialisation), sorted by
    name; the same IR built twice with the same options is listed once."""
    kernels, seen = [], set()
    for meta_path in sorted(cache.rglob("*.json")):
        if meta_path.name.startswith("__grp__"):
            continue
        ttir = meta_path.with_suffix(".ttir")
        if not ttir.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        options = {key: meta[key] for key in BUILD_OPTIONS if meta.get(key) is not None}
        key = (ttir.read_text(), tuple(sorted(options.items())))
        if key in seen:
            continue
        seen.add(key)
        kernels.append(CachedKernel(meta.get("name", meta_path.stem), ttir, options))
    return sorted(kernels, key=lambda k: k.name)


def cuobjdump(cubin: bytes, option: str) -> str:
    """What the ``cuobjdump`` Triton itself uses prints for ``cubin`` with ``option`` (``-sass``,
    ``--dump-resource-usage``)."""
    import triton

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return subprocess.run([triton.knobs.nvidia.cuobjdump.path, option, str(path)], capture_output=True,
                              text=True, check=True).stdout


def resource_usage(cubin: bytes) -> tuple[int | None, int | None]:
    """(registers, stack bytes per thread, where spills go) of the one kernel in ``cubin``."""
    usage = cuobjdump(cubin, "--dump-resource-usage")
    registers, stack = re.search(r"REG:(\d+)", usage), re.search(r"STACK:(\d+)", usage)
    return (int(registers.group(1)) if registers else None), (int(stack.group(1)) if stack else None)


def compile_for(kernel: CachedKernel, target: int) -> TargetResult:
    """``kernel``'s IR built for sm_``target`` with its own options; a compile error is reported, not raised."""
    import triton
    from triton.backends.compiler import GPUTarget

    limit = SHARED_LIMIT[target]
    try:
        compiled = triton.compile(str(kernel.ttir), target=GPUTarget("cuda", target, 32), options=kernel.options)
        registers, stack = resource_usage(compiled.asm["cubin"])
    except Exception as exc:  # noqa: BLE001 - any failure to build is the finding this tool reports
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return TargetResult(kernel.name, target, None, limit, None, None, f"{type(exc).__name__}: {first_line[:200]}")
    return TargetResult(kernel.name, target, int(compiled.metadata.shared), limit, registers, stack, None)


def check(cache: Path, targets: tuple[int, ...]) -> list[TargetResult]:
    """Every cached kernel under ``cache`` built for each of ``targets``. The rebuilds go to a temporary
    Triton cache, so ``cache`` and the user's own are left as they were."""
    kernels = cached_kernels(cache)
    if not kernels:
        raise SystemExit(f"{cache}: no Triton kernels (a folder of <hash>/<name>.ttir and <name>.json, as "
                         "TRITON_CACHE_DIR holds after a GPU run)")
    before = os.environ.get("TRITON_CACHE_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TRITON_CACHE_DIR"] = scratch
        try:
            return [compile_for(kernel, target) for kernel in kernels for target in targets]
        finally:
            if before is None:
                del os.environ["TRITON_CACHE_DIR"]
            else:
                os.environ["TRITON_CACHE_DIR"] = before


def _table(results: list[TargetResult]) -> str:
    """A markdown table: one row per kernel specialisation and target."""
    rows = ["| kernel | target | shared KiB | limit KiB | registers | stack B (spills) | result |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        verdict = r.error or ("fits" if r.fits else "**over the limit**")
        shared = f"{r.shared / 1024:.1f}" if r.shared is not None else "-"
        rows.append(f"| {r.kernel} | sm_{r.target} ({TARGET_GPUS[r.target]}) | {shared} | {r.limit / 1024:.0f} | "
                    f"{r.registers if r.registers is not None else '-'} | "
                    f"{r.stack if r.stack is not None else '-'} | {verdict} |")
    return "\n".join(rows)


def _summary(results: list[TargetResult]) -> str:
    """A markdown table: per kernel and target, how many specialisations were built, the most shared memory and
    stack (spills) any of them takes, and how many failed or are over the limit."""
    groups: dict[tuple[str, int], list[TargetResult]] = {}
    for r in results:
        groups.setdefault((r.kernel, r.target), []).append(r)
    rows = ["| kernel | target | builds | max shared KiB | limit KiB | max stack B (spills) | failing or over |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for (kernel, target), group in sorted(groups.items()):
        shared = max((r.shared for r in group if r.shared is not None), default=None)
        stack = max((r.stack for r in group if r.stack is not None), default=None)
        rows.append(f"| {kernel} | sm_{target} | {len(group)} | "
                    f"{'-' if shared is None else f'{shared / 1024:.1f}'} | {group[0].limit / 1024:.0f} | "
                    f"{'-' if stack is None else stack} | {sum(not r.fits for r in group)} |")
    return "\n".join(rows)


def _warm_op(label: str, run, failures: list[str]) -> None:
    """``run()``, one op's forward and backward; a failure is printed and recorded, and the rest go on."""
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - every op is tried; failures are listed at the end
        failures.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        print(f"warm: FAILED {failures[-1]}", flush=True)


def warm() -> int:
    """Run each op's forward and backward on CUDA at the benchmarks' lengths (fp32 and bf16), so that the
    Triton cache holds the kernels real runs compile; 1 if any op failed."""
    import torch

    from genomix import kernels as ops
    from genomix.kernels.layer_norm import add_norm

    if not torch.cuda.is_available():
        raise SystemExit("warm needs a CUDA device: it compiles the kernels by running them")
    failures: list[str] = []

    def make(*shape: int, kind: torch.dtype = torch.float32, grad: bool = True) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda") * 0.5).to(kind).requires_grad_(grad)

    def fftconv(length: int, dtype: torch.dtype) -> None:
        u, d = make(1, 16, length, kind=dtype), make(16)
        ops.fftconv(u, make(16, length), d).float().sum().backward()
        ops.fftconv(u, make(16, 2 * length), d, bidirectional=True).float().sum().backward()

    def scan_and_conv(length: int, dtype: torch.dtype) -> None:
        u, delta, z = (make(1, 512, length, kind=dtype) for _ in range(3))
        A = -torch.arange(1, 17, device="cuda", dtype=torch.float32).repeat(512, 1).requires_grad_()
        B, C = make(1, 16, length, kind=dtype), make(1, 16, length, kind=dtype)
        ops.selective_scan(u, delta, A, B, C, make(512), z, make(512)).float().sum().backward()
        ops.causal_conv1d(make(1, 512, length, kind=dtype), make(512, 4), make(512), "silu").float().sum().backward()

    def norms_and_glu(width: int, dtype: torch.dtype) -> None:
        h, weight, bias = make(8, 1024, width, kind=dtype), make(width), make(width)
        summed, normed = add_norm(h, make(8, 1024, width, kind=dtype), weight, rms=True)
        total = ops.layer_norm(h, weight, bias).float().sum() + summed.float().sum() + normed.float().sum()
        (total + ops.gelu_glu(h).float().sum()).backward()
        ops.channel_major(make(2, 4096, width, kind=dtype, grad=False).transpose(1, 2))

    def implicit_filter(length: int) -> None:
        z, t = make(length, 5), torch.linspace(0, 1, length, device="cuda")
        layers = [(make(64, 5), make(64), make(1, 64)), (make(64, 64), make(64), make(1, 64))]
        ops.implicit_filter(z, t, layers, make(256, 64), torch.rand(256, device="cuda")).sum().backward()

    for dtype in (torch.float32, torch.bfloat16):
        for length in (1_000, 4_096, 65_536, 1 << 20, 1 << 22):
            _warm_op(f"fftconv L={length} {dtype}", lambda: fftconv(length, dtype), failures)
        for length in (4_096, 65_536, 1 << 20):
            _warm_op(f"scan+conv L={length} {dtype}", lambda: scan_and_conv(length, dtype), failures)
        for width in (128, 256, 1024, 4096):
            _warm_op(f"norms+glu N={width} {dtype}", lambda: norms_and_glu(width, dtype), failures)
    for length in (1_024, 32_768, 1 << 20):
        _warm_op(f"implicit filter L={length}", lambda: implicit_filter(length), failures)
    torch.cuda.synchronize()
    print(f"warm: {len(failures)} op call(s) failed; kernels in {os.environ.get('TRITON_CACHE_DIR', '~/.triton/cache')}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("warm", help="compile every op's kernels at real lengths (CUDA)")
    checker = sub.add_parser("check", help="rebuild a Triton cache's kernels for other GPUs (offline)")
    checker.add_argument("cache", type=Path, help="the TRITON_CACHE_DIR of a GPU run")
    checker.add_argument("--out", type=Path, help="write portability.json here")
    checker.add_argument("--targets", type=int, nargs="+", default=sorted(SHARED_LIMIT), choices=sorted(SHARED_LIMIT))
    checker.add_argument("--all", action="store_true",
                         help="print every specialisation's row, not the per-kernel summary (the JSON has them all)")
    args = parser.parse_args(argv)
    if args.command == "warm":
        return warm()
    results = check(args.cache, tuple(args.targets))
    print(_table(results) if args.all else _summary(results))
    bad = [r for r in results if not r.fits]
    print(f"\n{len(results) // len(args.targets)} kernel specialisation(s), {len(args.targets)} target(s): "
          f"{len(bad)} failing to build or over the shared-memory limit")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "portability.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
