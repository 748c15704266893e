"""Suite-wide test setup.

Triton kernels run in Triton's CPU interpreter unless this is a GPU run (:mod:`devices`); the interpreter
must be switched on before any kernel module is imported, so it is set here, at collection time (with
:mod:`interpreter_compat`'s fix for Triton < 3.9 under NumPy >= 2.5), and the tests that do not belong to the run
are skipped with the reason. ``SHARED`` is the read-only data folder
that sits beside the checkout (in CI too).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from devices import GPU_RUN
from download_server import serving
from interpreter_compat import patch_interpreter_index

if not GPU_RUN:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    patch_interpreter_index()


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests outside a GPU run, and everything but ``gpu`` / ``any_device`` tests in one."""
    outside = pytest.mark.skip(reason="GPU test: runs with GENOMIX_TEST_GPU=1 on a CUDA machine")
    inside = pytest.mark.skip(reason="a GPU run (GENOMIX_TEST_GPU=1) keeps to the gpu and any_device tests; "
                                     "plain pytest runs this one in Triton's CPU interpreter")
    for item in items:
        if "gpu" in item.keywords and not GPU_RUN:
            item.add_marker(outside)
        elif GPU_RUN and "gpu" not in item.keywords and "any_device" not in item.keywords:
            item.add_marker(inside)

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


@pytest.fixture
def server():
    """A local HTTP server for downloads (:mod:`download_server`): its base URL and the ``state`` that
    switches its failures."""
    with serving() as running:
        yield running
