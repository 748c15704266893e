"""The adapter interface and the helpers every layout adapter shares: finding and reading weights safely (single
files and sharded checkpoints), building a config from a file's fields with type checks, and checking weights
against the model a config describes (names, shapes, dtypes, finite values)."""
from __future__ import annotations

import abc
import dataclasses
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, TypeVar

import torch

from ...errors import CheckpointError, ConfigError
from ...models.config_types import type_error
from ..integrity import check_weights_file

if TYPE_CHECKING:  # pragma: no cover - avoids importing models at adapter import
    from ...models.base import GenomixConfig

ConfigT = TypeVar("ConfigT", bound="GenomixConfig")

#: Weights files of the Hub layouts (genomix native, HyenaDNA ``-hf``, mamba_ssm, Caduceus), in order of
#: preference; each may instead be sharded, with a ``<name>.index.json`` mapping tensors to shard files.
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: ``allow_patterns`` that fetch those weights from the Hub, sharded ones included.
HUB_WEIGHT_PATTERNS = (*HUB_WEIGHTS, "model-*.safetensors", "pytorch_model-*.bin", "*.index.json")
_REDOWNLOAD = "download the checkpoint again (or copy the files that came with it)"


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
    """One checkpoint layout. Subclasses set ``name``/``signature``/``patterns``/``priority`` and implement both
    methods."""

    #: Short layout name used in messages and by ``get_format``.
    name: str = ""
    #: What identifies the layout, for the message that lists the layouts genomix reads.
    signature: str = ""
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
        """Whether directory ``path`` is in this layout; cheap (file names and config fields only). Decided by
        ``config.json`` alone where the layout allows, so that missing weights are reported as such by ``load``."""

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
        raise CheckpointError(f"{path}: missing; {_REDOWNLOAD}") from None
    except OSError as exc:  # a directory in its place, no permission
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc}); it must be a readable file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); re-download or re-save the checkpoint") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def json_object(data: Mapping[str, Any], key: str, source: Path) -> dict[str, Any]:
    """``data[key]`` as a dict (``{}`` when absent or null): the nested blocks of a config (``ssm_cfg``...),
    refused with the file and key named when they hold anything but a JSON object."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: '{key}' must be a JSON object, got {type(value).__name__} {value!r}")
    return dict(value)


def build_config(
    config_class: type[ConfigT], fields: Mapping[str, Any], source: Path, names: Mapping[str, str] | None = None
) -> ConfigT:
    """``config_class(**fields)`` from the fields of the config file ``source``, refusing values of the wrong type
    (``"d_model": "256"``) and values the config rejects with a CheckpointError naming the file and each field,
    instead of a TypeError from deep inside the model. ``names`` maps a config field to what the file calls it
    (``activation_freq`` -> ``layer.w``) for the message."""
    from ...models.registry import config_field_types

    names = names or {}
    hints = config_field_types(config_class)
    wrong = [f"{names.get(key, key)} {error}" for key, value in fields.items()
             if key in hints and (error := type_error(hints[key], value))]
    if wrong:
        raise CheckpointError(f"{source}: field(s) of the wrong type: {'; '.join(wrong)}; correct the file or "
                              f"{_REDOWNLOAD}")
    try:
        return config_class(**fields)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: not a usable {config_class.__name__}: {exc}") from None


def find_weights(path: Path) -> Path:
    """The weights of a Hub-layout directory: ``model.safetensors`` or ``pytorch_model.bin``, or the index of a
    sharded one (``<name>.index.json``), in that order of preference."""
    for name in HUB_WEIGHTS:
        for candidate in (path / name, path / f"{name}.index.json"):
            if candidate.exists():
                return candidate
    raise CheckpointError(
        f"{path}: config.json is here but no weights ({', '.join(HUB_WEIGHTS)}, or a sharded checkpoint's "
        f"{HUB_WEIGHTS[0]}.index.json with its shards); {_REDOWNLOAD}"
    )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file, a torch pickle (``.bin``/``.ckpt``/``.pt``) or a sharded checkpoint's
    ``*.index.json`` (every shard it lists, each read the same way).

    Pickles are read with ``weights_only=True`` only (no arbitrary code). A Lightning checkpoint's
    ``state_dict`` entry is returned as is. Truncated or corrupt files raise CheckpointError, and so does a file
    whose SHA-256 differs from what its folder's ``weights.sha256`` records (:mod:`genomix.hub.integrity`).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: weights file missing; {_REDOWNLOAD}")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a directory, not a weights file; {_REDOWNLOAD}")
    if path.name.endswith(".index.json"):
        return _read_sharded(path)
    tensors = _read_weights_file(path)
    check_weights_file(path)  # after the reader, whose errors say more (truncated, no checkpoint at all)
    return tensors


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one existing safetensors file or torch pickle (see :func:`read_weights`). A file this
    process may not read is refused as such first: the readers' errors would call it corrupt, and advise deleting
    it."""
    hint = f"the file is truncated or corrupt; delete it and {_REDOWNLOAD}"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be opened ({exc.strerror or exc}); check its permissions") from None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors ({_reason(exc)}); {hint}") from None
    try:
        data = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - on arbitrary bytes torch's unpickler raises anything (IndexError...)
        named = _unsafe_globals(path) if isinstance(exc, pickle.UnpicklingError) else []
        if named:
            raise CheckpointError(
                f"{path}: refused: unpickling it would call {', '.join(named)}, and genomix reads weights with "
                "torch.load(weights_only=True) so that no checkpoint runs code. Only if you trust its source, "
                "re-save just its tensors (a dict of tensors with torch.save, or safetensors) and load that"
            ) from None
        raise CheckpointError(f"{path}: cannot read torch checkpoint ({_reason(exc)}); {hint}, or it was not "
                              "written by torch.save") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a mapping of parameter names to tensors")
    others = {key: type(value).__name__ for key, value in data.items() if not isinstance(value, torch.Tensor)}
    if others:
        shown = ", ".join(f"{key!r} ({kind})" for key, kind in list(others.items())[:5])
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors, but {len(others)} "
                              f"entr{'y is' if len(others) == 1 else 'ies are'} not tensors: {shown}")
    return data


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint, after checking that each shard its index lists is there and holds
    the tensors the index places in it, and none that it places in another shard (which would replace that one's
    depending on the order the shards are read)."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: no 'weight_map' from tensor names to shard files; {_REDOWNLOAD}")
    shards = sorted(set(weight_map.values()))
    outside = [shard for shard in shards if Path(shard).name != shard]
    if outside:
        raise CheckpointError(f"{index}: shard(s) {outside} are not file names in the checkpoint's folder")
    missing = [shard for shard in shards if not (index.parent / shard).is_file()]
    if missing:
        raise CheckpointError(f"{index}: {len(missing)} of {len(shards)} shard(s) missing ({summarise(missing, 4)}): "
                              f"an interrupted or partial download? {_REDOWNLOAD}, every file the index lists")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors = read_weights(index.parent / shard)
        absent = [key for key, where in weight_map.items() if where == shard and key not in tensors]
        if absent:
            raise CheckpointError(f"{index.parent / shard}: lacks {len(absent)} tensor(s) that {index.name} places "
                                  f"there ({summarise(absent)}); shard and index come from different saves: "
                                  f"{_REDOWNLOAD}")
        elsewhere = [key for key in tensors if weight_map.get(key, shard) != shard]
        if elsewhere:
            raise CheckpointError(f"{index.parent / shard}: holds {len(elsewhere)} tensor(s) that {index.name} places "
                                  f"in another shard ({summarise(elsewhere)}); shard and index come from different "
                                  f"saves: {_REDOWNLOAD}")
        state.update(tensors)
    return state


def _reason(exc: BaseException) -> str:
    """The first sentence of what went wrong: torch's ``weights_only`` errors wrap it in advice and a link (the
    middle paragraph is the reason), other messages run on for lines; an exception without one gives its type."""
    paragraphs = [p.strip() for p in str(exc).split("\n\n") if p.strip()]
    if len(paragraphs) >= 3 and paragraphs[0].startswith("Weights only load failed"):
        paragraphs = paragraphs[1:-1]
    return paragraphs[0].splitlines()[0].split(". ")[0] if paragraphs else type(exc).__name__


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a torch pickle names that ``weights_only`` loading refuses (empty when torch cannot
    tell, e.g. for a corrupt file)."""
    unsafe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        return list(unsafe(str(path))) if unsafe else []
    except Exception:  # noqa: BLE001 - any failure here only means "cannot name them"
        return []


class _Inert:
    """Stand-in for a class a checkpoint names outside its weights (Lightning's ``hyper_parameters``
    hold OmegaConf objects, for instance). Constructing or restoring it runs no code of the original
    class and keeps nothing, so such entries load as placeholders and the tensors load as usual."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; if the file names classes the safe unpickler rejects, load again with
    each of them replaced by a subclass of :class:`_Inert` named after it (still weights_only: no foreign code
    runs, and torch refuses modules such as ``os`` outright). :func:`read_weights` then insists that the weights
    themselves are plain tensors."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        names = _unsafe_globals(path)
        if not names:
            raise
        stand_ins = [(type(name, (_Inert,), {}), name) for name in names]  # named, for read_weights' message
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(str(path), map_location="cpu", weights_only=True)


def summarise(keys: Iterable[str], limit: int = 8) -> str:
    """The first ``limit`` of ``keys`` in order, and how many more there are: a long key list for a message."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _kind(tensor: torch.Tensor) -> str:
    """A dtype's kind: a checkpoint may store weights in another float precision, never as integers."""
    return "floating" if tensor.is_floating_point() else "complex" if tensor.is_complex() else "integer/bool"


def check_keys(
    path: Path,
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    optional: Iterable[str] = (),
) -> None:
    """Raise CheckpointError listing missing/unexpected keys, shape mismatches and tensors of another dtype kind
    (integers where the model has floats), then one naming tensors with NaN or infinite values.

    ``expected`` is a reference state dict (usually of a freshly built model); keys in ``optional``
    (e.g. buffers the layout may omit) may be missing.
    """
    optional = set(optional)
    missing = set(expected) - set(state_dict) - optional
    unexpected = set(state_dict) - set(expected)
    common = sorted(set(expected) & set(state_dict))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in common if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    kinds = [f"{k}: checkpoint {state_dict[k].dtype} vs model {expected[k].dtype}"
             for k in common if _kind(state_dict[k]) != _kind(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {summarise(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {summarise(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:6])}")
    if kinds:
        problems.append(f"{len(kinds)} dtype mismatch(es): {'; '.join(kinds[:6])}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match the config: " + " | ".join(problems)
            + ". The config.json and the weights file probably come from different models."
        )
    broken = [k for k in common
              if state_dict[k].is_floating_point() and not bool(torch.isfinite(state_dict[k]).all())]
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} tensor(s) hold NaN or infinite values ({summarise(broken)}): "
                              f"the file is corrupt or was saved from a diverged run; {_REDOWNLOAD}, or use an "
                              "earlier checkpoint")
