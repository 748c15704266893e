"""HTTP(S) downloads that resume, verify and never leave a half file under the final name.

Bytes go to ``<dest>.part``. If that file exists (an earlier run was interrupted), the transfer asks
the server for the rest with an HTTP ``Range`` header and appends; a server that ignores ranges
(status 200) makes it start over. Transient failures are retried with resumption. When complete, the
size and checksum (MD5 or SHA-256, whichever is known) are verified; a mismatch deletes the part file
and raises :class:`ChecksumError`. Only a verified file is renamed to ``dest``.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import ChecksumError, DownloadError

CHUNK = 1 << 20
USER_AGENT = "genomix-downloader"


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | Path, md5: str | None = None, sha256: str | None = None,
                size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given size and digests (None = unchecked)."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path}: size {actual_size:,} bytes, expected {size:,}; the file is incomplete "
                            "or corrupt: delete it and download again")
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                raise ChecksumError(f"{path}: {algorithm} {actual} does not match the expected {expected}; "
                                    "the download is corrupt or the source changed: delete it and retry")


def fetch_text(url: str, timeout: float = 60.0, hint: str = "check the network and run the same command again") -> str:
    """GET a small text resource (an ``md5sum.txt`` manifest, a record listing); a failure is a
    :class:`DownloadError` that ends with ``hint``."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}),
                                    timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"could not fetch {url}: {exc!r}; {hint}") from None


def md5_from_manifest(manifest: str, filename: str) -> str | None:
    """The MD5 listed for ``filename`` in an ``md5sum``-style manifest (``<md5>  <name>`` lines)."""
    for line in manifest.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].lstrip("*./") == filename and re.fullmatch(r"[0-9a-fA-F]{32}", parts[0]):
            return parts[0].lower()
    return None


def _transfer(url: str, part: Path, timeout: float, progress) -> int | None:
    """Append the missing bytes of ``url`` to ``part``; returns the total size if the server said it."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part file is already complete
            return offset
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        if offset and resp.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(f"{url}: server answered a resume request with a different range "
                                    f"({resp.headers.get('Content-Range')!r}); delete {part} and retry")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:  # fresh start, or a server without range support: start over
            total = int(length) if length is not None else None
            offset, mode = 0, "wb"
        if progress is not None:
            progress.reset(total=total)
            progress.update(offset)
        with open(part, mode) as fh:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                fh.write(block)
                if progress is not None:
                    progress.update(len(block))
    got = part.stat().st_size
    if total is not None and got < total:  # the connection closed early: transient, resumable
        raise http.client.IncompleteRead(b"", total - got)
    return total


def download(url: str, dest: str | Path, md5: str | None = None, sha256: str | None = None,
             size: int | None = None, retries: int = 3, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` with resume, retries, progress and verification.

    An existing ``dest`` that verifies is reused without network access. Raises :class:`DownloadError`
    when the transfer keeps failing (the ``.part`` file is kept, so running again resumes) and
    :class:`ChecksumError` when the finished file does not verify (the part file is removed).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.exists():
        verify_file(dest, md5, sha256, size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    progress = tqdm(unit="B", unit_scale=True, desc=dest.name, disable=quiet)
    total = None
    try:
        for attempt in range(retries + 1):
            try:
                total = _transfer(url, part, timeout, progress)
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout) as exc:
                have = part.stat().st_size if part.exists() else 0
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL") from None
                if attempt == retries and not have:
                    part.unlink(missing_ok=True)
                    raise DownloadError(
                        f"could not reach {urllib.parse.urlsplit(url).netloc} for {url} "
                        f"({getattr(exc, 'reason', exc)}); nothing was downloaded: check the network, or fetch the "
                        f"file on another machine and put it at {dest}"
                    ) from None
                if attempt == retries:
                    raise DownloadError(
                        f"download of {url} interrupted after {have:,} bytes ({exc}); run the same command "
                        f"again to resume from {part}"
                    ) from None
                time.sleep(min(2 ** attempt, 30) * 0.5)
    finally:
        progress.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"{url}: got {got:,} of {total:,} bytes; run again to resume from {part}")
    try:
        verify_file(part, md5, sha256, size)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
