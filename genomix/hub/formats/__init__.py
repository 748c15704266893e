"""Checkpoint layouts genomix can read: one adapter module per layout, one registry.

Every adapter turns a directory in some layout (genomix's own ``save_pretrained`` output, HyenaDNA's
original Lightning checkpoints, HyenaDNA's ``-hf`` repositories, mamba_ssm, Caduceus, ...) into a
genomix config and a state dict in genomix parameter naming, so loading code never needs to know
where a checkpoint came from.

Writing an adapter (one module per layout in this package)::

    from genomix.hub.formats import FormatAdapter, LoadedCheckpoint, register_format

    class MyLayout(FormatAdapter):
        name = "my-layout"                 # shown in messages and `genomix convert --from`
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
:func:`genomix.hub.formats.base.read_weights` to read files with ``weights_only=True`` and
:func:`genomix.hub.formats.base.check_keys` for precise missing/unexpected-key reports), and raises
:class:`genomix.errors.CheckpointError` (never a bare exception) for anything wrong with the files.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import CheckpointError
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
    """The first adapter whose ``detect`` accepts the directory ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory; a checkpoint is a folder with config and weights")
    for adapter in formats():
        if adapter.detect(path):
            return adapter
    if (path / "config.json").is_file():
        read_json(path / "config.json")  # a corrupt config.json is why no layout matched: say that instead
    listing = sorted(p.name for p in path.iterdir())[:20]
    raise CheckpointError(
        f"{path}: no known checkpoint layout (files: {listing}); genomix reads "
        f"{[a.name for a in formats()]} layouts"
    )


def load_checkpoint(path: str | Path, format: str | None = None) -> LoadedCheckpoint:
    """Read a checkpoint directory in any supported layout (auto-detected unless ``format`` given)."""
    adapter = get_format(format) if format else detect_format(path)
    return adapter.load(Path(path))


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
