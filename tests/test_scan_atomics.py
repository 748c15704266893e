"""The dB/dC reduction benchmark's kernel (kernels/bench_scan_atomics.py) in Triton's interpreter: every
program's adds land exactly once, in both modes, on a length that ends in a partial tile."""
from __future__ import annotations

import pytest
import torch

from genomix.kernels.bench_scan_atomics import expected_sums, tile_adds


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "store"])
def test_tile_adds_land_once(atomic):
    programs, length, rows = 3, 700, 4  # one warp: 512-step tiles, the second one partial
    dst = torch.zeros((rows, length) if atomic else (programs, rows, length))
    tile_adds(dst, programs, length, atomic, warps=1, rows=rows)
    assert torch.equal(dst, expected_sums(dst, programs, atomic))
    tile_adds(dst, programs, length, atomic, warps=1, rows=rows)  # a second pass adds (or stores) again
    want = expected_sums(dst, programs, atomic)
    assert torch.equal(dst, 2 * want if atomic else want)
