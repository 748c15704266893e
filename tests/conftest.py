"""Suite-wide test setup.

Without a GPU, Triton kernels can only run in Triton's CPU interpreter, which must be switched on
before any kernel module is imported, so it is set here, at collection time. ``SHARED`` is the
read-only data folder that sits beside the checkout (in CI too).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data and fixtures folder (../shared from the repository root)."""
    assert SHARED.is_dir(), f"expected the shared data folder at {SHARED}"
    return SHARED


@pytest.fixture
def nan_empty(monkeypatch):
    """torch.empty returns NaN-filled floating tensors: memory a kernel leaves unwritten stays NaN."""
    real_empty = torch.empty

    def poisoned(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", poisoned)
