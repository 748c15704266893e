"""Whether a checkpoint's weight files still hold the bytes they were written with.

safetensors files and torch pickles carry no checksum of their tensors, so a flipped bit (a failing disk, a bad copy)
or a file edited in place loads as other weights with no error at all. genomix's ``save_pretrained`` therefore
writes ``weights.sha256`` (``sha256sum`` format) beside the weights files it saves: exported runs, ``genomix convert``
output and ``push_to_hub`` uploads carry it, and a Hub download of such a checkpoint fetches it too. Loading checks
every weights file it lists once the file has been read, before the model is handed out (a truncated file gets the
reader's own, more specific error); a checkpoint without the record (saved by other code, or published in another
layout) is read unchecked. The check reads each weights file once more, at one core's SHA-256 rate (~1.6 GB/s).
The load paths run it in worker threads while the model is built (:func:`checked_by_the_end`) and wait for it before
the model is returned; ``pipelines/bench_weights_check.py`` measures what it adds to a load (BENCHMARKS.md, "What
the weights check costs a load").

The Hugging Face cache's own file names are not used as a record: they are content hashes for Git LFS files, but
the cache's layout has changed between huggingface_hub versions (Xet storage adds a shared store named by another
hash), and a wrong guess would refuse every download.
"""
from __future__ import annotations

import contextlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from ..errors import CheckpointError
from ..genome.download import digest_from_manifest, file_digest
from ..outputs import atomic_write_text

#: The record genomix writes beside the weights it saves.
MANIFEST = "weights.sha256"
#: Weights files as transformers names them: single, sharded, safetensors or torch pickle.
_WEIGHTS_FILE = re.compile(r"(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)")
#: Inside :func:`checked_by_the_end`: the pool that hashes, and the checks it was given.
_BACKGROUND: ContextVar[tuple[ThreadPoolExecutor, list[Future]] | None] = ContextVar("genomix_weights_checks",
                                                                                    default=None)


def _weights_files(folder: Path) -> list[Path]:
    """The weights files in ``folder``, by name."""
    return sorted(path for path in folder.iterdir() if _WEIGHTS_FILE.fullmatch(path.name) and path.is_file())


def write_manifest(folder: Path) -> Path | None:
    """Record the SHA-256 of every weights file in ``folder`` in its ``weights.sha256`` (written atomically);
    ``None`` when the folder holds none."""
    files = _weights_files(folder)
    if not files:
        return None
    lines = "".join(f"{file_digest(path)}  {path.name}\n" for path in files)
    atomic_write_text(folder / MANIFEST, lines)
    return folder / MANIFEST


def recorded_sha256(path: Path) -> tuple[str, Path] | None:
    """(the SHA-256 that ``path`` should have, the manifest that records it), or ``None`` when none does."""
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        return None
    digest = digest_from_manifest(manifest.read_text(errors="replace"), path.name, "sha256")
    return None if digest is None else (digest, manifest)


def check_weights_file(path: Path) -> None:
    """Raise :class:`CheckpointError` when ``path`` no longer hashes to what its folder's ``weights.sha256``
    records (inside :func:`checked_by_the_end`: at the block's end); a file without a record passes unchecked."""
    record = recorded_sha256(path)
    if record is None:
        return
    background = _BACKGROUND.get()
    if background is None:
        _compare(path, *record)
    else:
        pool, checks = background
        checks.append(pool.submit(_compare, path, *record))


def _compare(path: Path, expected: str, manifest: Path) -> None:
    actual = file_digest(path)
    if actual != expected:
        raise CheckpointError(f"{path}: its SHA-256 is {actual}, but {manifest} records {expected}: the file changed "
                              "after it was written (a disk or copy error, or an edit in place); delete it and "
                              "download or export it again, or, if you changed the weights on purpose, delete "
                              f"{manifest.name}")


def check_weights_folder(folder: Path) -> None:
    """:func:`check_weights_file` on every weights file in ``folder`` (before a loader that reads them itself)."""
    for path in _weights_files(folder):
        check_weights_file(path)


@contextlib.contextmanager
def checked_by_the_end() -> Iterator[None]:
    """Hash the weights files that :func:`check_weights_file` is given inside the block in worker threads (hashlib
    and file reads release the GIL), so that the hashing overlaps the model's construction, and wait for every
    check at the block's end, raising the first mismatch: the model built inside is still not handed out unchecked.
    When the block raises (a reader's error on a truncated file), that exception propagates, after the checks end."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="genomix-weights-check")
    checks: list[Future] = []
    token = _BACKGROUND.set((pool, checks))
    try:
        yield
    finally:
        _BACKGROUND.reset(token)
        pool.shutdown(wait=True)
    for check in checks:
        check.result()
