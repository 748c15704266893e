"""kernels/portability.py: the ops' kernel launches captured as a given GPU would make them, without one, and
built for it with Triton's bundled ptxas, with the shared memory each build takes checked against the target's
per-block limit and its stack (spills) reported.

Capture and builds run in a subprocess: the suite runs Triton's interpreter, which compiles nothing and has no
launch hook. On a GPU (``GENOMIX_TEST_GPU=1``) the captured launches are compared with the ones a real run of
the same workload compiles."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genomix.kernels import portability

_ROOT = Path(__file__).resolve().parents[1]

_CAPTURE = r'''
import json, sys
from dataclasses import asdict
try:
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
except ImportError:
    print(json.dumps("NO-CUDA-BACKEND"))
    raise SystemExit(0)
from genomix.kernels import portability

target, build_names = int(sys.argv[1]), sys.argv[2:]
launches, failures = portability.capture(target, "small")
built = [asdict(portability.build(launch, target)) for launch in launches if launch.name in build_names]
print(json.dumps({"names": sorted({launch.name for launch in launches}), "count": len(launches),
                  "failures": failures, "built": built}))
'''

_SYNTHETIC = r'''
import json, sys
from dataclasses import asdict
try:
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
except ImportError:
    print(json.dumps("NO-CUDA-BACKEND"))
    raise SystemExit(0)
import triton
import triton.language as tl
from genomix.kernels import portability


@triton.jit
def _matmul(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows, cols, inner = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rows[:, None] * K + (k + inner)[None, :])
        b = tl.load(b_ptr + (k + inner)[:, None] * BN + cols[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rows[:, None] * BN + cols[None, :], acc)


# a 5-stage 128x128x64 fp16 matmul: 4 x 32 KiB of operand buffers in flight
launch = portability.Launch(
    "_matmul", _matmul, {"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "K": "i32", "BM": "constexpr",
                         "BN": "constexpr", "BK": "constexpr"},
    {(4,): 128, (5,): 128, (6,): 64}, {(i,): [["tt.divisibility", 16]] for i in range(4)},
    {"num_warps": 8, "num_stages": 5, "num_ctas": 1, "enable_fp_fusion": True})
print(json.dumps([asdict(portability.build(launch, target)) for target in (80, 86, 90)]))
'''


def _run(script: str, *args: str, tmp_path: Path, env_extra: dict | None = None) -> object:
    """``script`` run from a file (Triton reads a jit function's source from its file) in a fresh interpreter
    without Triton's interpreter; its last line, JSON, parsed."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GENOMIX_FORCE_TRITON")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env.update(env_extra or {})
    path = tmp_path / "script.py"
    path.write_text(script)
    run = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result == "NO-CUDA-BACKEND":
        pytest.skip("this Triton build has no CUDA backend to compile with")
    return result


def test_every_op_is_captured_as_an_ampere_gpu_would_launch_it_and_builds_there(tmp_path):
    result = _run(_CAPTURE, "80", "_conv_update_kernel", "layer_norm_fwd_kernel", tmp_path=tmp_path)
    assert result["failures"] == []
    # each op's kernels, forward and backward, the prepared convolution and the generation steps
    expected = {"_seq_fwd_kernel", "_seq_bwd_kernel", "causal_conv_fwd_kernel", "causal_conv_bwd_kernel",
                "layer_norm_fwd_kernel", "layer_norm_bwd_kernel", "gelu_glu_fwd_kernel", "gelu_glu_bwd_kernel",
                "implicit_filter_fwd_kernel", "row_conv_kernel", "relayout_kernel", "_state_update_kernel",
                "_conv_update_kernel", "_ring_dot_kernel"}
    assert expected <= set(result["names"]), expected - set(result["names"])
    built = result["built"]
    assert {b["kernel"] for b in built} == {"_conv_update_kernel", "layer_norm_fwd_kernel"}
    for b in built:
        assert b["error"] is None and b["target"] == 80 and b["registers"] > 0 and b["shared"] <= b["limit"]
        assert "warps=" in b["config"]


_ON_CHIP = r'''
import json, sys
try:
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
except ImportError:
    print(json.dumps("NO-CUDA-BACKEND"))
    raise SystemExit(0)
import torch
from genomix import kernels as ops
from genomix.kernels import portability

result = {}
for target in (80, 90):
    launches = {}

    def record(key, repr, fn, compile, is_manual_warmup, already_compiled):
        if fn.name in ("row_conv_kernel", "row_spec_kernel", "row_xspec_kernel"):
            launch = portability.Launch.from_hook(fn, compile)
            launches.setdefault(launch.key(), launch)
        return True

    with portability._as_if_on(target, record):
        for length in (2048, 4096):
            u = torch.zeros(2, 16, length, dtype=torch.bfloat16, requires_grad=True)
            k = torch.zeros(16, length, requires_grad=True)
            ops.fftconv(u, k, torch.zeros(16, requires_grad=True)).float().sum().backward()
    tiles = sorted({dict((l.fn.arg_names[path[0]], value) for path, value in l.constants.items())["A"]
                    for l in launches.values()})
    stack = max(portability.build(l, target).stack for l in launches.values()) if target == 80 else None
    result[target] = {"tiles": tiles, "stack": stack}
print(json.dumps(result))
'''


def test_the_8192_point_on_chip_programs_run_on_hopper_only(tmp_path):
    # their 128-row tiles spill kilobytes per thread before sm_90 (2.8 KB forward, 9.4 KB backward on sm_80), so
    # 16-bit L = 4096 takes cuFFT there; what stays on chip on an A100 spills about 1 KB at most
    result = _run(_ON_CHIP, tmp_path=tmp_path)
    assert result["80"]["tiles"] == [64] and result["90"]["tiles"] == [64, 128]
    assert result["80"]["stack"] <= 1536


def test_a_deep_pipeline_fits_the_large_targets_only(tmp_path):
    results = {r["target"]: r for r in _run(_SYNTHETIC, tmp_path=tmp_path)}
    assert results[80]["error"] is None and results[80]["shared"] <= portability.SHARED_LIMIT[80]
    assert results[90]["error"] is None and results[90]["shared"] <= portability.SHARED_LIMIT[90]
    over = results[86]
    assert over["error"] is None and over["shared"] > portability.SHARED_LIMIT[86]
    assert not portability.TargetResult(**over).fits


def test_the_command_line_fails_builds_past_the_spill_limit(monkeypatch, capsys, tmp_path):
    # the CLI's own logic on made-up results: capture and build are the subprocess tests' work
    spilling = portability.TargetResult("k", "A=1; warps=4, stages=3", 80, 1024, portability.SHARED_LIMIT[80], 255,
                                        512, None)
    fine = portability.TargetResult("k", "A=1; warps=8, stages=3", 80, 1024, portability.SHARED_LIMIT[80], 128,
                                    0, None)
    monkeypatch.setattr(portability, "check", lambda targets, lengths: ([spilling, fine], []))
    assert portability.main(["check", "--targets", "80", "--out", str(tmp_path)]) == 0
    assert portability.main(["check", "--targets", "80", "--spill-limit", "256", "--all"]) == 1
    out = capsys.readouterr().out
    assert "1 spilling more than 256 B per thread" in out and "A=1; warps=4, stages=3" in out
    saved = json.loads((tmp_path / "portability.json").read_text())
    assert [r["stack"] for r in saved] == [512, 0]


_REAL_VS_CAPTURED = r'''
import json
import torch
import triton
from genomix.kernels import portability

real = {}


def record(key, repr, fn, compile, is_manual_warmup, already_compiled):
    launch = portability.Launch.from_hook(fn, compile)
    real.setdefault(launch.key(), launch)


triton.knobs.runtime.jit_post_compile_hook = record
failures = []
portability.workload(failures, "small", device="cuda")
torch.cuda.synchronize()
major, minor = torch.cuda.get_device_capability()
captured, capture_failures = portability.capture(10 * major + minor, "small")
captured = {launch.key(): launch for launch in captured}
print(json.dumps({"failures": failures + capture_failures,
                  "only_real": sorted(real[k].name + " " + real[k].describe() for k in real.keys() - captured.keys()),
                  "only_captured": sorted(captured[k].name + " " + captured[k].describe()
                                          for k in captured.keys() - real.keys()),
                  "count": len(real)}))
'''


@pytest.mark.gpu
def test_captured_launches_are_the_ones_a_real_gpu_compiles(tmp_path):
    result = _run(_REAL_VS_CAPTURED, tmp_path=tmp_path, env_extra={"TRITON_CACHE_DIR": str(tmp_path / "cache")})
    assert result["failures"] == []
    assert result["count"] > 40
    assert result["only_real"] == [] and result["only_captured"] == []
