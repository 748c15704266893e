"""What a file's first and last bytes say about its compression, for the readers that take plain or gzipped
input by content rather than by name (FASTA, BED, VCF, task tables) and for bgzip (BGZF: gzip in independent
blocks, which htslib's indexes need).

A bgzip file ends with an empty block, :data:`BGZF_EOF`: its writer appends it, and a reader uses its absence to
tell a file cut at a block boundary, which gzip alone cannot notice (the blocks before the cut are complete gzip
members).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputFormatError

GZIP_MAGIC = b"\x1f\x8b"
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with the gzip magic (bgzip files do too: they are multi-member gzip)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def is_bgzf(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts with a BGZF block: deflate gzip with an extra field whose first subfield is the
    'BC' one that bgzip writes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return len(head) == 16 and head[:3] == GZIP_MAGIC + b"\x08" and bool(head[3] & 4) and head[12:14] == b"BC"


def ends_with_bgzf_eof(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends with bgzip's end-of-file block (:data:`BGZF_EOF`)."""
    with open(Path(path), "rb") as fh:
        fh.seek(max(fh.seek(0, os.SEEK_END) - len(BGZF_EOF), 0))
        return fh.read() == BGZF_EOF


def require_complete_bgzf(path: str | os.PathLike) -> None:
    """Refuse a BGZF file (bgzip FASTA or VCF, BCF) that lacks its end-of-file block: htslib writes whole blocks,
    so a copy cut between them (a killed ``bgzip`` or ``bcftools view -Oz``, an interrupted transfer) decompresses
    without error, and the records after the cut would be missing unnoticed. Other files pass."""
    if is_bgzf(path) and not ends_with_bgzf_eof(path):
        raise InputFormatError(f"{path}: the bgzip file lacks its end-of-file block, so it is truncated and records "
                               "after the cut would be missing; compress, copy or download it again (a complete "
                               "file passes `bgzip -t`)")
