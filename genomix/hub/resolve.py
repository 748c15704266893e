"""Turn a model reference into a local directory: a path, or a Hub id through huggingface_hub's cache.

Hub downloads fetch only the files some known layout needs (``allow_patterns``; of weights published both as
safetensors and as pickles, only the safetensors), honour ``revision``
(branch, tag or commit), and run offline (cache only) when ``HF_HUB_OFFLINE`` is set at call time or
``local_files_only=True``. Every failure becomes a :class:`DownloadError` that says what to do.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from ..errors import CheckpointError, DownloadError

_REPO_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for cache-only resolution (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _unknown_model_message(name: str) -> str:
    """Why ``name`` names no model, with the named sizes closest to it (a misspelt ``--model``)."""
    from ..models.registry import available_models

    names = available_models()
    if name in names:
        return (f"{name!r} is a named model size, not a checkpoint: for fresh weights use "
                f"genomix.models.build({name!r})")
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"Did you mean {' or '.join(map(repr, close))}?" if close else f"Named sizes: {', '.join(names)}."
    return (f"{name!r} is neither a local directory nor a Hub id of the form 'owner/name' nor a named model "
            f"size. {hint} (A named size has fresh random weights; in Python: genomix.models.build(NAME).)")


def _is_hub_id(name: str) -> bool:
    """Whether ``name`` can be a Hub id ``owner/name`` by huggingface_hub's own rules. Paths that do not exist
    fail here (``./x``, ``../x``, ``~/x``, ``/x``, ``a\\b``), so they get the clear "neither a directory nor a
    Hub id" error instead of huggingface_hub's validation traceback."""
    if not _REPO_ID.match(name):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


#: Weights files that the same checkpoint may also publish as safetensors, which every layout reads first.
_PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json")


def _one_weights_format(patterns: list[str], name: str, revision: str | None, token: str | bool | None) -> list[str]:
    """``patterns`` without the pickled weights when the repository also publishes safetensors, which the layouts
    read first: a repository holding both would otherwise be downloaded twice over. Without a listing (no network,
    a private repository) the patterns stay as they are, and the download itself reports the problem."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    try:  # one request, no retries: a machine without network must not wait here before using its cache
        info = HfApi().model_info(name, revision=revision, token=token, timeout=10)
        files = [sibling.rfilename for sibling in info.siblings or ()]
    except Exception:  # noqa: BLE001 - any failure here only means "fetch what any layout may need"
        return patterns
    if any(fnmatch(f, "model*.safetensors") for f in files):
        return [p for p in patterns if p not in _PICKLED_WEIGHTS]
    return patterns


def resolve(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local directory holding the checkpoint ``name_or_path`` refers to."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{path}: is a file; pass the checkpoint's directory")
    if not _is_hub_id(name):
        raise CheckpointError(_unknown_model_message(name))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .formats import formats

    offline = hub_offline() if local_files_only is None else local_files_only
    patterns = sorted({p for adapter in formats() for p in adapter.patterns})
    if not offline:
        patterns = _one_weights_format(patterns, name, revision, token)
    where = f"{name}" + (f" at revision {revision}" if revision else "")
    try:
        local = snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=patterns,
            local_files_only=offline,
            token=token,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        # huggingface_hub reads HF_HUB_OFFLINE once, at import: its own offline mode counts too
        asked = offline or hub_offline() or isinstance(exc, OfflineModeIsEnabled)
        mode = "offline mode is on (HF_HUB_OFFLINE / local_files_only)" if asked else "there is no network connection"
        fetch = " ".join(["hf download", name, *(["--revision", revision] if revision else []),
                          *(["--cache-dir", str(cache_dir)] if cache_dir else [])])
        raise DownloadError(
            f"{where} is not in the Hugging Face cache ({cache_dir or 'default cache'}), and it cannot be downloaded: "
            f"{mode}. Fetch it where there is network (`{fetch}` fills that cache; copy the cache here), or "
            f"pass a local checkpoint directory. ({type(exc).__name__})"
        ) from None
    except HFValidationError:  # whatever huggingface_hub refuses that _is_hub_id let through
        raise CheckpointError(_unknown_model_message(name)) from None
    except RevisionNotFoundError:
        raise DownloadError(f"{name}: revision {revision!r} does not exist on the Hub") from None
    except GatedRepoError:
        raise DownloadError(f"{name}: gated repository; accept its terms on the Hub and log in (HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{name}: no such Hub repository (or it is private: log in with HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise DownloadError(f"{where}: download failed ({exc}); check the network and retry") from None
    return Path(local)
