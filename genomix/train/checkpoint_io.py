"""Atomic, ``weights_only`` checkpoint files for Lightning.

A crash or a full disk while a checkpoint is written must never destroy the previous good one: the
file is written under a temporary name in the same folder, flushed to disk and renamed over the
target in one step. Loading uses ``torch.load(weights_only=True)``: the checkpoint holds tensors and
plain containers only, so a tampered file cannot execute code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import CheckpointError
from ..outputs import temp_sibling


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = True,
                        mmap: bool = False) -> dict[str, Any]:
        """The checkpoint at ``path``; ``mmap`` maps its tensors instead of reading them (a check of names and
        shapes then costs little, however large the model)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist; pass an existing .ckpt or --resume auto")
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # truncated, foreign or tampered files
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}; resume from another checkpoint") from exc
