"""What ``quiet=True`` silences of the libraries a training run uses, for the Python API as for the CLI's
``--quiet``: Lightning's banners ("GPU available: ...", tips) go through its loggers at INFO, transformers draws
progress bars when it writes weights, and Lightning's own use of a deprecated torch pytree class warns once per
process. The settings are restored when the run returns, so that quieting one run does not quiet the caller's
later work."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings
from typing import Any, Callable, Iterator, TypeVar

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_Function = TypeVar("_Function", bound=Callable[..., Any])


@contextlib.contextmanager
def quiet_training_logs(quiet: bool = True) -> Iterator[None]:
    """Within the block, with ``quiet``: Lightning logs warnings and errors only, transformers draws no progress
    bars, and the pytree deprecation warning Lightning triggers is not shown. Without ``quiet``, nothing changes."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def quiet_when_asked(function: _Function) -> _Function:
    """Run ``function`` within :func:`quiet_training_logs` of its own ``quiet`` argument (passed or default)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with quiet_training_logs(bool(bound.arguments["quiet"])):
            return function(*args, **kwargs)

    return run  # type: ignore[return-value]
