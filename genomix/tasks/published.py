"""Task folders that `genomix tasks download` published: what their ``SOURCE.json`` records about the split files,
and whether a folder found in the suite's output folder is a complete task, not there yet, damaged since, or
something else in the way.

A published task is trusted only while its split files are as they were published: each must be there and not
empty, and, where ``SOURCE.json`` records its size (tasks published since sizes were recorded), be of that size.
These checks read no file's contents (a re-hash of gigabytes on every run would make resuming slow); they catch
what damage by hand or by other tools leaves (a split deleted, emptied or cut short), not a byte changed in place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputFormatError

SOURCE_FILE = "SOURCE.json"


def split_sizes(folder: Path, files: tuple[str, ...]) -> dict[str, int]:
    """Each of ``files`` in ``folder`` by name: a split file's size in bytes, or for a split folder
    (GenomicBenchmarks' ``<split>/<class>/<id>.txt``) the number of sequence files in it; a missing one is left
    out. Recorded in ``SOURCE.json`` when a task is published, and compared with the folder on later runs."""
    sizes = {}
    for name in files:
        path = folder / name
        if path.is_dir():
            sizes[name] = _sequence_files(path)
        elif path.is_file():
            sizes[name] = path.stat().st_size
    return sizes


def _sequence_files(split: Path) -> int:
    """How many ``<class>/*.txt`` files lie in ``split``, read from the folder listings alone; hidden names (the
    ``.DS_Store`` that macOS's Finder leaves) are not counted, as :func:`load_task` does not read them."""
    count = 0
    for cls in os.scandir(split):
        if cls.is_dir() and not cls.name.startswith("."):
            with os.scandir(cls.path) as entries:
                count += sum(1 for e in entries if e.name.endswith(".txt") and not e.name.startswith(".")
                             and e.is_file())
    return count


def damage(folder: Path, files: tuple[str, ...]) -> str | None:
    """What is wrong with ``folder``, a published task (it has its ``SOURCE.json``) of a suite whose tasks hold
    ``files``: its record unreadable, or the first split file missing, empty or not of its recorded size. None
    when nothing is, and for a folder that was never published."""
    record = folder / SOURCE_FILE
    if not record.is_file():
        return None
    try:
        recorded = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        return f"{record} is not the JSON record that was written when the task was published"
    sizes = recorded.get("sizes") if isinstance(recorded.get("sizes"), dict) else {}
    found = split_sizes(folder, files)
    for name in files:
        if name not in found:
            return f"{folder / name} is missing"
        if not found[name]:
            return f"{folder / name} is empty"
        unit = "sequence files" if (folder / name).is_dir() else "bytes"
        published = sizes.get(name)
        if isinstance(published, int) and found[name] != published:
            return f"{folder / name} has {found[name]:,} {unit}, not the {published:,} it was published with"
    return None


def is_fetched(root: Path, task: str, files: tuple[str, ...]) -> bool:
    """Whether ``<root>/<task>`` is a task that an earlier run published (it has its ``SOURCE.json``) and whose
    split ``files`` are intact (:func:`damage`). A missing or empty folder is not. Anything else in the way is
    refused: a file where the task's folder or its group's folder (``EMP`` of ``EMP/H3``) must go, and a folder
    without ``SOURCE.json``, which may be half of a task unpacked by hand and would otherwise be taken as
    complete."""
    folder = root / task
    parts = Path(task).parts
    for path in (root.joinpath(*parts[:depth]) for depth in range(1, len(parts) + 1)):
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            what = "a file" if path.is_file() else "not a folder"
            raise InputFormatError(f"{path} is {what}, in the way of the folder {folder} of task {task}; move it "
                                   "away or choose another --out")
    if (folder / SOURCE_FILE).is_file():
        return damage(folder, files) is None
    if not folder.exists() or not any(folder.iterdir()):
        return False
    raise InputFormatError(f"{folder} exists but was not written by `genomix tasks download` (it has no "
                           f"{SOURCE_FILE}), so it may be incomplete: move it away and run again, or pass it to "
                           "--task as it is")
