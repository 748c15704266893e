"""The torch device a command runs on, checked against this machine before any model or data is loaded, so that
``--device cuda`` on a machine without a GPU is one line of error instead of torch's assertion deep in a run."""
from __future__ import annotations

import torch

from .errors import ConfigError


def require_cuda(device: str, option: str) -> None:
    """Refuse a CUDA ``device`` (``gpu``, ``cuda``, ``cuda:N``; given as ``option``) that this machine
    lacks."""
    kind, _, index = device.partition(":")
    if kind not in ("gpu", "cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(f"{option} {device}: no CUDA device is available on this machine (torch "
                          f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use cpu instead")
    if index.isdigit() and int(index) >= count:
        raise ConfigError(f"{option} {device}: this machine has {count} CUDA device(s), numbered 0..{count - 1}")


def resolve_device(device: str | torch.device | None, option: str = "--device") -> torch.device:
    """``device`` as a :class:`torch.device` (default: cuda when available, else cpu), refused with a
    :class:`ConfigError` naming ``option`` when it is malformed or this machine lacks it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"{option} {str(device)!r} is not a device; use cpu, cuda or cuda:N") from None
    require_cuda(str(parsed), option)
    return parsed
