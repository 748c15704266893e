"""Checkpoint layouts genomix can read: one adapter module per layout, one registry.

Every adapter turns a directory in some layout (genomix's own ``save_pretrained`` output, HyenaDNA's
original Lightning checkpoints, HyenaDNA's ``-hf`` repositories, mamba_ssm, Caduceus, ...) into a
genomix config and a state dict in genomix parameter naming, so loading code never needs to know
where a checkpoint came from.

Writing an adapter (one module per layout in this package)::

    from genomix.hub.formats import FormatAdapter, LoadedCheckpoint, register_format

    class MyLayout(FormatAdapter):
        name = "my-layout"                 # shown in messages and `genomix convert --format`
        signature = "config.json with ..." # what identifies it, for the message listing layouts
        patterns = ("config.json", "*.bin") # what to download from the Hub for this layout
        priority = 50                      # lower is tried first (the native layout is 0)
        model_type = "genomix-hyena"       # the family it loads as (class loaders refuse others early)

        def detect(self, path: Path) -> bool:
            ...  # cheap: look at file names / config fields only, never load weights

        def load(self, path: Path) -> LoadedCheckpoint:
            ...  # read config + weights, rename keys to genomix naming, return

    register_format(MyLayout())

and add the module name to :data:`FORMAT_MODULES` (adapters are imported lazily, in that order).

Contract of ``load``: it returns a :class:`LoadedCheckpoint` whose ``config`` is a family config
(``GenomixConfig`` subclass, ``model_type`` ``genomix-*``), whose ``state_dict`` has exactly the keys of
``family.models[task](config).state_dict()`` for the suggested ``task`` (use
:func:`genomix.hub.formats.base.find_weights` and :func:`~genomix.hub.formats.base.read_weights` to find and read
files, sharded ones included, with ``weights_only=True``, :func:`~genomix.hub.formats.base.build_config` to type-check
the config's fields, and :func:`genomix.hub.formats.base.check_keys` for precise missing/unexpected-key, shape,
dtype and NaN reports), and raises
:class:`genomix.errors.CheckpointError` (never a bare exception) for anything wrong with the files.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import CheckpointError, GenomixError
from .base import FormatAdapter, LoadedCheckpoint, read_json

#: Adapter modules of this package, imported on first use. Other families append theirs here.
FORMAT_MODULES: tuple[str, ...] = ("genomix_native", "hyenadna", "hyenadna_hf", "mamba_ssm", "caduceus")

_ADAPTERS: dict[str, FormatAdapter] = {}
_imported = False


def register_format(adapter: FormatAdapter) -> FormatAdapter:
    """Make a layout known to :func:`detect_format` (called by each adapter module at import)."""
    _ADAPTERS[adapter.name] = adapter
    return adapter


def _import_all() -> None:
    global _imported
    if _imported:
        return
    for module in FORMAT_MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            # An adapter another engineer has not written yet; any other import error is a bug.
            if exc.name != f"{__name__}.{module}":
                raise
    _imported = True


def formats() -> list[FormatAdapter]:
    """Every registered adapter, in the order they are tried (``priority``, then name)."""
    _import_all()
    return sorted(_ADAPTERS.values(), key=lambda a: (a.priority, a.name))


def get_format(name: str) -> FormatAdapter:
    """The adapter called ``name`` (e.g. ``"hyenadna"``)."""
    _import_all()
    if name not in _ADAPTERS:
        raise CheckpointError(f"unknown checkpoint format {name!r}; known: {sorted(_ADAPTERS)}")
    return _ADAPTERS[name]


def detect_format(path: str | Path) -> FormatAdapter:
    """The first adapter whose ``detect`` accepts the directory ``path``; when none does, a CheckpointError that
    says why (no or unreadable config.json, a model_type genomix does not read) and lists the layouts it reads."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory; a checkpoint is a folder with config and weights")
    for adapter in formats():
        if adapter.detect(path):
            return adapter
    config = path / "config.json"
    if not config.exists() and (path / "model" / "config.json").is_file():  # a pretrain/finetune run's folder
        raise CheckpointError(f"{path}: a training run's folder, not a checkpoint; its model is {path / 'model'}")
    if not config.exists():
        listing = sorted(p.name for p in path.iterdir())[:20]
        raise CheckpointError(f"{path}: no config.json (files: {listing}); every checkpoint layout keeps its config "
                              "there: copy the config.json that came with these weights, or download the checkpoint "
                              f"again. {_layouts()}")
    model_type = read_json(config).get("model_type")  # a corrupt config.json raises here, naming the file
    what = f"model_type {model_type!r}" if model_type is not None else "no model_type"
    raise CheckpointError(f"{config}: {what}, in no layout genomix reads. {_layouts()}")


def _layouts() -> str:
    """The layouts genomix reads and what identifies each, for messages."""
    return "genomix reads: " + "; ".join(f"{a.name} ({a.signature})" for a in formats())


def load_checkpoint(path: str | Path, format: str | None = None) -> LoadedCheckpoint:
    """Read a checkpoint directory in any supported layout (auto-detected unless ``format`` given; a forced
    ``format`` must still recognise the directory, so that one layout's files are never read as another's).

    Every problem is a :class:`CheckpointError` naming the file: besides the adapters' own checks, a config whose
    values pass their type checks but still build no model (``"d_model": 0``) is reported as such.
    """
    path = Path(path)
    adapter = detect_format(path)
    if format is not None and get_format(format) is not adapter and not get_format(format).detect(path):
        raise CheckpointError(f"{path}: not a {format} checkpoint ({get_format(format).signature}); it is in the "
                              f"{adapter.name} layout: drop the format option, or pass {adapter.name!r}")
    adapter = get_format(format) if format else adapter
    try:
        return adapter.load(path)
    except (TypeError, ValueError, RuntimeError, ArithmeticError) as exc:
        if isinstance(exc, GenomixError):
            raise
        raise CheckpointError(f"{path / 'config.json'}: its values do not build a model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); correct config.json or download "
                              "the checkpoint again") from exc


__all__ = [
    "FORMAT_MODULES",
    "FormatAdapter",
    "LoadedCheckpoint",
    "detect_format",
    "formats",
    "get_format",
    "load_checkpoint",
    "register_format",
]
