"""kernels/ncu_stalls.py: stall samples from an Nsight Compute source CSV, and the load an instruction waits on."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from genomix.kernels import ncu_stalls

ROOT = Path(__file__).resolve().parents[1]

HEADER = '"Address","Source","stall_long_sb","stall_wait","stall_long_sb (Not Issued)"'
ROWS = [
    ('"0x0"', '"      LDG.E.128 R8, desc[UR4][R2.64]"', 0, 1),
    ('"0x10"', '"      @P0 LDG.E.64 R20, desc[UR4][R4.64]"', 0, 2),
    ('"0x20"', '"      FFMA R1, R3, R5, R6"', 0, 3),
    ('"0x30"', '"      SHF.L.U32 R12, R11, 0x10, RZ"', 40, 0),  # R11: the second word of R8..R11
    ('"0x40"', '"      @!P1 SHF.L.U32 R13, R21, 0x10, RZ"', 10, 5),  # R21: the .64 load's second word
    ('"0x50"', '"      FADD R14, R7, R7"', 0, 4),  # reads nothing any load wrote
]


def _write(path: Path, kernels: int = 2) -> Path:
    lines = []
    for k in range(kernels):
        lines += [f'"Kernel Name","kernel_{k}",', HEADER]
        lines += [",".join([a, s, f'"{ls * (k + 1)}"', f'"{w}"', '"0"']) for a, s, ls, w in ROWS]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_reasons_opcodes_and_the_load_each_instruction_waits_on(tmp_path):
    kernels = ncu_stalls.read_kernels(_write(tmp_path / "source.csv.gz"))
    assert [name for name, _ in kernels] == ["kernel_0", "kernel_1"]
    rows = kernels[1][1]
    assert ncu_stalls.stall_reasons(rows) == {"stall_long_sb": 100, "stall_wait": 15}  # "Not Issued" columns apart
    opcodes = ncu_stalls.by_opcode(rows)
    assert opcodes["SHF"]["stall_long_sb"] == 100 and opcodes["LDG"]["stall_wait"] == 3  # predicates stripped
    assert ncu_stalls.producing_load(rows, 3) == (3, "LDG.E.128 R8, desc[UR4][R2.64]")
    assert ncu_stalls.producing_load(rows, 4) == (3, "@P0 LDG.E.64 R20, desc[UR4][R4.64]")
    assert ncu_stalls.producing_load(rows, 5) is None


def test_a_file_without_kernel_blocks_is_refused(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text(HEADER + "\n")
    with pytest.raises(ValueError, match="no \"Kernel Name\" block"):
        ncu_stalls.read_kernels(path)


def test_the_recorded_backward_profile_reads():
    """The session's own profile (BENCHMARKS.md, "Where the scan waits now"): 39.2 % long-scoreboard samples."""
    path = ROOT / "pipelines/results/h100-2026-12-06-s40/ncu/bwd_source.csv.gz"
    name, rows = ncu_stalls.read_kernels(path)[1]
    reasons = ncu_stalls.stall_reasons(rows)
    assert name == "_seq_bwd_kernel"
    assert round(100 * reasons["stall_long_sb"] / sum(reasons.values()), 1) == 39.2
