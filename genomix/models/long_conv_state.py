"""Generation state of the long-convolution families (HyenaDNA, causal M2): what a mixer keeps to take one
token at a time exactly as its parallel forward over the whole sequence would.

A mixer of these families is: in-projection, short causal depthwise conv, gated long causal convolutions
with implicit filters, out-projection. Its next output needs the short conv's last inputs and every earlier
input of each long convolution (:func:`genomix.kernels.fftconv_update`). :class:`LongConvState` holds them
for sequences of up to ``length`` positions, fixed when allocated, so its tensors keep their shapes and
addresses from token to token (a CUDA graph replays the step, :mod:`.step_graph`).
:class:`LongConvGenerationMixin` gives a base model ``allocate_state``, ``prefill`` and ``step``
(:class:`.tasks.RecurrentLMMixin` turns them into logits).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from ..errors import ConfigError, RangeError
from .base import check_prompt, check_step_ids


@dataclasses.dataclass
class LongConvState:
    """One mixer's generation state, fp32 (the position int64)."""

    conv: torch.Tensor  # (batch, channels, width): the short conv's last inputs, oldest first
    history: torch.Tensor  # (convolutions, batch, d, length): each long convolution's inputs, by position
    filters: torch.Tensor  # (convolutions, d, length): the long filters' first `length` taps
    position: torch.Tensor  # (), int64: how many positions the state holds (the next one's index)
    started: bool = False

    #: Fields no step writes: a CUDA graph's warm-up need not save and restore them (:mod:`.step_graph`),
    #: which at long lengths is as large as the history.
    read_only_fields: ClassVar[tuple[str, ...]] = ("filters",)

    @classmethod
    def empty(cls, batch: int, conv_channels: int, conv_width: int, filters: torch.Tensor,
              device: torch.device | None = None) -> "LongConvState":
        """A fresh state around the long filters' taps ``filters`` (convolutions, d, length)."""
        filters = filters.detach().float().to(device)
        count, d, length = filters.shape
        return cls(conv=torch.zeros(batch, conv_channels, conv_width, device=device),
                   history=torch.zeros(count, batch, d, length, device=device), filters=filters,
                   position=torch.zeros((), dtype=torch.long, device=device))

    @property
    def length(self) -> int:
        return self.history.shape[-1]

    def take_rows(self, index: torch.Tensor, source: "LongConvState | None" = None) -> None:
        """Fill this state's sequences in place with sequences ``index`` of ``source`` (default: itself), which
        holds as many positions: beam search's reordering, and a prompt's state copied to its beams. The
        tensors keep their addresses (a captured generation step stays valid); the filters are shared."""
        source = self if source is None else source
        self.conv.copy_(source.conv.index_select(0, index))
        self.history.copy_(source.history.index_select(1, index))
        self.position.copy_(source.position)
        self.started = source.started

    def begin(self, projected: torch.Tensor) -> None:
        """Start the sequence with a prompt whose short-conv inputs are ``projected`` (batch, L, channels):
        keep the last of them; the caller stores each long convolution's inputs in ``history[i, ..., :L]``."""
        length = projected.shape[1]
        if self.started:
            raise ConfigError("a long-convolution state holds one sequence from its start: continue it with "
                              "step(), or allocate a fresh state for a new prompt")
        if length > self.length:
            raise RangeError(f"a prompt of {length} tokens does not fit a state allocated for {self.length} "
                             "positions")
        kept = min(length, self.conv.shape[-1])
        self.conv[..., -kept:] = projected[:, -kept:].transpose(1, 2)
        self.position.fill_(length)
        self.started = True


def run_mixer(mixer: torch.nn.Module, u: torch.Tensor, state: LongConvState | None, *args) -> torch.Tensor:
    """A block's mixer on ``u`` (batch, l, d): its ``step`` for one token of a started ``state``, else its
    forward (which fills a fresh ``state``, or refuses a started one)."""
    if state is not None and state.started and u.shape[1] == 1:
        return mixer.step(u[:, 0], state).unsqueeze(1)
    return mixer(u, *args, state=state)


class LongConvGenerationMixin:
    """``allocate_state`` / ``prefill`` / ``step`` for a base model whose layers' mixers (``_state_mixer``)
    have ``empty_state(batch, length, device)``; the family runs its blocks in ``_run_with_state``."""

    @property
    def max_state_length(self) -> int:
        """The most positions a state can hold: the long filters have ``max_seq_len`` taps."""
        return self.config.max_seq_len

    def allocate_state(self, batch: int, device: torch.device | None = None,
                       length: int | None = None) -> list[LongConvState]:
        """Fresh states for :meth:`prefill` and :meth:`step`, one per layer, for sequences of up to
        ``length`` positions (default ``max_seq_len``). A step costs O(length) (a dot product over every
        earlier position of each long convolution), so allocate what the sequence needs."""
        limit = self.max_state_length
        length = limit if length is None else int(length)
        if not 1 <= length <= limit:
            raise RangeError(f"a state holds 1..{limit} positions (max_seq_len), asked for {length}")
        return [self._state_mixer(layer).empty_state(batch, length, device) for layer in self.layers]

    def prefill(self, input_ids: torch.Tensor, state: list[LongConvState]) -> torch.Tensor:
        """A prompt ``input_ids`` (batch, L) in one parallel pass: the final-norm hidden of its last position
        (batch, d_model), with the fresh ``state`` filled as L calls of :meth:`step` would leave it."""
        check_prompt(input_ids, "prefill")
        return self._run_with_state(input_ids, state)[:, -1]

    def step(self, input_ids: torch.Tensor, state: list[LongConvState]) -> torch.Tensor:
        """One token per sequence after those ``state`` holds: ``input_ids`` (batch,) -> final-norm hidden
        (batch, d_model). The state must have room for it (:meth:`allocate_state`'s ``length``): past it the
        oldest position would drop out of the long convolutions, so the hidden states come back NaN (checked on
        the device: no synchronisation, and a CUDA graph of the step keeps the check)."""
        check_step_ids(input_ids, state[0].conv.shape[0], None)  # the ids: _run_with_state checks them
        hidden = self._run_with_state(input_ids[:, None], state)[:, 0]
        return hidden.masked_fill(state[0].position > state[0].length, float("nan"))  # position: after this token

    def _state_mixer(self, layer: torch.nn.Module) -> torch.nn.Module:
        raise NotImplementedError

    def _run_with_state(self, input_ids: torch.Tensor, state: list[LongConvState]) -> torch.Tensor:
        """Final-norm hidden states of ``input_ids`` (batch, l) run through the blocks with ``state``: a
        prompt (fresh state) or one token (l = 1, started state)."""
        raise NotImplementedError


__all__ = ["LongConvGenerationMixin", "LongConvState", "run_mixer"]
