"""Zip archives of benchmark suites, read safely: members are unpacked only to paths the caller makes from the
suite's own task and file names (GenomicBenchmarks' class folders: plain names only, :func:`class_folder_plan`),
never to a member's own path; symbolic links are refused; every member's CRC-32 is checked as it is read; and the
members' declared sizes, which bound what is written, must fit the free space before anything is unpacked.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChecksumError, InputFormatError
from ..genome.download import CHUNK, local_writes
from ..outputs import check_free_space

if TYPE_CHECKING:
    from tqdm import tqdm


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at ``path``; a damaged one (its member list unreadable) is a :class:`ChecksumError`."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ChecksumError(f"{path}: not a readable zip archive ({exc}); it is corrupt or truncated") from None


def check_space(members: list[zipfile.ZipInfo], folder: Path, archive: Path) -> None:
    """Refuse to unpack ``members`` into ``folder`` when their declared sizes (which bound what is written:
    a member that inflates past its size fails its CRC check) exceed the free space, before writing anything:
    a zip bomb or an out-of-space disk stops in one line instead of half way."""
    check_free_space(folder, sum(info.file_size for info in members),
                     f"{archive}: its {len(members)} member(s) to unpack", "free some space or choose another --out")


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    """Write member ``info`` to ``target`` (a path the caller made, never the member's own), checking its
    CRC-32; a symbolic link is refused, and a damaged member is a :class:`ChecksumError`."""
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputFormatError(f"{archive}: member {info.filename!r} is a symbolic link; a benchmark archive "
                               "holds only files: is this the right archive?")
    try:
        with zf.open(info) as src, local_writes(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ChecksumError(f"{archive}: member {info.filename} fails its CRC-32 check or cannot be inflated "
                            f"({exc}); the archive is corrupt or truncated") from None
    except NotImplementedError as exc:
        raise InputFormatError(f"{archive}: member {info.filename}: {exc}; unpack the archive with another tool "
                               "and zip it again with ordinary compression") from None
    except RuntimeError as exc:  # zipfile's word for an encrypted member
        raise InputFormatError(f"{archive}: member {info.filename} cannot be read ({exc}); unpack the archive "
                               "with its password and zip it again without one") from None


def unpacking_bar(members: list[zipfile.ZipInfo], archive: Path, quiet: bool) -> tqdm:
    """A progress bar over the bytes of ``members`` (silenced by ``quiet``)."""
    from tqdm.auto import tqdm as bar

    return bar(total=sum(m.file_size for m in members), unit="B", unit_scale=True, desc=f"unpacking {archive.name}",
                disable=quiet)


def unpack(zf: zipfile.ZipFile, plan: dict[str, zipfile.ZipInfo], staging: Path, archive: Path,
           progress: tqdm) -> None:
    """Copy each member of ``plan`` (target path relative to ``staging`` -> member) into ``staging``."""
    for relative, info in plan.items():
        copy_member(zf, info, staging / relative, archive)
        progress.update(info.file_size)


def starts_like_zip(path: Path) -> bool:
    """Whether ``path`` begins as a zip does (a local file header): a file that does but that
    :func:`zipfile.is_zipfile` refuses lacks its end, as a browser download stopped half way does, and is no
    HTML page that a message about Google Drive's quota would explain."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


_CLASS_FILE = re.compile(r"^(.*/)?([^/]+)/([^/]+)/([^/]+\.txt)$")


def class_folder_plan(zf: zipfile.ZipFile, splits: tuple[str, ...], source: Path) -> dict[str, zipfile.ZipInfo]:
    """``<split>/<class>/<id>.txt`` (under any top folder) -> its member, for the members of a GenomicBenchmarks
    zip. macOS's ``__MACOSX`` copies and hidden names are skipped; a name with a backslash (a path on Windows),
    two members for one file and members under different top folders (two datasets, or stray members that would
    join the dataset's splits) are refused. What lies above ``<split>`` is never part of the target."""
    plan: dict[str, zipfile.ZipInfo] = {}
    tops: dict[str, str] = {}  # the folder above <split> -> one member under it
    for info in zf.infolist():
        match = _CLASS_FILE.match(info.filename)
        if match is None or match.group(2) not in splits:
            continue
        top, split, cls, filename = match.groups()
        if "__MACOSX" in info.filename.split("/") or cls.startswith(".") or filename.startswith("."):
            continue  # macOS's resource-fork copies, hidden files, and "." or ".." as a class
        if "\\" in cls or "\\" in filename:
            raise InputFormatError(f"{source}: member {info.filename!r} is not a class folder entry")
        relative = f"{split}/{cls}/{filename}"
        if relative in plan:
            raise InputFormatError(f"{source}: members {plan[relative].filename!r} and {info.filename!r} are both "
                                   f"{relative}; is this one GenomicBenchmarks dataset?")
        plan[relative] = info
        tops.setdefault(top or "", info.filename)
    if len(tops) > 1:
        raise InputFormatError(f"{source}: class folders under more than one top folder (members "
                               f"{', '.join(repr(m) for m in list(tops.values())[:3])}); is this one GenomicBenchmarks "
                               "dataset?")
    if not plan:
        raise InputFormatError(f"{source}: holds no {'/'.join(splits)} class folders (<split>/<class>/<id>.txt)")
    return plan
