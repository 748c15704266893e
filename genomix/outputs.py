"""Checks on an output path before a command writes to it, so that a mistyped ``--out`` loses nothing, output
folders made or refused in one line (:func:`make_output_dir`; :func:`check_output_dir` refuses a file in the way
before a command's slow work), outputs too large for their disk refused before a long job starts
(:func:`check_free_space`), and small files written whole or not at all (:func:`atomic_write_text`), under
temporary names that a run killed outright cannot leave behind for long (:func:`temp_sibling`).

Commands write to a temporary name and rename when complete; this is what they check first. An output must
not be an existing directory or one of the command's own inputs (with ``--overwrite`` a renamed result would
otherwise replace the file being read), and an existing file is replaced only when the user asked for it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from .errors import DiskSpaceError, InputFormatError


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                 overwrite: bool = False) -> Path:
    """``out`` as a path (``~`` expanded), after refusing a directory (or a name ending in ``/``), anything but a
    regular file where one exists (a device such as ``/dev/null`` or a pipe, which the rename of a finished output
    would replace), any of ``inputs`` or an existing file inside one that is a folder (a model checkpoint's
    weights or config; None entries are skipped; compared as resolved paths, so links and relative spellings
    count) and, without ``overwrite``, an existing file."""
    named = os.fspath(out)
    out = Path(named).expanduser()
    if out.is_dir() or named.endswith(os.sep):
        raise InputFormatError(f"{out} is a directory; give a file name for the output")
    if out.exists() and not out.is_file():
        raise InputFormatError(f"{out} is not a regular file (a device or a pipe): outputs are written to a temporary "
                               "file and renamed onto their path, which would replace it; give a file name")
    resolved = out.resolve()
    for source in inputs:
        if source is None or not Path(source).expanduser().exists():
            continue
        source = Path(source).expanduser().resolve()
        if resolved == source or (source.is_dir() and out.exists() and resolved.is_relative_to(source)):
            inside = "" if resolved == source else f" (it is inside the input folder {source})"
            raise InputFormatError(f"{out}: the output must not be an input of the same command{inside}; writing it "
                                   "would destroy what is being read; choose another output path")
    if out.exists() and not overwrite:
        raise InputFormatError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    return out


#: File name endings that promise compressed content.
COMPRESSED_SUFFIXES = (".gz", ".bgz", ".bz2", ".xz", ".zst")


def refuse_compressed_name(out: Path, what: str, option: str = "out (--out)") -> None:
    """Refuse an output name ending as a compressed file's (``scores.tsv.gz``) for ``what``, a plain-text file
    written as it goes (for resuming), which such a name would misdescribe to every reader (``zcat`` fails)."""
    if out.suffix.lower() in COMPRESSED_SUFFIXES:
        raise InputFormatError(f"{out}: the output is {what}, not {out.suffix}-compressed; name it "
                               f"{out.with_suffix('')} ({option}) and compress it once the run is complete")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and rename it over ``path``: readers see old or new, never half."""
    tmp = temp_sibling(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """This process's temporary name beside ``path`` (``.NAME.KIND-PID``: a file or folder renamed onto ``path``
    when complete, or, with ``kind`` ``old``, the previous one moved aside), after removing the temporary names of
    ``path`` that processes no longer running left (:func:`remove_stale_temps`)."""
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def remove_stale_temps(path: Path) -> None:
    """Remove the temporary siblings of ``path`` (:func:`temp_sibling`) whose process is no longer running.

    A run killed outright (kill -9, the OOM killer, a power cut) cannot clean up after itself, and each run has
    its own name (a pid), so without this its leftovers (a half-written genome store or checkpoint, gigabytes
    each) would accumulate beside the output for good. A temporary name of a running process (this one included)
    is left alone: two runs may write beside each other. The pid is this host's, so a folder that several hosts
    write into at once may lose another host's temporary file while it is written: that run then fails loudly at
    its rename, never with a wrong output.
    """
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # no folder yet: nothing was left there
        return
    for entry in entries:
        kind, _, pid = entry.name[len(prefix):].rpartition("-")
        if entry.name.startswith(prefix) and kind in ("tmp", "old") and pid.isdigit() and not _running(int(pid)):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def make_output_dir(out: str | os.PathLike, option: str = "--out") -> Path:
    """``out`` (``~`` expanded) as a folder, created with its parents if missing: a training run's output
    folder, the folder of an output file, a download cache. A folder that cannot be made or written in (a file in
    the way, no permission, a read-only or virtual file system) is refused in one line naming the path, the reason
    and the ``option`` that chose it, instead of the OS error's traceback."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _file_in_the_way(out)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise _cannot_create(out, reason, option) from None
    if not os.access(out, os.W_OK | os.X_OK):  # an existing folder on a read-only mount, or another user's
        raise _cannot_create(out, "it exists but cannot be written (permissions, or a read-only file system)", option)
    return out


def check_output_dir(out: str | os.PathLike, option: str = "--out") -> Path:
    """``out`` (``~`` expanded) as an output folder to be made later, after refusing it, in :func:`make_output_dir`'s
    one line and creating nothing, when a file stands where it or a folder above it should be.

    A command calls this before its slow work (reading a genome, loading a model), so that a mistyped ``--out``
    is refused at once rather than after it; the folder itself is made only right before the first write
    (:func:`make_output_dir`), so a run refused on the way leaves no empty folder behind. An existing folder (a
    run to resume) passes; so does a folder that cannot be made for another reason (no permission, a read-only
    file system), which :func:`make_output_dir` finds when it tries."""
    out = Path(out).expanduser()
    blocker = _file_in_the_way(out)
    if blocker is not None:
        raise _cannot_create(out, f"{blocker} is a file, not a folder", option)
    return out


def check_free_space(folder: str | os.PathLike, need: int, what: str, remedy: str) -> None:
    """Raise :class:`DiskSpaceError` when ``need`` bytes (``what`` names them) exceed the free space of the disk
    that ``folder`` is on (or will be made on: its nearest existing ancestor), before a long job writes them,
    so that it stops in one line naming the need, the space and ``remedy`` instead of with a full disk half way."""
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if need > free:
        raise DiskSpaceError(f"{what} need at least {need:,} bytes, but {existing} has {free:,} free; {remedy}")


def _file_in_the_way(out: Path) -> Path | None:
    """The file (anything but a folder) at ``out`` or at one of the folders above it, under which no folder can be
    made; ``None`` if there is none. A path that cannot be looked at (no permission) counts as not there."""
    return next((p for p in (out, *out.parents) if os.path.exists(p) and not os.path.isdir(p)), None)


def _cannot_create(out: Path, reason: str, option: str) -> InputFormatError:
    """The one-line refusal of an output folder ``out`` that cannot be made for ``reason``."""
    return InputFormatError(f"cannot create the output folder {out}: {reason}; choose another {option}")


__all__ = ["COMPRESSED_SUFFIXES", "atomic_write_text", "check_free_space", "check_output", "check_output_dir",
           "make_output_dir", "refuse_compressed_name", "remove_stale_temps", "temp_sibling"]
