"""The allocation-trace replay of ``pipelines/profile_model.py --memory-snapshot`` (runs on CPU)."""
from __future__ import annotations

import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "profile_model.py"


def _frames(path: str, line: int) -> list[dict]:
    return [{"filename": "/usr/lib/python3/torch/nn/functional.py", "line": 1, "name": "linear"},
            {"filename": path, "line": line, "name": "forward"}]


def test_alive_at_peak_sums_live_blocks_by_genomix_site():
    alive_at_peak = runpy.run_path(str(SCRIPT))["_alive_at_peak"]
    gib = 2**30
    trace = [
        {"action": "alloc", "addr": 1, "size": 2 * gib, "frames": _frames("/src/genomix/models/hyena.py", 10)},
        {"action": "alloc", "addr": 2, "size": 1 * gib, "frames": _frames("/src/kernels/fftconv/ops.py", 20)},
        {"action": "free_requested", "addr": 2, "size": 1 * gib},  # still alive until completed
        {"action": "alloc", "addr": 3, "size": 3 * gib, "frames": _frames("/src/genomix/models/hyena.py", 10)},
        {"action": "free_completed", "addr": 2, "size": 1 * gib},
        {"action": "free_completed", "addr": 3, "size": 3 * gib},
        {"action": "alloc", "addr": 4, "size": 4 * gib, "frames": []},  # ties the peak: the first time counts
        {"action": "free_completed", "addr": 1, "size": 2 * gib},
    ]
    result = alive_at_peak(trace, base=5 * gib, top=5)
    assert result["before_step_gib"] == 5.0
    assert result["step_peak_gib"] == 6.0
    sites = {row["site"]: (row["gib"], row["blocks"]) for row in result["sites"]}
    assert sites == {"models/hyena.py:10 forward": (5.0, 2), "fftconv/ops.py:20 forward": (1.0, 1)}
