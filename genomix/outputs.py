"""Checks on an output path before a command writes to it, so that a mistyped ``--out`` loses nothing, output
folders made or refused in one line (:func:`make_output_dir`), and small files written whole or not at all
(:func:`atomic_write_text`), under temporary names that a run killed outright cannot leave behind for long
(:func:`temp_sibling`).

Commands write to a temporary name and rename when complete; this is what they check first. An output must
not be an existing directory or one of the command's own inputs (with ``--overwrite`` a renamed result would
otherwise replace the file being read), and an existing file is replaced only when the user asked for it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from .errors import InputFormatError


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                 overwrite: bool = False) -> Path:
    """``out`` as a path, after refusing a directory, any of ``inputs`` (None entries are skipped; compared
    as resolved paths, so links and relative spellings count) and, without ``overwrite``, an existing file."""
    out = Path(out)
    if out.is_dir():
        raise InputFormatError(f"{out} is a directory; give a file name for the output")
    for source in inputs:
        if source is not None and Path(source).exists() and out.resolve() == Path(source).resolve():
            raise InputFormatError(f"{out}: the output must not be an input of the same command (writing it would "
                                   "destroy what is being read); choose another output path")
    if out.exists() and not overwrite:
        raise InputFormatError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    return out


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
    folder, the folder of an output file, a download cache. A folder that cannot be made (a file in the way, no
    permission, a read-only or virtual file system) is refused in one line naming the path, the reason and the
    ``option`` that chose it, instead of the OS error's traceback."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise InputFormatError(f"cannot create the output folder {out}: {reason}; choose another {option}") from None
    return out


__all__ = ["atomic_write_text", "check_output", "make_output_dir", "remove_stale_temps", "temp_sibling"]
