"""Do the Triton kernels build, fit and keep their registers on every NVIDIA GPU we support? Checked offline.

The kernels are tuned and run on H100/H200 (sm_90), whose blocks may take up to 227 KiB of shared memory.
An A100 (sm_80) gives a block 163 KiB, an A10, L4 or RTX 30/40 (sm_86, sm_89) 99 KiB: a kernel config over
that limit fails at launch there with Triton's ``OutOfResources``, and one that spills registers runs, slowly.
This tool answers both questions without such a GPU, or any GPU:

1. **Capture.** :func:`workload` runs every op's forward and backward at the lengths the benchmarks use, in
   fp32 and bf16, on CPU tensors. Triton's driver is replaced by a stand-in that reports the target GPU, and
   the dispatch answers as it would on CUDA on that GPU (``dispatch.on_gpu``, ``dispatch.compute_capability``
   and ``dispatch.l2_cache_bytes`` say the tensors are on it and give its generation and L2 size). Each kernel
   launch then reaches Triton's ``jit_cache_hook`` with exactly what a real launch on that GPU would compile
   (argument types, constexprs, pointer alignment, warps and stages), which is recorded; the hook tells Triton
   to skip the launch, so nothing runs and values do not matter.
2. **Build.** Each recorded specialisation is compiled for its target with Triton's bundled ``ptxas``; shared
   memory comes from the build's metadata, registers and stack (where spills go) from ``cuobjdump``.

``PYTHONPATH=. python kernels/portability.py check --out DIR`` prints per kernel and target the number of
builds, the most shared memory any takes against the target's per-block limit and the most stack, or with
``--all`` every build's row with its registers, constexprs and warps; ``DIR/portability.json`` holds every
build. It exits 1 if any kernel fails to build or exceeds a target's limit, or with ``--spill-limit BYTES`` if
any build's stack is larger.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

#: Shared memory a block may opt in to, in bytes (CUDA C programming guide, "Technical Specifications per
#: Compute Capability"), and the GPUs each target stands for in the table.
SHARED_LIMIT = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448}
TARGET_GPUS = {80: "A100/A30", 86: "A10/A40/RTX 30", 89: "L4/L40/RTX 40", 90: "H100/H200"}
#: The L2 cache the capture reports for each target (launch choices read it): an A100's, A10's, L4's and H100's.
L2_BYTES = {80: 40 << 20, 86: 6 << 20, 89: 48 << 20, 90: 50 << 20}


@dataclass(frozen=True)
class Launch:
    """One kernel specialisation a workload launched: what Triton compiles it from."""

    name: str
    fn: Any = field(repr=False, compare=False)  # the JITFunction
    signature: dict
    constants: dict
    attrs: dict
    options: dict

    @classmethod
    def from_hook(cls, fn: Any, compile: dict) -> "Launch":  # noqa: A002 - Triton's name
        """The launch that Triton's ``jit_cache_hook`` or ``jit_post_compile_hook`` describes with its ``fn``
        (a JitFunctionInfo) and ``compile`` arguments."""
        options = {name: compile[name] for name in ("num_warps", "num_stages", "num_ctas", "enable_fp_fusion")}
        return cls(fn.name, fn.jit_function, dict(compile["signature"]), dict(compile["constants"]),
                   dict(compile["configs"][0]), options)

    def key(self) -> str:
        """What makes two launches the same build (equal keys compile to the same kernel)."""
        return repr((self.name, sorted(self.signature.items()), sorted(self.constants.items()),
                     sorted((k, repr(v)) for k, v in self.attrs.items()), sorted(self.options.items())))

    def describe(self) -> str:
        """The pointers' element types, the constexprs by parameter name and the warps and stages, for the
        table."""
        names = self.fn.arg_names
        constants = ", ".join(f"{names[path[0]]}={value}" for path, value in sorted(self.constants.items())
                              if len(path) == 1 and isinstance(value, (int, str)) and not isinstance(value, bool))
        types = "/".join(sorted({kind[1:] for kind in self.signature.values() if kind.startswith("*")}))
        return f"{types}: {constants}; warps={self.options['num_warps']}, stages={self.options['num_stages']}"


@dataclass(frozen=True)
class TargetResult:
    """What one kernel specialisation takes on one target: shared bytes, registers and stack bytes per thread
    (its spills), or the compile error."""

    kernel: str
    config: str
    target: int
    shared: int | None
    limit: int
    registers: int | None
    stack: int | None
    error: str | None

    @property
    def fits(self) -> bool:
        return self.error is None and self.shared is not None and self.shared <= self.limit


class _StandInDriver:
    """What Triton's launch path asks of its driver before compiling, answered for a GPU that is not here."""

    def __init__(self, target: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", target, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self):
        return self.target


@contextlib.contextmanager
def _as_if_on(target: int, record: Callable[..., bool]) -> Iterator[None]:
    """Within the block, Triton launches go to ``record`` (Triton's ``jit_cache_hook``; returning True skips
    the compile and the launch) as if made on an sm_``target`` GPU, and the dispatch answers for CPU tensors as
    on that GPU (:func:`dispatch.on_gpu`, :func:`dispatch.compute_capability`, :func:`dispatch.l2_cache_bytes`).
    Everything is restored afterwards."""
    import triton
    from triton.runtime.driver import driver

    from genomix.kernels import dispatch

    # each kernel keeps its compiled kernels and binder per device, made for the target of that time: those of a
    # launch this process already made on a real GPU are set aside (it would skip the hook, or bind for that GPU),
    # and those made here, for the stand-in, are dropped afterwards, kernels first imported here included
    saved = {id(kernel): kernel.device_caches for kernel in _jit_functions()}
    for kernel in _jit_functions():
        kernel.device_caches = collections.defaultdict(kernel.create_binder)
    answers = dispatch.on_gpu, dispatch.compute_capability, dispatch.l2_cache_bytes
    previous_hook = triton.knobs.runtime.jit_cache_hook
    previous_driver = driver._active  # None until something asked for it: on a machine without a GPU, no driver
    driver.set_active(_StandInDriver(target))
    triton.knobs.runtime.jit_cache_hook = record
    dispatch.on_gpu = lambda *tensors: True
    dispatch.compute_capability = lambda *tensors: divmod(target, 10)
    dispatch.l2_cache_bytes = lambda device: L2_BYTES[target]
    try:
        yield
    finally:
        dispatch.on_gpu, dispatch.compute_capability, dispatch.l2_cache_bytes = answers
        triton.knobs.runtime.jit_cache_hook = previous_hook
        driver._active = previous_driver
        for kernel in _jit_functions():
            kernel.device_caches = (saved[id(kernel)] if id(kernel) in saved
                                    else collections.defaultdict(kernel.create_binder))


def _jit_functions() -> list:
    """Every Triton ``JITFunction`` in the modules of genomix and its kernels imported so far."""
    import triton

    ours = [module for name, module in list(sys.modules.items()) if name.split(".")[0] in ("genomix", "kernels")]
    return list({id(obj): obj for module in ours for obj in list(vars(module).values())
                 if isinstance(obj, triton.runtime.jit.JITFunction)}.values())


def capture(target: int, lengths: str = "full") -> tuple[list[Launch], list[str]]:
    """The distinct kernel specialisations :func:`workload` launches on an sm_``target`` GPU, and the ops that
    failed (as "label: error")."""
    launches: dict[str, Launch] = {}

    def record(key, repr, fn, compile, is_manual_warmup, already_compiled) -> bool:  # noqa: A002 - Triton's names
        launch = Launch.from_hook(fn, compile)
        launches.setdefault(launch.key(), launch)
        return True

    failures: list[str] = []
    with _as_if_on(target, record):
        workload(failures, lengths)
    return sorted(launches.values(), key=lambda launch: (launch.name, launch.describe())), failures


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


def build(launch: Launch, target: int) -> TargetResult:
    """``launch`` compiled for sm_``target``; a compile error is reported, not raised."""
    import triton
    from triton.backends.compiler import GPUTarget

    limit = SHARED_LIMIT[target]
    try:
        source = triton.compiler.ASTSource(launch.fn, launch.signature, launch.constants, launch.attrs)
        compiled = triton.compile(source, target=GPUTarget("cuda", target, 32), options=launch.options)
        registers, stack = resource_usage(compiled.asm["cubin"])
    except Exception as exc:  # noqa: BLE001 - any failure to build is the finding this tool reports
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return TargetResult(launch.name, launch.describe(), target, None, limit, None, None,
                            f"{type(exc).__name__}: {first_line[:200]}")
    return TargetResult(launch.name, launch.describe(), target, int(compiled.metadata.shared), limit, registers,
                        stack, None)


def check(targets: tuple[int, ...], lengths: str = "full") -> tuple[list[TargetResult], list[str]]:
    """Every specialisation the workload launches on each of ``targets``, built for that target, and the ops that
    failed. The builds go to a temporary Triton cache, so the user's own is left as it was."""
    results, failures = [], []
    with tempfile.TemporaryDirectory() as scratch, _cache_dir(scratch):
        for target in targets:
            launches, failed = capture(target, lengths)
            failures += [f"sm_{target}: {failure}" for failure in failed]
            print(f"sm_{target}: building {len(launches)} kernel specialisation(s)", file=sys.stderr, flush=True)
            results += [build(launch, target) for launch in launches]
    return results, failures


@contextlib.contextmanager
def _cache_dir(path: str) -> Iterator[None]:
    """Triton's cache folder is ``path`` within the block."""
    import triton

    previous = triton.knobs.cache.dir
    triton.knobs.cache.dir = path
    try:
        yield
    finally:
        triton.knobs.cache.dir = previous


def _table(results: list[TargetResult]) -> str:
    """A markdown table: one row per kernel specialisation and target."""
    rows = ["| kernel | config | target | shared KiB | limit KiB | registers | stack B (spills) | result |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        verdict = r.error or ("fits" if r.fits else "**over the limit**")
        shared = f"{r.shared / 1024:.1f}" if r.shared is not None else "-"
        rows.append(f"| {r.kernel} | {r.config} | sm_{r.target} ({TARGET_GPUS[r.target]}) | {shared} | "
                    f"{r.limit / 1024:.0f} | "
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


def _record_failure(label: str, run: Callable[[], None], failures: list[str]) -> None:
    """``run()``, one op's forward and backward; a failure is printed and recorded, and the rest go on."""
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - every op is tried; failures are listed at the end
        failures.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        print(f"portability: FAILED {failures[-1]}", file=sys.stderr, flush=True)


def workload(failures: list[str], lengths: str = "full", device: str = "cpu") -> None:
    """Each op's forward and backward at the benchmarks' lengths (fp32 and bf16), on ``device``: CPU tensors for
    :func:`capture`, whose values do not matter (nothing is launched), or CUDA to compare its launches with a
    real GPU's (the GPU tests). fftconv up to 4M, the selective scan and causal conv up to 1M, the norms and
    GELU-GLU up to 4,096 channels, the implicit filter up to 1M, and with a prepared filter and one generation
    step of each recurrent op up to 1M. ``lengths="small"`` keeps the shortest of each (the tests). A failing
    op is recorded in ``failures`` and the others still run."""
    import torch

    from genomix import kernels as ops
    from genomix.kernels.layer_norm import add_norm

    def make(*shape: int, kind: torch.dtype = torch.float32, grad: bool = True) -> torch.Tensor:
        return torch.zeros(*shape, dtype=kind, device=device).requires_grad_(grad)

    def fftconv(length: int, dtype: torch.dtype) -> None:
        u, d = make(1, 16, length, kind=dtype), make(16)
        ops.fftconv(u, make(16, length), d).float().sum().backward()
        ops.fftconv(u, make(16, 2 * length), d, bidirectional=True).float().sum().backward()

    def scan_and_conv(length: int, dtype: torch.dtype) -> None:
        u, delta, z = (make(1, 512, length, kind=dtype) for _ in range(3))
        A = -torch.arange(1, 17, dtype=torch.float32, device=device).repeat(512, 1).requires_grad_()
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
        z, t = make(length, 5), torch.linspace(0, 1, length, device=device)
        layers = [(make(64, 5), make(64), make(1, 64)), (make(64, 64), make(64), make(1, 64))]
        # tf32: the model is under 16-bit autocast, the only case that takes the filter's kernel
        ops.implicit_filter(z, t, layers, make(256, 64), torch.rand(256, device=device), tf32=True).sum().backward()

    def inference_and_steps(length: int, dtype: torch.dtype) -> None:
        """A prepared-filter convolution (inference) and one generation step of each recurrent op."""
        with torch.no_grad():
            u, k = make(2, 16, length, kind=dtype, grad=False), make(16, length, grad=False)
            ops.fftconv_prepared(u, ops.prepare_filter(k, make(16, grad=False), like=u))
            x, gate = make(2, 512, kind=dtype, grad=False), make(2, 512, kind=dtype, grad=False)
            A = -torch.arange(1, 17, dtype=torch.float32, device=device).repeat(512, 1)
            ops.selective_state_update(make(2, 512, 16, grad=False), x, x, A, make(2, 16, kind=dtype, grad=False),
                                       make(2, 16, kind=dtype, grad=False), make(512, grad=False), gate,
                                       make(512, grad=False))
            ops.causal_conv1d_update(make(2, 512, 4, grad=False), x, make(512, 4, grad=False), make(512, grad=False),
                                     "silu")
            ops.fftconv_update(make(2, 16, length, grad=False), torch.zeros(1, dtype=torch.long, device=device),
                               u[:, :, 0], k, make(16, grad=False))

    small = lengths == "small"
    for dtype in (torch.float32, torch.bfloat16):
        for length in (1_000,) if small else (1_000, 2_048, 4_096, 65_536, 1 << 20, 1 << 22):
            _record_failure(f"fftconv L={length} {dtype}", lambda: fftconv(length, dtype), failures)
        for length in (4_096,) if small else (4_096, 65_536, 1 << 20):
            _record_failure(f"scan+conv L={length} {dtype}", lambda: scan_and_conv(length, dtype), failures)
        for width in (128,) if small else (128, 256, 1024, 4096):
            _record_failure(f"norms+glu N={width} {dtype}", lambda: norms_and_glu(width, dtype), failures)
        for length in (1_000,) if small else (1_000, 65_536, 1 << 20):
            _record_failure(f"inference and steps L={length} {dtype}", lambda: inference_and_steps(length, dtype),
                            failures)
    for length in (1_024,) if small else (1_024, 32_768, 1 << 20):
        _record_failure(f"implicit filter L={length}", lambda: implicit_filter(length), failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    checker = sub.add_parser("check", help="capture the ops' kernel launches per target GPU and build them (offline)")
    checker.add_argument("--out", type=Path, help="write portability.json here")
    checker.add_argument("--targets", type=int, nargs="+", default=sorted(SHARED_LIMIT), choices=sorted(SHARED_LIMIT),
                         help="compute capabilities of the target GPUs: 80 (A100/A30), 86 (A10/A40/RTX 30), "
                              "89 (L4/L40/RTX 40), 90 (H100/H200) (default: all four)")
    checker.add_argument("--lengths", choices=("full", "small"), default="full",
                         help="the benchmarks' lengths (minutes per target), or only the shortest of each op")
    checker.add_argument("--spill-limit", type=int, metavar="BYTES",
                         help="also fail builds whose stack (spills) per thread is larger than this")
    checker.add_argument("--all", action="store_true",
                         help="print every specialisation's row, not the per-kernel summary (the JSON has them all)")
    args = parser.parse_args(argv)
    results, failures = check(tuple(args.targets), args.lengths)
    print(_table(results) if args.all else _summary(results))
    bad = [r for r in results if not r.fits]
    spilling = [r for r in results if args.spill_limit is not None and (r.stack or 0) > args.spill_limit]
    print(f"\n{len(results)} build(s) for {len(args.targets)} target(s): {len(bad)} failing to build or over the "
          f"shared-memory limit" + (f", {len(spilling)} spilling more than {args.spill_limit} B per thread"
                                     if args.spill_limit is not None else "")
          + (f"; {len(failures)} op call(s) failed:\n" + "\n".join(failures) if failures else ""))
    if args.out:
        from genomix.outputs import atomic_write_text, make_output_dir

        make_output_dir(args.out)
        atomic_write_text(args.out / "portability.json", json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 1 if bad or spilling or failures else 0


if __name__ == "__main__":
    sys.exit(main())
