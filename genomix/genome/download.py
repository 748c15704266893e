"""HTTP(S) downloads that resume, verify and never leave a half file under the final name.

Bytes go to ``<dest>.part``. If that file exists (an earlier run was interrupted, Ctrl-C included), the
transfer asks the server for the rest with an HTTP ``Range`` header and appends; a server that ignores
ranges (status 200) makes it start over, and one that answers 416 (range not satisfiable) either confirms
that the part file is already complete or shows that it is not a prefix of the file, which then starts
over. The resume request carries ``If-Range`` with the validator the server gave the first response (a
strong ``ETag``, else ``Last-Modified``, kept in ``<dest>.part.validator``), so a file that changed on the
server since is sent whole and the transfer starts over, instead of splicing two versions.

A server that gives neither validator cannot say whether the file changed, so the part file is resumed only
when a checksum is known (the final check catches a splice): without one it is downloaded again from byte 0,
with a notice saying why. A resumed download that fails its check is downloaded once more from byte 0 (the
resume may have joined two versions) before :class:`ChecksumError` is raised, saying so.

Network failures and server errors (5xx, 408, 429) are retried with resumption; other HTTP errors
and local file errors (a full disk) stop at once, keeping the part file. When complete, the part file is
synced to disk, its size and checksum (MD5 or SHA-256, whichever is known) are verified, and only then is
it renamed to ``dest``; a mismatch removes it (resuming a corrupt file cannot repair it) and raises
:class:`ChecksumError` naming the expected and actual values. Without any checksum the caller is told
(a warning) that the file cannot be verified, instead of a made-up checksum (the genome registry then
records the file's own size and SHA-256 on first use: :func:`genomix.genome.registry.download_pinned`). Such a
``.gz`` file from a server that sent no length, whose early close would look complete, must at least hold a
whole gzip stream.
Processes downloading into one folder take turns (a lock on the folder), so the ranks of a multi-GPU run
that all prepare one genome download it once instead of appending to one part file together.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator, NoReturn

from ..compression import is_gzip
from ..errors import ChecksumError, DownloadError, GenomixError
from ..outputs import make_output_dir
from ..resume import reraise_keeping

CHUNK = 1 << 20
USER_AGENT = "genomix-downloader"
log = logging.getLogger(__name__)
#: HTTP statuses worth retrying besides 5xx: request timeout, too many requests.
RETRY_STATUSES = frozenset({408, 429})


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def file_mismatch(path: Path, md5: str | None = None, sha256: str | None = None,
                  size: int | None = None) -> str | None:
    """What of size, MD5 and SHA-256 (None = unchecked) ``path`` fails, with the expected and actual values,
    None when all match, so that callers can phrase the error for their own case."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size {actual_size:,} bytes, expected {size:,}"
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                return f"{algorithm} {actual} does not match the expected {expected}"
    return None


def verify_file(path: str | Path, md5: str | None = None, sha256: str | None = None,
                size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given size and digests (None = unchecked)."""
    path = Path(path)
    problem = file_mismatch(path, md5, sha256, size)
    if problem is not None:
        raise ChecksumError(f"{path}: {problem}; the file is incomplete, corrupt or from a changed source: "
                            "delete it and download again")


def fetch_text(url: str, timeout: float = 60.0, hint: str = "run the same command again") -> str:
    """GET a small text resource (an ``md5sum.txt`` manifest, a record listing); a failure is a
    :class:`DownloadError` that says what to check (the network, or the address when the server answered that
    nothing is there: a 404 is not a network problem) and ends with ``hint``."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}),
                                    timeout=timeout) as resp:
            return resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        check = ("the server had a problem: try again later" if _retryable(exc) else
                 "the server has nothing at that address: check the URL (it may have moved)")
        raise DownloadError(f"could not fetch {url}: HTTP {exc.code} {exc.reason}; {check}, or {hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"could not fetch {url}: {exc!r}; check the network, or {hint}") from None


def digest_from_manifest(manifest: str, filename: str, algorithm: str = "md5") -> str | None:
    """The ``algorithm`` digest listed for ``filename`` in an ``md5sum``/``sha256sum``-style manifest
    (``<digest>  <name>`` lines; others, ``#`` comments included, are skipped), None when it lists none."""
    digest = re.compile(f"[0-9a-fA-F]{{{2 * hashlib.new(algorithm).digest_size}}}")
    for line in manifest.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].lstrip("*./") == filename and digest.fullmatch(parts[0]):
            return parts[0].lower()
    return None


def _size(path: Path) -> int:
    """Bytes in ``path``, 0 when it is missing."""
    return path.stat().st_size if path.is_file() else 0


@contextlib.contextmanager
def local_writes(part: Path) -> Iterator[None]:
    """Report a local file error (no space, no permission) on ``part`` as a :class:`DownloadError`, so that it
    is neither retried as a network failure nor reported as one; the bytes written so far stay."""
    try:
        yield
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}; free some space (or fix the folder's "
                            "permissions) and run the same command again to resume") from None


def _complete_by_416(part: Path, offset: int, headers) -> bool:
    """Whether a 416 answer to ``bytes=<offset>-`` confirms that ``part`` holds the whole file: the server's
    ``Content-Range: bytes */<size>`` must equal its size. Otherwise the part file is not a prefix of the
    file (it is longer, or the server does not say) and is removed, so that the transfer starts over."""
    match = re.fullmatch(r"bytes \*/(\d+)", (headers or {}).get("Content-Range", "").strip())
    if match and int(match.group(1)) == offset:
        return True
    part.unlink()
    return False


def _validator_file(part: Path) -> Path:
    """Where the validator of the version ``part`` holds is kept, for the ``If-Range`` of a resume."""
    return part.with_name(part.name + ".validator")


def _validator(headers) -> str | None:
    """What identifies this version of the file for ``If-Range``: a strong ``ETag`` (a weak one may not be
    used there), else ``Last-Modified``; None when the server gives neither."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _kept_validator(part: Path) -> str | None:
    """The validator of the version whose start ``part`` holds, or None where the server gave none."""
    record = _validator_file(part)
    return record.read_text() if record.is_file() else None


def _discard(part: Path) -> None:
    """Remove ``part`` and the validator kept beside it."""
    part.unlink(missing_ok=True)
    _validator_file(part).unlink(missing_ok=True)


#: Why a part file is not resumed when neither a validator nor a checksum is known (see :func:`_resumable`).
UNSAFE_RESUME = ("the server names no version of the file (no ETag or Last-Modified) and no checksum is known, so "
                 "appending to it could join two versions of a file that changed in between")


def _resumable(part: Path, verifiable: bool) -> bool:
    """Whether the bytes in ``part`` may be resumed: the server gave a validator (a changed file is then sent
    whole), or a checksum is known (``verifiable``: a splice then fails the final check, which downloads the
    file again from byte 0). Otherwise nothing could tell that the file changed between two requests."""
    return verifiable or _validator_file(part).is_file()


def _resume_advice(part: Path, verifiable: bool) -> str:
    """What the same command run again does with ``part``: resume it, or download from byte 0, and why."""
    have = _size(part)
    if _resumable(part, verifiable):
        return f"run the same command again to resume from {part} ({have:,} bytes kept)"
    return (f"run the same command again to download it from byte 0 (the {have:,} bytes in {part} are not "
            f"resumed: {UNSAFE_RESUME})")


def _transfer(url: str, part: Path, timeout: float, progress, verifiable: bool) -> tuple[int | None, bool]:
    """Append the missing bytes of ``url`` to ``part``, or write it from byte 0 where it may not be resumed
    (:func:`_resumable`: its bytes are then removed, with a one-line notice). Returns the total size if the
    server said it, and whether ``part`` now joins bytes of more than one response (it was resumed), which a
    failed check then distrusts."""
    offset = _size(part)
    if offset and not _resumable(part, verifiable):
        log.warning("%s: downloading from byte 0 instead of resuming the %s bytes in %s: %s", url, f"{offset:,}",
                    part, UNSAFE_RESUME)
        _discard(part)
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    kept = _kept_validator(part) if offset else None  # the version whose start ``part`` holds
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if kept is not None:  # the rest only if it is still the same file, else all of it
            headers["If-Range"] = kept
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        if _complete_by_416(part, offset, exc.headers):
            return offset, True
        return _transfer(url, part, timeout, progress, verifiable)
    with resp:
        resumed = bool(offset) and resp.status == 206
        if resumed:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(f"{url}: server answered a resume request with a different range "
                                    f"({resp.headers.get('Content-Range')!r}); delete {part} and retry")
            total = int(match.group(2)) if match.group(2) != "*" else None
            sent = _validator(resp.headers)
            if kept is not None and sent is not None and sent != kept:  # a server that ignored If-Range
                log.warning("%s: the server sent the rest of another version of the file (%s, where %s holds the "
                            "start of %s); downloading it from byte 0", url, sent, part, kept)
                _discard(part)
                return _transfer(url, part, timeout, progress, verifiable)
        else:  # fresh start, a server without range support, or a file changed since (If-Range): start over
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            offset = 0
        progress.reset(total=total)
        progress.update(offset)
        _save(resp, part, progress, fresh=not resumed)
    got = part.stat().st_size
    if total is not None and got < total:  # the connection closed early: transient, resumable
        raise http.client.IncompleteRead(b"", total - got)
    return total, resumed


def _record_validator(part: Path, validator: str | None) -> None:
    """Keep (or, given None, forget) the validator of the version that ``part`` is being written from."""
    with local_writes(part):
        if validator is None:
            _validator_file(part).unlink(missing_ok=True)
        else:
            _validator_file(part).write_text(validator)


def _save(resp, part: Path, progress, fresh: bool) -> None:
    """Write the body of ``resp`` to ``part``, appended or (``fresh``) in place of what it held, and sync it to
    disk. A fresh start records the validator of its version only once the old bytes are gone, so that no
    interruption (Ctrl-C, a full disk) leaves old bytes beside a new version's validator for a resume to
    extend."""
    with local_writes(part):
        fh = open(part, "wb" if fresh else "ab")
    with fh:
        if fresh:
            _record_validator(part, _validator(resp.headers))
        for block in iter(lambda: resp.read1(CHUNK), b""):  # what has arrived, not a full CHUNK
            with local_writes(part):
                fh.write(block)
            progress.update(len(block))
        with local_writes(part):
            fh.flush()
            os.fsync(fh.fileno())


def _retryable(exc: Exception) -> bool:
    """Network failures and server-side HTTP errors are worth another try; a 404 or 403 is not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in RETRY_STATUSES
    return True


def _failure(url: str, dest: Path, part: Path, exc: Exception, verifiable: bool) -> DownloadError:
    """The error that ends a download after ``exc``, saying what failed and how to go on."""
    have = _size(part)
    if not have:
        _discard(part)
    if isinstance(exc, urllib.error.HTTPError):
        advice = "try again later" if _retryable(exc) else "check the URL"
        return DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; {advice}"
                             + (f", then {_resume_advice(part, verifiable)}" if have else ""))
    if not have:
        return DownloadError(
            f"could not reach {urllib.parse.urlsplit(url).netloc} for {url} ({getattr(exc, 'reason', exc)}); "
            f"nothing was downloaded: check the network, or fetch the file on another machine and put it at {dest}")
    return DownloadError(f"download of {url} interrupted after {have:,} bytes ({exc}); "
                         f"{_resume_advice(part, verifiable)}")


def _fetch_part(url: str, dest: Path, part: Path, retries: int, timeout: float, progress,
                verifiable: bool) -> tuple[int | None, bool]:
    """Run :func:`_transfer` until it completes or ``retries`` retries of retryable failures are spent."""
    attempt = 0
    while True:
        try:
            return _transfer(url, part, timeout, progress, verifiable)
        except GenomixError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if attempt == retries or not _retryable(exc):
                raise _failure(url, dest, part, exc, verifiable) from None
        time.sleep(min(2 ** attempt, 30) * 0.5)
        attempt += 1


def _interrupted(exc: KeyboardInterrupt, url: str, part: Path, verifiable: bool) -> NoReturn:
    """Re-raise Ctrl-C saying what it left: the part file and what the next run does with it, or nothing (an
    empty one is removed)."""
    if not _size(part):
        _discard(part)
        raise KeyboardInterrupt(f"nothing of {url} was downloaded") from None
    reraise_keeping(exc, f"{url}: {_resume_advice(part, verifiable)}")


def _check_gzip_ends(url: str, part: Path) -> None:
    """Refuse a gzip download that stops before the end of its stream. A server that sends no length ends the
    body by closing the connection, so a transfer cut short looks complete; with no checksum to catch it, the
    copy would be trusted on first use (and its record would then refuse the whole file). The stream itself
    says where it ends. The bytes stay in ``part``, for a resume."""
    if not is_gzip(part):
        raise DownloadError(f"{url}: the server sent {_size(part):,} bytes that are not gzip data (an error page, "
                            "or the wrong file?); check the URL and run the same command again")
    try:
        with gzip.open(part, "rb") as stream:
            while stream.read(CHUNK):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise DownloadError(f"{url}: the server sent no length, and the {_size(part):,} bytes received end before "
                            f"their gzip stream does ({exc}), so the transfer was cut short; run the same command "
                            "again") from None


def _check_destination(dest: Path) -> None:
    """Refuse a ``dest`` (or its part file) that is a folder, and make ``dest``'s folder (refused in one line)."""
    for path in (dest, dest.with_name(dest.name + ".part")):
        if path.is_dir():
            raise DownloadError(f"{path} is a folder, not a file: move it away or download somewhere else")
    make_output_dir(dest.parent, option="download folder")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while downloading into it, so that processes started together (the
    ranks of a multi-GPU run preparing one genome) take turns instead of appending to one part file: the first
    downloads, the others then find the verified file. Where there are no such locks (Windows, some network
    file systems) downloads go on unlocked."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process that is downloading into %s", folder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass  # the file system has no locks
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def download(url: str, dest: str | Path, md5: str | None = None, sha256: str | None = None,
             size: int | None = None, retries: int = 3, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` with resume, retries, progress and verification.

    An existing ``dest`` that verifies is reused without network access. Raises :class:`DownloadError`
    when the transfer fails (the ``.part`` file is kept, so running again resumes; where neither a validator
    nor a checksum could catch a file changed in between, it starts over instead), ``KeyboardInterrupt`` saying
    what was kept on Ctrl-C, and :class:`ChecksumError` when the finished file does not verify (the part file is
    removed; a resumed one is first downloaded again from byte 0). Processes downloading into one folder take
    turns.
    """
    dest = Path(dest)
    _check_destination(dest)
    with _folder_lock(dest.parent):
        if dest.exists():
            verify_file(dest, md5, sha256, size)
        else:
            _download_new(url, dest, md5, sha256, size, retries, timeout, quiet)
    return dest


def _download_new(url: str, dest: Path, md5: str | None, sha256: str | None, size: int | None, retries: int,
                  timeout: float, quiet: bool) -> None:
    """The transfer and verification of :func:`download` for a ``dest`` that does not exist yet. A part file
    that joins bytes of several responses (a resume) and fails the check is downloaded once more from byte 0
    before the check's failure is raised: the resume may have spliced two versions of a changed file."""
    from tqdm.auto import tqdm

    verifiable = bool(md5 or sha256)
    if not verifiable:
        log.warning("no checksum is known for %s: the download cannot be verified%s", url,
                    f", only its size ({size:,} bytes)" if size is not None else "")
    part = dest.with_name(dest.name + ".part")

    def fetch_and_check() -> tuple[str | None, bool]:
        """What of the check the fetched part file fails (None: it passes), and whether it was resumed."""
        try:
            with tqdm(unit="B", unit_scale=True, desc=dest.name, disable=quiet) as progress:
                total, resumed = _fetch_part(url, dest, part, retries, timeout, progress, verifiable)
            got = part.stat().st_size
            if total is not None and got != total:
                raise DownloadError(f"{url}: got {got:,} of {total:,} bytes; {_resume_advice(part, verifiable)}")
            if total is None and not verifiable and dest.name.endswith(".gz"):
                _check_gzip_ends(url, part)
            return file_mismatch(part, md5, sha256, size), resumed
        except KeyboardInterrupt as exc:
            _interrupted(exc, url, part, verifiable)

    problem, resumed = fetch_and_check()
    if problem is not None and resumed:
        log.warning("%s: %s after resuming an earlier transfer, which may have joined two versions of the file: "
                    "downloading it again from byte 0", url, problem)
        _discard(part)
        problem, _ = fetch_and_check()
    if problem is not None:
        _discard(part)
        advice = ("run the same command again to download it afresh, and if it fails again the source has changed "
                  "since its checksum was recorded")
        if resumed:
            advice = ("it failed both after resuming an earlier transfer and when downloaded again from byte 0, so "
                      "the source has changed since its checksum was recorded (or the transfer is corrupted on "
                      "the way)")
        raise ChecksumError(f"{url}: {problem}; the download was removed: {advice}")
    os.replace(part, dest)  # before the validator goes: an interruption in between leaves the whole file
    _validator_file(part).unlink(missing_ok=True)
