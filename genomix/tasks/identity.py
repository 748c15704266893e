"""What a fine-tuning or soft-prompt run was started on, and whether a resume continues on the same thing.

A run records its identity when it starts (``recipe.yaml`` comment lines for fine-tuning, the soft-prompt
state for ICL): the model as it was named (a checkpoint folder as an absolute path, else the name or Hub id),
the task (and a fingerprint of its examples: :func:`task_fingerprint`), and a fingerprint of the
base model's weights (:func:`genomix.resume.weights_fingerprint`, which
``embed`` and ``score-variants`` record too). A resume compares the weights, not the name: a checkpoint
overwritten with other weights at the same path is refused, the same weights moved to another path resume. Runs saved before fingerprints were kept fall back to the name.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError
from ..resume import changed_settings, same_weights_settings
from .labelled import TaskData


log = logging.getLogger(__name__)
#: The identity keys that name the base model; :func:`check_base_model` compares them, nothing else does.
BASE_MODEL_KEYS = ("model", "weights")


def run_identity(model: str, task: str | os.PathLike | TaskData) -> dict[str, str]:
    """What a run was started on, before the model is loaded: the model (a checkpoint folder as an
    absolute path, else the name or Hub id) and the task (its folder's absolute path, else its name)."""
    model_id = str(Path(model).expanduser().resolve()) if Path(model).expanduser().is_dir() else model
    task_id = task.name if isinstance(task, TaskData) else str(Path(task).expanduser().resolve())
    return {"model": model_id, "task": task_id}


def check_base_model(saved: Mapping[str, str], now: Mapping[str, str], where: Path) -> None:
    """Refuse to resume the run recorded in ``where`` (saved identity ``saved``) on another base model than
    it was started on (``now``, with its ``weights``), by the rule :func:`genomix.resume.same_weights_settings`
    applies to ``embed`` and ``score-variants``: with a saved fingerprint the weights decide (the same weights
    under another name or path resume, and the log says so); a run saved before fingerprints were kept is
    checked by the model's name or path, as it was then, with a warning."""
    recorded = {key: saved[key] for key in BASE_MODEL_KEYS if key in saved}
    changes = changed_settings(same_weights_settings(recorded, now, where), now, BASE_MODEL_KEYS)
    if changes:
        raise ConfigError(f"cannot resume {where}: it was started on another base model ({'; '.join(changes)}); "
                          "resume with the model the run started on, or start a new run with another --out")


def task_fingerprint(task: TaskData) -> str:
    """``sha256:`` and the first 16 hex digits of a SHA-256 over ``task``'s label names and, split by split in name
    order, every example's tokens and label: what a fine-tuning run trained on, whatever its files' names, dates
    or compression (a task folder copied, or re-gzipped, keeps its fingerprint; one edited or replaced in place does
    not)."""
    digest = hashlib.sha256("\0".join(task.label_names).encode() + b"\0\0")
    for name in sorted(task.splits):
        split = task.splits[name]
        digest.update(f"{name}\0{len(split)}\0".encode())
        digest.update(split.lengths().astype("<i8").tobytes())
        digest.update(split.labels.astype("<i8").tobytes())
        for ids in split.ids:
            digest.update(ids.tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def check_task_data(saved: Mapping[str, str], now: Mapping[str, str], where: Path) -> None:
    """Refuse to resume the run recorded in ``where`` on other examples than it was started on, by their fingerprint
    (:func:`task_fingerprint`): task files edited or replaced at the same path are refused, and the same examples at
    another path (a copied or recompressed folder) resume, as the base model does by its weights. A run saved
    before the fingerprint was kept is held to its task's path or name by the caller (fine-tuning's
    ``check_resumable``, the soft prompt's ``_check_identity``)."""
    if "task_data" not in saved:
        return
    if saved["task_data"] != now["task_data"]:
        moved = f"; task: {saved.get('task')} -> {now['task']}" if saved.get("task") != now["task"] else ""
        raise ConfigError(f"cannot resume {where.parent}: its task's examples differ from those the run started on "
                          f"(task_data: {saved['task_data']} -> {now['task_data']}{moved}): the task's files were "
                          "edited or replaced since, or this is another task; resume on the examples the run started "
                          "on, or start a new run with another --out")
    if saved.get("task") != now["task"]:
        log.info("the run in %s used the task %s; %s holds the same examples", where.parent, saved.get("task"),
                 now["task"])
