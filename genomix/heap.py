"""Keep glibc's heap from growing with the length of a CPU inference job.

glibc serves a request above its mmap threshold with its own mapping and returns it on free, but every such free
also raises the threshold (up to 32 MiB), so later blocks of that size come from the heap, which keeps the pages
they leave behind. A model run window by window on the CPU allocates and frees the same large activations many
times, and the process's resident memory then grows with the record: 2.1 GB for a 1.6 Mb record where 0.76 GB is
needed (BENCHMARKS.md, "``genomix embed`` peak memory on the CPU"). Fixing the threshold, as
``MALLOC_MMAP_THRESHOLD_`` would at start-up, keeps it flat at no measured cost in time.

The commands that run models over long inputs call :func:`fix_mmap_threshold` when they run on the CPU. It does
nothing off glibc, where the user set ``MALLOC_MMAP_THRESHOLD_`` themselves, or with ``GENOMIX_MMAP_THRESHOLD=off``
(glibc's own behaviour); ``GENOMIX_MMAP_THRESHOLD=<bytes>`` picks another threshold.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
from typing import Mapping

from .errors import ConfigError

#: mallopt's parameter number for the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
#: glibc's own starting threshold; the largest it accepts is 32 MiB on 64-bit builds.
DEFAULT_THRESHOLD = 128 * 1024
MAX_THRESHOLD = 32 * 1024 * 1024
SETTING = "GENOMIX_MMAP_THRESHOLD"

log = logging.getLogger(__name__)


def without_heap_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without glibc's ``MALLOC_*`` settings and :data:`SETTING`: the environment of a process whose heap
    is to behave as genomix leaves it, whatever the caller set (the memory benchmark and its tests)."""
    return {name: value for name, value in environ.items() if not name.startswith("MALLOC_") and name != SETTING}


def requested_threshold() -> int | None:
    """The threshold ``GENOMIX_MMAP_THRESHOLD`` asks for (its default when unset), or None for ``off``."""
    text = os.environ.get(SETTING, "").strip()
    if not text:
        return DEFAULT_THRESHOLD
    if text.lower() == "off":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_THRESHOLD:
        raise ConfigError(f"{SETTING}={text!r}: give a number of bytes from 0 to {MAX_THRESHOLD:,}, or 'off'")
    return value


def fix_mmap_threshold() -> int | None:
    """Fix glibc's mmap threshold for this process; returns the threshold set, or None where it was left alone."""
    threshold = requested_threshold()
    if threshold is None or "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.libc_ver()[0] != "glibc":
        return None
    if ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold) != 1:  # glibc returns 1 on success
        log.debug("glibc refused mmap threshold %d; heap left as it was", threshold)
        return None
    return threshold
