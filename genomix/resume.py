"""Resuming long-running commands: what changed since a run was started, and what becomes of the rows an
interrupted run kept.

Every resumable command (``pretrain``, ``finetune``, ``icl``, ``embed``, ``generate``, ``score-variants``) records
the settings it was started with and refuses to continue under other ones, naming each change as
``key: old -> new`` (:func:`changed_settings`, one format everywhere), so that no result mixes two sets of
settings. This lives in its own module, not in :mod:`genomix.outputs` (checks on an output *path*), because
the training commands compare settings with no output file involved.

``embed``, ``generate`` and ``score-variants`` keep finished rows in a partial file beside their output
(``.OUT.partial``, renamed to ``OUT`` when complete) and share one policy for it (:func:`continue_partial`):

- no partial file, or one without a finished row (a run killed outright before its first, e.g. by kill -9 or the
  OOM killer, which leaves what it was writing): the run starts afresh (``--resume`` may always be passed, e.g. by
  a job script), removing such a file;
- ``--resume`` with the same settings: the run continues after the kept rows (with ``--overwrite`` too, which
  then only allows replacing an existing output);
- ``--resume`` with other settings, with or without ``--overwrite``: refused, listing the changes. ``--resume``
  asks for the kept rows, so they are never dropped behind it: rerun with the earlier settings to continue,
  or pass ``--overwrite`` without ``--resume`` to start again;
- ``--overwrite`` without ``--resume``: the kept rows are discarded (the file is removed), with a warning naming
  it;
- neither: refused, saying which option to pass (and what changed, if anything did, since ``--resume`` would
  then be refused too).

So an output never mixes rows computed under different settings, and kept rows are dropped only when asked.

A finished run leaves no partial file, only its output. ``--resume`` alone on that output (a job script rerun
after its last step had already finished) is answered by :func:`finished_output`: nothing to do when the output
records this run's settings and inputs, refused naming what differs otherwise. ``--overwrite`` replaces it, with
or without ``--resume``.

The model a run uses is one of its settings twice over: ``model``, its name or path, and ``weights``, a
fingerprint of the weights it loaded (:func:`weights_fingerprint`). :func:`same_weights_settings` makes the
weights decide, as ``finetune`` and ``icl`` do (:mod:`genomix.tasks.identity`): other weights at the same path
are refused, the same weights at another path resume; a run recorded before fingerprints were kept is compared
by its model's name or path, as it was then.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NoReturn

from .errors import GenomixError, InputFormatError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: How a setting that one side lacks (absent, None or empty) is shown in a change list.
UNSET = "-"
#: The advice of every refusal to continue an interrupted run's rows. Advice names the keyword argument of the
#: library call and the command's flag together, since the same error reaches Python callers and the commands.
START_AGAIN = "start again with overwrite=True and resume=False (--overwrite without --resume)"


def flat_settings(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of keys after ``prefix`` (``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``),
    so that a change deep in a recipe is named by its path instead of shown as two whole sub-mappings."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        out.update(flat_settings(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value})
    return out


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """``key: old -> new`` for each of ``keys`` (default: every key of either mapping, sorted) whose values
    differ, in that order; a value one side lacks shows as :data:`UNSET`."""
    keys = sorted(set(old) | set(new)) if keys is None else keys
    return [f"{key}: {_shown(old.get(key))} -> {_shown(new.get(key))}" for key in keys if old.get(key) != new.get(key)]


def _shown(value: Any) -> str:
    text = "" if value is None else str(value)
    return text or UNSET


def continue_partial(partial: Path, read_settings: Callable[[], Mapping[str, Any]], settings: Mapping[str, Any], *,
                     resume: bool, overwrite: bool, holds_rows: Callable[[], bool] | None = None) -> bool:
    """Whether a command continues after the rows an interrupted run kept in ``partial`` (True) or starts afresh
    (False), by the policy in the module docstring; raises :class:`InputFormatError` where it refuses.
    ``read_settings`` returns the settings recorded in ``partial`` (called only when they matter, so a file
    that is discarded is never read); ``settings`` are this run's. ``holds_rows``: whether ``partial`` holds a
    finished row (default: it does); one that holds none is removed, with nothing to continue or lose."""
    if not partial.exists():
        return False
    if holds_rows is not None and not holds_rows():
        log.info("removing %s, left by a run stopped before its first finished row", partial)
        partial.unlink()
        return False
    if overwrite and not resume:
        log.warning("discarding %s, the rows of an interrupted run (overwrite without resume)", partial)
        partial.unlink()
        return False
    changes = "; ".join(changed_settings(read_settings(), settings))
    if resume and not changes:
        return True
    if resume:
        raise InputFormatError(f"{partial}: the interrupted run used other settings ({changes}); resume=True "
                               f"(--resume) continues it only with those: rerun with them, or {START_AGAIN}")
    if changes:
        raise InputFormatError(f"{partial} holds rows of an interrupted run with other settings ({changes}): "
                               "overwrite=True (--overwrite) starts again without them, or rerun with its settings "
                               "and resume=True (--resume) to continue it")
    raise InputFormatError(f"{partial} holds rows of an interrupted run: resume=True (--resume) continues it, "
                           "overwrite=True (--overwrite) starts again without them")


def partial_path(out: str | os.PathLike) -> Path:
    """Where ``embed``, ``generate`` and ``score-variants`` keep the finished rows of a run writing ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def output_may_exist(out: str | os.PathLike, resume: bool, overwrite: bool) -> bool:
    """Whether an existing ``out`` passes a command's first check of its output path, before its slow work (the
    ``overwrite`` of :func:`genomix.outputs.check_output`): with ``overwrite``, or with ``resume`` and no
    interrupted run's rows, where ``out`` may be a finished run's output, which :func:`finished_output` judges
    once the model is loaded."""
    return overwrite or (resume and not partial_path(out).exists())


def finished_output(out: Path, partial: Path, read_settings: Callable[[], Mapping[str, Any]],
                    settings: Mapping[str, Any], inputs_differ: Callable[[], str], *, resume: bool,
                    overwrite: bool) -> bool:
    """Whether ``out`` already is this run's complete output, so that there is nothing to do (True), or the run is
    to write it (False); raises :class:`InputFormatError` where an existing ``out`` may not be replaced.

    Only ``resume`` without ``overwrite``, an existing ``out`` and no ``partial`` (no interrupted run to continue)
    ask the question; then ``read_settings`` gives the settings ``out`` records, compared with this run's
    ``settings``, and ``inputs_differ`` (called only when the settings agree, and free to consume the inputs, since
    either answer ends the run) says how this run's inputs differ from those ``out`` holds ("" when they do not).
    Otherwise an existing ``out`` is replaced only with ``overwrite``, as :func:`genomix.outputs.check_output`
    says."""
    if not out.exists():
        return False
    if overwrite:
        return False
    if not resume or partial.exists():
        raise InputFormatError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    changes = "; ".join(changed_settings(read_settings(), settings))
    difference = f"other settings ({changes})" if changes else inputs_differ()
    if difference:
        raise InputFormatError(f"{out} is the output of a finished run with {difference}; resume=True (--resume) "
                               "continues only an interrupted run: pass overwrite=True (--overwrite) to replace it, "
                               "or write elsewhere")
    log.warning("%s is already complete for these inputs and settings: nothing to do", out)
    return True


def end_interrupted_run(exc: BaseException, kept: int, partial_files: Iterable[Path], advice: str) -> NoReturn:
    """End a run that ``exc`` stopped: with no finished rows (``kept`` is 0) its partial files are removed and
    ``exc`` goes on unchanged, since there is nothing to resume; otherwise :func:`reraise_keeping` with
    ``advice``."""
    if not kept:
        for path in partial_files:
            path.unlink(missing_ok=True)
        raise exc
    reraise_keeping(exc, advice)


def reraise_keeping(exc: BaseException, advice: str) -> NoReturn:
    """Re-raise ``exc``, which stopped a run whose finished rows stay in its partial file, with ``advice`` (where
    they are and how to continue): Ctrl-C becomes ``KeyboardInterrupt(advice)``, which the CLI prints; a
    :class:`GenomixError` keeps its type with the advice appended; anything else goes on as it is."""
    if isinstance(exc, KeyboardInterrupt):
        raise KeyboardInterrupt(advice) from None
    if isinstance(exc, GenomixError):
        raise type(exc)(f"{exc}\n({advice}, once the cause is fixed)") from exc
    raise exc


def weights_fingerprint(module: torch.nn.Module) -> str:
    """``sha256:`` and the first 16 hex digits of a SHA-256 over ``module``'s state dict: every entry's
    name, dtype and shape, then all of its bytes, in name order.

    All bytes rather than a sample, because a sample misses a partial overwrite (one retrained layer) and
    the cost is small: SHA-256 runs at about 1.8 GB/s on a CPU with SHA extensions (0.2 s for a 300 MB model,
    under a second without them), less than reading the checkpoint took. Name order makes the fingerprint
    independent of module definition order; the dtype makes a bf16 copy of the same weights another model.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()[:16]


def same_weights_settings(saved: Mapping[str, Any], settings: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """``saved``, the settings an interrupted run recorded in ``where``, as :func:`continue_partial` is to
    compare them with this run's ``settings`` (which hold ``model`` and ``weights``): the model by its weights.

    - ``saved`` has ``weights``: they decide. ``model`` (name or path) is then only informational: with the
      same weights it is taken from ``settings``, so they resume from another path (logged); other weights
      are refused as a ``weights: sha256:... -> sha256:...`` change (with the ``model`` change, if any).
    - ``saved`` lacks ``weights`` (a run from before fingerprints were kept): a missing value would count as a
      change and refuse every such resume, so ``weights`` is taken from ``settings`` and the run is compared
      by ``model`` as it was then, with a warning that the weights themselves are not checked.
    """
    saved = dict(saved)
    if "weights" not in settings:
        return saved
    if "weights" not in saved:
        saved["weights"] = settings["weights"]
        log.warning("%s was written before genomix kept a fingerprint of the model's weights: only the model's "
                    "path or name (%s) is compared, not its weights", where, settings.get("model", UNSET))
    elif saved["weights"] == settings["weights"]:
        if saved.get("model") != settings.get("model"):
            log.info("%s: the interrupted run used %s, which held the same weights as %s (fingerprint %s)",
                     where, saved.get("model", UNSET), settings.get("model", UNSET), settings["weights"])
        if "model" in settings:
            saved["model"] = settings["model"]
        else:
            saved.pop("model", None)
    return saved


__all__ = ["UNSET", "changed_settings", "continue_partial", "finished_output", "flat_settings",
           "output_may_exist", "partial_path", "same_weights_settings", "weights_fingerprint"]
