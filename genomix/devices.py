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
        raise ConfigError(f"{option} {device}: no CUDA device is available on this machine ({_torch_build()}); "
                          "use cpu instead")
    if index.isdigit() and int(index) >= count:
        raise ConfigError(f"{option} {device}: this machine has {count} CUDA device(s), numbered 0..{count - 1}")


def require_devices(devices: int | str, accelerator: str) -> None:
    """Refuse a training run's ``--devices``/``--accelerator`` that this machine cannot run as meant, before
    anything is written: a CUDA ``accelerator`` it lacks (:func:`require_cuda`), and several ``devices`` with the
    ``auto`` accelerator on a machine without a CUDA GPU. Lightning would start the latter as that many CPU
    processes (DDP on CPU): a user asking for 4 devices on a GPU-less box almost always has a job on the wrong
    node or a torch without CUDA, and would otherwise find out from a slow run, not a message. Data-parallel
    training on CPU stays one flag away: ``--accelerator cpu``. ``devices`` other than a count (``auto``, a list
    of GPU ids) are Lightning's to resolve."""
    require_cuda(accelerator, "--accelerator")
    if accelerator == "auto" and str(devices).isdigit() and int(devices) > 1 and not torch.cuda.is_available():
        raise ConfigError(f"--devices {devices}: no CUDA GPU was found on this machine ({_torch_build()}); to train "
                          f"in {devices} CPU processes pass --accelerator cpu explicitly, or leave out --devices to "
                          "train in one")


def training_precision(precision: str | None, accelerator: str) -> str:
    """The Lightning precision a training run uses: the recipe's ``precision``, or by default bf16-mixed on a CUDA
    GPU and 32-true elsewhere. ``16-mixed`` on the CPU is refused: Lightning would train in bf16-mixed instead (with
    a warning), while the run's ``recipe.yaml`` recorded 16-mixed, so the record would not say how the model was
    trained."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()
                                      and not torch.backends.mps.is_available())
    if precision is None:
        return "bf16-mixed" if torch.cuda.is_available() and accelerator != "cpu" else "32-true"
    if precision == "16-mixed" and on_cpu:
        raise ConfigError(f"precision 16-mixed needs a GPU, and this run is on the CPU ({_torch_build()}); use "
                          "bf16-mixed or 32-true (--precision, or precision: in the recipe)")
    return precision


def _torch_build() -> str:
    """The torch version and the CUDA version it was built with, for messages that say why there is no GPU."""
    return f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}"


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
