"""Checkpoints in and out: any supported layout, local or on the Hugging Face Hub, to a genomix model.

- :func:`from_pretrained` -- a local directory or Hub id in any layout (auto-detected by the adapters
  in :mod:`genomix.hub.formats`) -> a genomix model with the requested head.
- :func:`save_native` / :func:`convert` -- write genomix's own layout (``config.json`` +
  ``model.safetensors`` + tokenizer files), which ``transformers.AutoModel*`` loads natively.
- :func:`push_to_hub` -- upload the native layout.

Importing this package registers every genomix family with transformers' Auto* classes.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..devices import resolve_device
from ..errors import CheckpointError, ConfigError
from ..models.base import GenomixPreTrainedModel, check_config_fields
from ..models.registry import get_family
from .auto import register_auto_classes
from .formats import LoadedCheckpoint, detect_format, load_checkpoint
from .integrity import checked_by_the_end
from .resolve import resolve

log = logging.getLogger(__name__)

register_auto_classes()


def _retarget(state_dict: dict[str, torch.Tensor], source: str, target: str, prefix: str,
              keep_head: bool = True) -> dict[str, torch.Tensor]:
    """Move weights saved with one head (``source`` task) onto another: keep the backbone, drop the head (also
    the ``target`` head itself unless ``keep_head``)."""
    if source == target and keep_head:
        return state_dict
    if source == "base":
        backbone = {f"{prefix}.{k}": v for k, v in state_dict.items()}
    else:
        backbone = {k: v for k, v in state_dict.items() if k.startswith(prefix + ".")}
    if target == "base":
        return {k[len(prefix) + 1:]: v for k, v in backbone.items()}
    return backbone


def build_from_checkpoint(
    checkpoint: LoadedCheckpoint, task: str | None = None, fresh_head: bool = False, **config_overrides: Any
) -> GenomixPreTrainedModel:
    """Instantiate the checkpoint's family with ``task``'s head and load its weights.

    Weights of a different head (e.g. a causal-LM checkpoint loaded for classification) keep the
    backbone; the new head starts fresh, and the log says which parameters were initialised. With
    ``fresh_head`` the checkpoint's own ``task`` head is dropped too: a classifier fine-tuned on one task
    is the backbone for another, whose classes (and their number) are not the first task's.
    """
    config = checkpoint.config
    check_config_fields(type(config), list(config_overrides), "config overrides")
    for key, value in config_overrides.items():
        setattr(config, key, value)
    if hasattr(config, "_validate"):
        config._validate()
    family = get_family(config.model_type)
    task = task or checkpoint.task
    if task not in family.models:
        raise ConfigError(f"{config.model_type} has no {task!r} head; available: {sorted(family.models)}")
    model_class = family.models[task]
    model = model_class(config)
    state_dict = _retarget(checkpoint.state_dict, checkpoint.task, task, model_class.base_model_prefix,
                           keep_head=not fresh_head)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches, e.g. a config override that changes sizes
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise CheckpointError(
            f"the checkpoint's weights do not fit the config with overrides {config_overrides or '{}'}: {detail}"
        ) from None
    if result.unexpected_keys:
        raise CheckpointError(f"unexpected keys for a {task} model: {sorted(result.unexpected_keys)[:8]}")
    if result.missing_keys:
        head = [k for k in result.missing_keys if not k.startswith(model_class.base_model_prefix + ".")]
        if len(head) != len(result.missing_keys) or (task == checkpoint.task and not fresh_head):
            raise CheckpointError(f"checkpoint lacks weights for: {sorted(result.missing_keys)[:8]}")
        log.info("initialised a fresh %s head (%s) on the pretrained backbone", task, ", ".join(sorted(head)))
    return model.eval()


def from_pretrained(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    task: str | None = None,
    format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    device: str | torch.device | None = None,
    fresh_head: bool = False,
    **config_overrides: Any,
) -> GenomixPreTrainedModel:
    """A genomix model from a local directory or Hub id in any supported layout.

    ``task`` (``base``/``causal-lm``/``masked-lm``/``classification``) picks the head; by default the
    one the checkpoint was saved with. A head other than the checkpoint's starts fresh, and so does its own
    with ``fresh_head`` (fine-tuning a fine-tuned classifier on another task). ``format`` forces a layout instead
    of detecting it.
    ``config_overrides`` set config fields (e.g. ``num_labels=2, pooling="last"``); ``dtype`` (or
    transformers' older ``torch_dtype``) casts the weights, e.g. ``dtype=torch.bfloat16`` (the model then runs
    under autocast to it, see :class:`~genomix.models.base.GenomixPreTrainedModel`); ``"auto"`` keeps the dtype
    the checkpoint records (its config's ``dtype``: bf16 for a model saved in bf16), without one fp32, the
    default; a name that is not a floating-point torch dtype (``"bf16"``, ``torch.int64``) is a
    :class:`ConfigError`. The model is returned in eval mode on ``device`` (default the CPU; ``"cuda"``,
    ``"cuda:1"``, checked against this machine).
    ``trust_remote_code`` (which Hub cards of Caduceus and HyenaDNA ask for) is accepted
    and changes nothing: genomix runs no code from the Hub. So are transformers' other loading options, as
    :func:`_loading_options` says.
    """
    config_overrides.pop("trust_remote_code", None)
    requested = _requested_dtype(config_overrides)
    dtype = _weight_dtype(requested)
    device = _loading_options(config_overrides, device)
    target = None if device is None else resolve_device(device, "device=")
    directory = resolve(name_or_path, revision, cache_dir, local_files_only, token)
    with checked_by_the_end():  # the recorded weights are hashed while the model is built
        model = build_from_checkpoint(load_checkpoint(directory, format), task, fresh_head, **config_overrides)
    if requested == "auto":
        dtype = _recorded_dtype(model.config)
    return model.to(device=target, dtype=dtype)


def _requested_dtype(options: dict[str, Any]) -> Any:
    """``dtype`` or transformers' older ``torch_dtype``, taken out of ``options``; both, naming different types,
    are refused (one would otherwise reach the config as an unknown field)."""
    dtype, torch_dtype = options.pop("dtype", None), options.pop("torch_dtype", None)
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ConfigError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass dtype only")
    return dtype if dtype is not None else torch_dtype


#: transformers' loading options that change nothing for genomix (weights are always read whole with
#: ``weights_only``, whatever file holds them), accepted so that code written for transformers runs.
_NO_EFFECT_OPTIONS = ("low_cpu_mem_usage", "use_safetensors")


def _loading_options(options: dict[str, Any], device: Any) -> Any:
    """Take transformers' loading options out of ``options`` (the rest are config fields) and return the device
    to load onto. ``device_map`` names one device (``"cpu"``, ``"cuda:1"``, ``1``, ``{"": "cuda"}``; ``"auto"``: a
    GPU when there is one), as ``device`` does: a genomix model runs on one device, so a map placing layers on
    several is refused, as is ``output_loading_info``: genomix checks every tensor by name and shape and refuses
    a mismatch, so there is no partial load to report."""
    for name in _NO_EFFECT_OPTIONS:
        options.pop(name, None)
    if options.pop("output_loading_info", False):
        raise ConfigError("output_loading_info: genomix loads every tensor by name and shape or refuses the "
                          "checkpoint, so there are no missing or unexpected keys to report; drop the option")
    if "device_map" not in options:
        return device
    mapped = options.pop("device_map")
    if isinstance(mapped, dict):
        places = {str(place) for place in mapped.values()}
        if len(places) != 1:
            raise ConfigError(f"device_map={mapped!r} places parts of the model on different devices; a genomix "
                              "model runs on one: pass device='cuda:N' (or one device_map entry)")
        mapped = places.pop()
    if mapped in ("auto", "balanced", "balanced_low_0", "sequential"):
        mapped = "cuda" if torch.cuda.is_available() else "cpu"
    elif isinstance(mapped, int):
        mapped = f"cuda:{mapped}"
    if device is not None and resolve_device(device, "device=") != resolve_device(mapped, "device_map="):
        raise ConfigError(f"device={device!r} and device_map={mapped!r} disagree; pass one of them")
    return mapped


def _recorded_dtype(config: Any) -> torch.dtype | None:
    """The floating-point dtype a checkpoint's config records (transformers writes ``dtype``, before 4.56
    ``torch_dtype``), or None where it records none or another kind."""
    recorded = getattr(config, "dtype", None) or vars(config).get("torch_dtype")
    try:
        return _weight_dtype(recorded)
    except ConfigError:  # not a floating-point dtype: nothing to keep
        return None


def _weight_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``from_pretrained``'s ``dtype`` as a floating-point :class:`torch.dtype` (``None`` and ``"auto"``: no cast
    here; ``"auto"`` is resolved once the checkpoint's config is read), refusing anything else with a
    :class:`ConfigError` before the checkpoint is read."""
    if dtype is None or dtype == "auto":
        return None
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ConfigError(f"dtype={dtype!r} is not a floating-point torch dtype; pass e.g. torch.bfloat16, "
                          "torch.float16 or 'float32'")
    return resolved


LM_TASKS = ("causal-lm", "masked-lm")


def load_model(name: str, task: str, revision: str | None = None) -> GenomixPreTrainedModel:
    """A model for inference with the ``task`` head: a checkpoint (local dir / Hub id, any layout) or, for
    testing, a named size with fresh random weights (logged as a warning: its outputs carry no meaning). The
    random weights are drawn from a fixed seed, without touching the global generator, so that two runs (and a
    resumed run) see the same model.

    ``task="lm"`` asks for the language-model head the model was trained with: the checkpoint's own when
    it has one, else its family's pretraining head (causal for HyenaDNA and Mamba, masked for Caduceus and
    M2-BERT)."""
    from ..models.registry import available_models, build, get_family

    if not Path(name).is_dir() and name in available_models():
        log.warning("%s is a named size, not a checkpoint: running it with RANDOM weights", name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build(name, task=None if task == "lm" else task).eval()
    if task != "lm":
        return from_pretrained(name, revision=revision, task=task)
    checkpoint = load_checkpoint(resolve(name, revision))
    config = checkpoint.config
    own = checkpoint.task if checkpoint.task in LM_TASKS else None
    chosen = own or getattr(config, "default_task", None) or get_family(config.model_type).default_task
    return build_from_checkpoint(checkpoint, chosen)


def save_native(model: GenomixPreTrainedModel, out_dir: str | os.PathLike) -> Path:
    """Write ``model`` in genomix's layout (config, safetensors weights, tokenizer) atomically.

    The files go to a temporary sibling directory that is renamed to ``out_dir`` when complete, so an interrupted
    save leaves ``out_dir`` as it was (a process killed outright leaves a hidden temporary folder, which the next
    save beside it removes). An existing ``out_dir`` must be empty or hold an earlier genomix checkpoint and
    nothing else, which is replaced; any other folder (another layout's checkpoint, a convert's own source) is
    refused, never deleted. A symbolic link to a folder is written through: its target is what is replaced.
    """
    from ..outputs import make_output_dir, temp_sibling
    from ..tokenizer import Tokenizer

    out = Path(out_dir).expanduser()
    out = out.resolve() if out.is_symlink() else out
    check_replaceable(out)
    make_output_dir(out.parent, option="output directory")
    tmp, old = temp_sibling(out), temp_sibling(out, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        model.save_pretrained(tmp)
        Tokenizer(model_max_length=model.config.max_seq_len).save_pretrained(tmp)
        _as_umask_allows(tmp)
        if out.exists():
            os.replace(out, old)  # moved aside, not deleted, until the new checkpoint is in place
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        if isinstance(exc, OSError):  # no permission, a read-only or full disk
            raise CheckpointError(f"{out}: cannot write the checkpoint ({exc.strerror or exc}); choose another "
                                  "output directory") from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


def check_replaceable(out: Path, overwrite: bool = True) -> None:
    """Refuse an output directory ``out`` that :func:`save_native` may not replace: a file, or a folder holding
    anything but an earlier genomix checkpoint (the files a native save writes), and without ``overwrite`` that
    checkpoint too."""
    from .formats.genomix_native import GenomixNative, saved_by_genomix

    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is a file; the output is a directory, choose another path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    entries = sorted(out.iterdir())
    if GenomixNative().detect(out):
        others = [p.name for p in entries if not (p.is_file() and saved_by_genomix(p.name))]
        if others:
            raise CheckpointError(f"{out}: holds a genomix checkpoint and files a genomix save does not write "
                                  f"({', '.join(others[:6])}), which replacing it would delete; move them, or choose "
                                  "a new or empty folder")
        if overwrite:
            return
        raise CheckpointError(f"{out}: holds a genomix checkpoint already; choose a new folder, or replace it with "
                              "overwrite=True (--overwrite)")
    try:
        held = f"a {detect_format(out).name} checkpoint"
    except CheckpointError:
        held = "files genomix did not write"
    raise CheckpointError(f"{out}: exists and holds {held} ({', '.join(p.name for p in entries[:6])}); only an "
                          "earlier genomix checkpoint is replaced there: choose a new or empty folder")


def _as_umask_allows(directory: Path) -> None:
    """Give ``directory`` and its files the permissions a plain ``mkdir``/``open`` would (the temporary directory
    is private, and the weights may be written private too), so a checkpoint on a shared disk is readable as
    every other output is."""
    mask = os.umask(0)
    os.umask(mask)
    directory.chmod(0o777 & ~mask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def convert(src: str | os.PathLike, dst: str | os.PathLike, format: str | None = None, revision: str | None = None,
            overwrite: bool = False) -> Path:
    """Any supported layout (local or Hub) -> genomix layout at ``dst``, keeping the saved head. ``dst`` is checked
    (:func:`check_replaceable`) before ``src`` is read, and written atomically (:func:`save_native`). An earlier
    genomix checkpoint at ``dst`` is replaced only with ``overwrite``: a mistyped folder name would otherwise lose
    an exported or fine-tuned model without a word, as no other genomix command's output would."""
    check_replaceable(Path(dst).expanduser(), overwrite)
    directory = resolve(src, revision)
    checkpoint = load_checkpoint(directory, format)
    return save_native(build_from_checkpoint(checkpoint), dst)


def push_to_hub(
    model: GenomixPreTrainedModel,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload genomix model",
) -> str:
    """Upload ``model`` in the native layout to ``repo_id`` (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_native(model, Path(tmp) / "model")
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message
        )
    return str(getattr(info, "commit_url", info))


__all__ = [
    "build_from_checkpoint", "check_replaceable", "convert", "detect_format", "from_pretrained", "load_checkpoint",
    "load_model", "push_to_hub", "register_auto_classes", "resolve", "save_native",
]
