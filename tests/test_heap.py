"""genomix.heap: glibc's mmap threshold fixed for CPU inference, checked on glibc's own behaviour."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from genomix.errors import ConfigError
from genomix.heap import DEFAULT_THRESHOLD, requested_threshold, without_heap_settings

ROOT = Path(__file__).resolve().parents[1]

# Frees a 4 MiB block (which, under glibc's dynamic threshold, raises the threshold to 4 MiB), then reports how
# many bytes glibc serves by mmap before and after allocating 1 MiB: mapped only while the threshold is fixed.
PROBE = r"""
import ctypes, json
from genomix.heap import fix_mmap_threshold
libc = ctypes.CDLL(None)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
threshold = fix_mmap_threshold()
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(json.dumps({"threshold": threshold, "mapped": libc.mallinfo2().hblkhd - before}))
libc.free(block)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc is what is tuned")


def _probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], env={**without_heap_settings(os.environ),
                                                              "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@glibc_only
def test_a_freed_large_block_no_longer_moves_later_ones_onto_the_heap():
    fixed = _probe()
    assert fixed == {"threshold": DEFAULT_THRESHOLD, "mapped": pytest.approx(1 << 20, abs=8192)}
    left_alone = _probe(GENOMIX_MMAP_THRESHOLD="off")
    assert left_alone == {"threshold": None, "mapped": 0}  # glibc's own rule: the 1 MiB block came from the heap


@glibc_only
def test_the_users_own_glibc_setting_or_threshold_wins():
    assert _probe(MALLOC_MMAP_THRESHOLD_="8388608")["threshold"] is None
    assert _probe(GENOMIX_MMAP_THRESHOLD="65536")["threshold"] == 65536


@pytest.mark.parametrize("text", ["lots", "-1", str(64 << 20)])
def test_a_bad_threshold_setting_is_refused_with_its_range(monkeypatch, text):
    monkeypatch.setenv("GENOMIX_MMAP_THRESHOLD", text)
    with pytest.raises(ConfigError, match="give a number of bytes from 0 to 33,554,432, or 'off'"):
        requested_threshold()
