"""The adapter interface and the helpers every layout adapter shares (safe reading, key checks)."""
from __future__ import annotations

import abc
import dataclasses
import json
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

from ...errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover - avoids importing models at adapter import
    from ...models.base import GenomixConfig


@dataclasses.dataclass
class LoadedCheckpoint:
    """What an adapter returns: a family config, weights in genomix naming, the head they fit.

    ``task`` is the head the weights were saved with (``base``, ``causal-lm``, ``masked-lm``,
    ``classification``); ``from_pretrained`` builds that head unless the caller asks for another.
    ``source_format`` names the adapter, for messages and ``genomix convert``.
    """

    config: "GenomixConfig"
    state_dict: dict[str, torch.Tensor]
    task: str
    source_format: str


class FormatAdapter(abc.ABC):
    """One checkpoint layout. Subclasses set ``name``/``patterns``/``priority`` and implement both methods."""

    #: Short layout name used in messages and by ``get_format``.
    name: str = ""
    #: ``allow_patterns`` for ``huggingface_hub.snapshot_download``: the files this layout needs.
    patterns: tuple[str, ...] = ("*.json",)
    #: Adapters are tried in increasing priority; more specific layouts get lower numbers.
    priority: int = 100
    #: The genomix ``model_type`` (family) every checkpoint of this layout loads as; empty where each
    #: checkpoint's config names it (the native layout overrides :meth:`model_type_of`).
    model_type: str = ""

    def model_type_of(self, path: Path) -> str:
        """The genomix ``model_type`` the checkpoint in directory ``path`` loads as, known before its weights are
        read (so a class loader can refuse another family's checkpoint without loading it)."""
        return self.model_type

    @abc.abstractmethod
    def detect(self, path: Path) -> bool:
        """Whether directory ``path`` is in this layout; cheap (file names and config fields only)."""

    @abc.abstractmethod
    def load(self, path: Path) -> LoadedCheckpoint:
        """Read config and weights from ``path``; raise :class:`CheckpointError` on any problem."""


def config_for_detection(path: Path) -> dict[str, Any]:
    """Directory ``path``'s config.json for a layout's ``detect``: empty when it is missing or unreadable, so
    detection never raises (another layout may still claim the folder; loading reports the problem)."""
    config = path / "config.json"
    if not config.is_file():
        return {}
    try:
        return read_json(config)
    except CheckpointError:
        return {}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, with a CheckpointError naming the file when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; a checkpoint directory needs its config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); re-download or re-save the checkpoint") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a torch pickle (``.bin``/``.ckpt``/``.pt``).

    Pickles are read with ``weights_only=True`` only (no arbitrary code). A Lightning checkpoint's
    ``state_dict`` entry is returned as is. Truncated or corrupt files raise CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file missing")
    hint = "the file is truncated or corrupt; delete it and download or convert it again"
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors ({exc}); {hint}") from None
    try:
        data = _torch_load(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle ({str(exc).splitlines()[0]}); genomix loads weights with "
            "weights_only=True, so the file must hold only tensors and plain containers"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read torch checkpoint ({exc}); {hint}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return data


class _Inert:
    """Stand-in for a class a checkpoint names outside its weights (Lightning's ``hyper_parameters``
    hold OmegaConf objects, for instance). Constructing or restoring it runs no code of the original
    class and keeps nothing, so such entries load as placeholders and the tensors load as usual."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; if the file names classes the safe unpickler rejects, load
    again with each of them replaced by :class:`_Inert` (still weights_only: no foreign code runs).
    :func:`read_weights` then insists that the weights themselves are plain tensors."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        unsafe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
        if unsafe is None:  # torch < 2.6: no way to name stand-ins
            raise
        names = unsafe(str(path))
        if not names:
            raise
        with torch.serialization.safe_globals([(_Inert, name) for name in names]):
            return torch.load(str(path), map_location="cpu", weights_only=True)


def _summarise(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_keys(
    path: Path,
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    optional: Iterable[str] = (),
) -> None:
    """Raise CheckpointError listing missing/unexpected keys and shape mismatches.

    ``expected`` is a reference state dict (usually of a freshly built model); keys in ``optional``
    (e.g. buffers the layout may omit) may be missing.
    """
    optional = set(optional)
    missing = set(expected) - set(state_dict) - optional
    unexpected = set(state_dict) - set(expected)
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:6])}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the config: " + " | ".join(problems)
            + ". The config.json and the weights file probably come from different models."
        )
