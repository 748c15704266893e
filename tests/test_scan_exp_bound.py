"""The decay-only kernel behind kernels/bench_scan_exp_bound.py in Triton's interpreter: one 2^(Δ A2) per
channel, state and step, summed per segment, on a length that ends inside a segment and a channel count that
ends inside a block (neither the dead steps nor the dead channels may add anything)."""
from __future__ import annotations

import torch

from genomix.kernels.bench_scan_exp_bound import decay_inputs, decay_sums, decay_sums_reference


def test_decay_sums_match_the_reference_on_partial_segments_and_blocks():
    segment = 64
    dt, a2 = decay_inputs(2 * segment + 19, channels=5, n_state=4, device="cpu")
    got = decay_sums(dt, a2, segment, block_e=4, warps=1, fill=float("nan"))
    want = decay_sums_reference(dt, a2, segment)
    assert got.shape == want.shape == (3, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    assert torch.all(want[-1] < want[0])  # the last segment holds fewer steps: the reference's padding adds nothing
