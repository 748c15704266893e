"""Activation checkpointing with the checkpoint held in host memory.

Per-block checkpointing keeps each block's input on the device: for HyenaDNA ``large-1m`` that is
8 GiB per million tokens of fp32 residual stream, the part of a training step's memory that grows with
depth. :func:`host_checkpoint` keeps that input in (pinned) host memory instead: the forward runs
without recording a graph and copies the input out asynchronously; the backward copies it back,
recomputes the block with the forward's autocast and RNG state and back-propagates through it. Only the
checkpoint crosses the bus, twice per step; its gradient stays on the device.

Like reentrant checkpointing it back-propagates inside the backward, so parameters' gradients are
accumulated there: use it without DDP/FSDP gradient hooks (single-device long-context runs).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch


def _autocast_state(device_type: str) -> dict[str, Any]:
    return {"enabled": torch.is_autocast_enabled(device_type), "dtype": torch.get_autocast_dtype(device_type),
            "cache_enabled": torch.is_autocast_cache_enabled()}


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextlib.contextmanager
def _replayed_rng(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> Iterator[None]:
    """Run with the RNG as it was at the forward (dropout masks repeat), restoring the current state after."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield


class _HostCheckpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: Callable[..., torch.Tensor], hidden: torch.Tensor, *rest: Any):  # type: ignore[override]
        ctx.run, ctx.rest, ctx.device = run, rest, hidden.device
        ctx.autocast = _autocast_state(hidden.device.type)
        ctx.rng = _rng_state(hidden.device)
        ctx.host = torch.empty(hidden.shape, dtype=hidden.dtype, device="cpu", pin_memory=hidden.is_cuda)
        ctx.host.copy_(hidden, non_blocking=hidden.is_cuda)  # stream-ordered before any reuse of hidden's memory
        return run(hidden, *rest)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        hidden = ctx.host.to(ctx.device, non_blocking=True).requires_grad_(True)
        with torch.enable_grad(), _replayed_rng(ctx.rng, ctx.device), \
                torch.autocast(ctx.device.type, **ctx.autocast):
            out = ctx.run(hidden, *ctx.rest)
        torch.autograd.backward(out, grad)
        return (None, hidden.grad, *(None for _ in ctx.rest))


def host_checkpoint(run: Callable[..., torch.Tensor], hidden: torch.Tensor, *rest: Any) -> torch.Tensor:
    """``run(hidden, *rest)`` with ``hidden`` checkpointed in host memory (see the module docstring).

    ``run`` returns one tensor; ``rest`` holds the block's other arguments, none of which may need a
    gradient (masks, flags)."""
    if any(isinstance(t, torch.Tensor) and t.requires_grad for t in rest):
        raise ValueError("host_checkpoint: only the first argument may need a gradient")
    return _HostCheckpoint.apply(run, hidden, *rest)
