"""The one rule that decides between a Triton kernel and its PyTorch reference.

Every op in ``kernels`` asks :func:`use_triton` with its input tensors: the Triton path runs only when
all of them live on a CUDA device, Triton imports, and ``GENOMIX_FORCE_REFERENCE`` is not set to a
true value. ``GENOMIX_FORCE_TRITON=1`` is the opposite override, used by the CPU tests to run the Triton
kernels under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import functools
import os

import torch

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether ``import triton`` works here (it does not on macOS/Windows wheels of torch)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the platform
        return False
    return True


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return _flag("TRITON_INTERPRET")


def use_triton(*tensors: torch.Tensor) -> bool:
    """Decide whether an op should take its Triton path for these inputs."""
    if _flag("GENOMIX_FORCE_REFERENCE") or not triton_available():
        return False
    if _flag("GENOMIX_FORCE_TRITON"):
        return True
    return all(t.is_cuda for t in tensors if t is not None)
