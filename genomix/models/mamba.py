"""Mamba (selective state-space) language models with mamba_ssm's parameter names and initialisation.

One file holds the whole family, HF-style: :class:`MambaConfig`, the mixer (:class:`Mamba`), the pre-norm
residual :class:`Block`, the backbone :class:`MambaModel` and its heads (causal LM, masked LM, sequence
classification; the task mixins of :mod:`genomix.models.tasks`). Parameter names equal those of
mamba_ssm's ``MambaLMHeadModel`` (``backbone.embedding``, ``backbone.layers.{i}.norm`` /
``.mixer.{in_proj,conv1d,x_proj,dt_proj,out_proj,A_log,D}``, ``backbone.norm_f``), so its checkpoints
load without renaming; the LM head is tied to the embedding (mamba_ssm's duplicate ``lm_head.weight``
is dropped by the ``mamba_ssm`` checkpoint adapter).

Numerics: parameters fp32, the residual stream in fp32 when ``residual_in_fp32``, normalisation in fp32,
and the scan goes through :func:`genomix.kernels.selective_scan` (Triton on CUDA, reference elsewhere),
which accumulates its state in fp32. ``step()`` runs the same network one token at a time from conv and
SSM state caches (:class:`LayerState`), for fast generation and left-to-right scoring; ``prefill()`` fills
those caches from a whole prompt in one parallel pass (the scan's last state), so a long prompt costs one
forward rather than one step per token.

Caduceus (:mod:`genomix.models.caduceus`) reuses the mixer, norms and add-norm defined here.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..kernels import causal_conv1d, causal_conv1d_update, selective_scan, selective_state_update
from ..kernels.layer_norm import add_norm as fused_add_norm
from ..kernels.layer_norm import rms_norm
from ..kernels.transpose import time_major
from .norms import autocast_output_dtype
from .base import (BaseModelMixin, GenomixConfig, GenomixPreTrainedModel, check_input_ids, check_prompt, check_step_ids,
                   in_weights_precision, run_layer)
from .heads import check_pooling
from .registry import Family, register_family
from .step_graph import step_function
from .tasks import CausalLMMixin, LMHeadMixin, MaskedLMMixin, RecurrentLMMixin, SequenceClassificationMixin


class MambaConfig(GenomixConfig):
    """Hyper-parameters of a Mamba-1 language model (mamba_ssm's ``MambaConfig`` + ``ssm_cfg`` fields).

    ``d_state``/``d_conv``/``expand``/``dt_*``/``conv_bias``/``bias`` are the mixer's (mamba_ssm keeps them
    in ``ssm_cfg``); ``dt_rank="auto"`` means ``ceil(d_model / 16)``. ``fused_add_norm`` does not change
    the arithmetic of a plain Mamba and is kept for round-tripping mamba_ssm configs.
    """

    model_type = "genomix-mamba"
    size_fields = GenomixConfig.size_fields + ("d_state", "d_conv", "expand")

    def __init__(
        self,
        d_model: int = 256,
        n_layer: int = 8,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        rms_norm: bool = True,
        norm_epsilon: float = 1e-5,
        residual_in_fp32: bool = True,
        fused_add_norm: bool = True,
        initializer_range: float = 0.02,
        rescale_prenorm_residual: bool = True,
        n_residuals_per_layer: int = 1,
        pooling: str = "mean",
        classifier_dropout: float = 0.0,
        max_seq_len: int = 1_048_576,
        **kwargs: Any,
    ) -> None:
        check_pooling(pooling)
        if dt_init not in ("random", "constant"):
            raise ConfigError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        if dt_rank != "auto" and not (isinstance(dt_rank, int) and dt_rank > 0):
            raise ConfigError(f"dt_rank must be 'auto' or a positive integer, got {dt_rank!r}")
        self.d_model = d_model
        self.n_layer = n_layer
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.dt_rank = dt_rank
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.dt_init = dt_init
        self.dt_scale = dt_scale
        self.dt_init_floor = dt_init_floor
        self.conv_bias = conv_bias
        self.bias = bias
        self.rms_norm = rms_norm
        self.norm_epsilon = norm_epsilon
        self.residual_in_fp32 = residual_in_fp32
        self.fused_add_norm = fused_add_norm
        self.initializer_range = initializer_range
        self.rescale_prenorm_residual = rescale_prenorm_residual
        self.n_residuals_per_layer = n_residuals_per_layer
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(max_seq_len=max_seq_len, **kwargs)
        if not 0 < self.dt_min <= self.dt_max:  # the Δ bias is drawn log-uniformly between them
            raise ConfigError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {self.dt_min} and "
                              f"{self.dt_max}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)


# --------------------------------------------------------------------------------------------- norms
class RMSNorm(nn.Module):
    """Root-mean-square norm (mamba_ssm's ``RMSNorm``: computed in fp32, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def make_norm(dim: int, rms_norm: bool, eps: float) -> nn.Module:
    """The block norm named by the config: RMSNorm, or LayerNorm (with bias) as in mamba_ssm."""
    return RMSNorm(dim, eps=eps) if rms_norm else nn.LayerNorm(dim, eps=eps)


def add_norm(
    norm: nn.Module, x: torch.Tensor, residual: torch.Tensor | None, residual_in_fp32: bool,
    autocast_output: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-norm residual step: ``residual += x; return norm(residual), residual`` (mamba_ssm's fused add-norm
    math), as one fused kernel each way on CUDA (:func:`genomix.kernels.add_norm`).

    The norm runs in fp32 from the residual in the weight's dtype. Under autocast (``autocast_output``) it
    returns the autocast dtype, which is what the mixer's in-projection would cast it to; a model's final
    norm passes ``autocast_output=False`` and returns the weight's dtype (the hidden states users read)."""
    residual_dtype = torch.float32 if residual_in_fp32 else None
    out_dtype = None
    if autocast_output and norm.weight is not None:
        out_dtype = autocast_output_dtype(norm.weight.dtype, x.device.type)
    return fused_add_norm(x, residual, norm.weight, norm.bias, norm.eps, isinstance(norm, RMSNorm), out_dtype,
                          residual_dtype)


def residual_stream(hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    """What a block's add-norm reads: ``hidden + residual`` (just ``hidden`` at the first block)."""
    return hidden if residual is None else hidden + residual


# --------------------------------------------------------------------------------------------- mixer
@dataclasses.dataclass
class LayerState:
    """Recurrent state of one mixer: the last ``d_conv`` conv inputs and the SSM state, both fp32, and
    whether a sequence has started in it (a fresh state is read as zeros without being read at all)."""

    conv: torch.Tensor  # (batch, d_inner, d_conv)
    ssm: torch.Tensor  # (batch, d_inner, d_state)
    started: bool = False

    def take_rows(self, index: torch.Tensor, source: "LayerState | None" = None) -> None:
        """Fill this state's sequences in place with sequences ``index`` of ``source`` (default: itself):
        beam search reorders its beams this way, and copies a prompt's state to each of its beams. The
        tensors keep their addresses, so a captured generation step (:mod:`.step_graph`) stays valid."""
        source = self if source is None else source
        self.conv.copy_(source.conv.index_select(0, index))
        self.ssm.copy_(source.ssm.index_select(0, index))
        self.started = source.started


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A channel-major (batch, E, L) activation as the (batch, L, E) input of a linear layer. One sequence's
    transposed view is a transposed matrix, which the matmul reads as it is; a batch of them is not one
    matrix, so it is relaid out first (:func:`genomix.kernels.transpose.time_major`: PyTorch's own copy
    of such a view is an order of magnitude slower)."""
    return x.transpose(1, 2) if x.shape[0] == 1 else time_major(x).transpose(1, 2)


class Mamba(nn.Module):
    """The Mamba-1 mixer: in-projection to (x, z), causal depthwise conv + SiLU, input-dependent
    (Δ, B, C), selective scan, gate ``SiLU(z)``, out-projection. Names and init are mamba_ssm's."""

    def __init__(self, config: MambaConfig, own_projections: bool = True) -> None:
        """``own_projections=False`` makes a mixer without in/out projections; its caller passes another
        mixer's (Caduceus' weight-tied reverse direction), so no parameter is registered twice."""
        super().__init__()
        d_model, d_inner, n = config.d_model, config.d_inner, config.d_state
        self.d_inner, self.d_state, self.d_conv = d_inner, n, config.d_conv
        self.dt_rank = config.resolved_dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=config.bias) if own_projections else None
        self.conv1d = nn.Conv1d(
            d_inner, d_inner, config.d_conv, groups=d_inner, padding=config.d_conv - 1, bias=config.conv_bias
        )
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, n))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=config.bias) if own_projections else None
        self.reset_ssm_parameters(config)

    @torch.no_grad()
    def reset_ssm_parameters(self, config: MambaConfig) -> None:
        """mamba_ssm's init: Δ-projection weights ~ U(±rank^-½·scale); its bias is softplus⁻¹ of Δ drawn
        log-uniformly in [dt_min, dt_max] (so softplus(bias) starts there); ``A = -(1..N)`` (S4D-real)."""
        std = self.dt_rank**-0.5 * config.dt_scale
        if config.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(config.dt_max) - math.log(config.dt_min))
            + math.log(config.dt_min)
        ).clamp(min=config.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.A_log._no_weight_decay = True
        self.D.fill_(1.0)
        self.D._no_weight_decay = True

    def _ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Δ before bias/softplus, B, C) from the conv output ``x`` of shape (..., d_inner)."""
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None = None,
        projections: tuple[nn.Linear, nn.Linear] | None = None,
        state: LayerState | None = None,
    ) -> torch.Tensor:
        """``hidden`` (batch, L, d_model) -> (batch, L, d_model). ``mask`` (batch, L) zeroes padded
        positions before the conv and the scan, so (left) padding does not leak into the state.
        ``projections`` = (in_proj, out_proj) to use instead of this mixer's own. ``state``
        (:meth:`empty_state`, or what an earlier call or :meth:`step` left in it): the sequence continues
        from its conv inputs and SSM state, and it is left holding those after the last position, so that
        this method or :meth:`step` continues from there."""
        in_proj, out_proj = projections if projections is not None else (self.in_proj, self.out_proj)
        if mask is not None:
            hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        x, z = in_proj(hidden).chunk(2, dim=-1)
        x, resume = x.transpose(1, 2), state is not None and state.started
        if resume:  # the conv reads the cached inputs first, the scan starts from the cached state
            x = torch.cat([state.conv[:, :, 1:].to(x.dtype), x], dim=-1)
        if state is not None:  # the last d_conv conv inputs, oldest first, zeros before the sequence
            tail = x[..., -self.d_conv:]
            state.conv.zero_()
            state.conv[:, :, self.d_conv - tail.shape[-1]:] = tail
        conv = self.conv1d
        x = causal_conv1d(x, conv.weight.squeeze(1), conv.bias, "silu")  # (b, d_inner, L)
        if resume:
            x = x[..., self.d_conv - 1:]
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)
        dt, B, C = self._ssm_inputs(_rows(x))
        y = selective_scan(
            x,
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            D=self.D.float(),
            z=z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=state is not None,
            initial_state=state.ssm if resume else None,
        )
        if state is not None:
            y, last = y
            state.ssm.copy_(last)
            state.started = True
        return out_proj(_rows(y))

    def empty_state(self, batch: int, device: torch.device | None = None) -> LayerState:
        return LayerState(
            conv=torch.zeros(batch, self.d_inner, self.d_conv, device=device),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, device=device),
        )

    def step(self, hidden: torch.Tensor, state: LayerState) -> torch.Tensor:
        """One token: ``hidden`` (batch, d_model) -> (batch, d_model); updates ``state`` in place.

        The same arithmetic as :meth:`forward` at one position: the conv sees the cached last inputs, the
        SSM state advances by one step of the recurrence (fp32)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        state.started = True
        conv = self.conv1d
        x = causal_conv1d_update(state.conv, x, conv.weight.squeeze(1), conv.bias, "silu").to(hidden.dtype)
        dt, B, C = self._ssm_inputs(x)
        y = selective_state_update(state.ssm, x, dt, -torch.exp(self.A_log.float()), B, C, D=self.D.float(), z=z,
                                   dt_bias=self.dt_proj.bias.float(), dt_softplus=True)
        return self.out_proj(y.to(hidden.dtype))


class Block(nn.Module):
    """Pre-norm residual block ``residual += h; h = mixer(norm(residual))`` (mamba_ssm's ``Block``)."""

    def __init__(self, config: MambaConfig, mixer: nn.Module | None = None) -> None:
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.mixer = mixer if mixer is not None else Mamba(config)
        self.norm = make_norm(config.d_model, config.rms_norm, config.norm_epsilon)

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, mask: torch.Tensor | None = None,
        state: LayerState | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, residual = add_norm(self.norm, hidden, residual, self.residual_in_fp32)
        if state is None:
            return self.mixer(hidden, mask=mask), residual
        return self.mixer(hidden, mask=mask, state=state), residual

    def step(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, state: LayerState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, residual = add_norm(self.norm, hidden, residual, self.residual_in_fp32)
        return self.mixer.step(hidden, state), residual


# --------------------------------------------------------------------------------------------- helpers
def run_blocks(
    model: nn.Module,
    hidden: torch.Tensor,
    mask: torch.Tensor | None,
    record: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None]:
    """Run ``hidden`` through the ``(hidden, residual)`` blocks of ``model.layers`` (each checkpointed by
    :func:`~genomix.models.base.run_layer`); the final add-norm is the caller's.

    Returns the last block's ``(hidden, residual)`` and, when ``record`` is given, ``record(hidden,
    residual)`` of every block's input (``residual`` is ``None`` at the first block).
    """
    residual = None
    states = [] if record is not None else None
    for layer in model.layers:
        if states is not None:
            states.append(record(hidden, residual))
        hidden, residual = run_layer(model, layer, hidden, residual, mask)
    return hidden, residual, states


# --------------------------------------------------------------------------------------------- models
class MambaPreTrainedModel(GenomixPreTrainedModel):
    """Weight init of mamba_ssm's ``_init_weights`` (idempotent, so transformers may apply it again)."""

    config_class = MambaConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        config = self.config
        if isinstance(module, nn.Linear) and module.bias is not None:
            if not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=config.initializer_range)
        if config.rescale_prenorm_residual:
            # GPT-2's scheme: residual-branch output projections shrink with depth.
            for name, p in module.named_parameters(recurse=True):
                if name in ("out_proj.weight", "fc2.weight"):
                    nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                    p /= math.sqrt(config.n_residuals_per_layer * config.n_layer)


class MambaModel(BaseModelMixin, MambaPreTrainedModel):
    """Embedding, ``n_layer`` Mamba blocks and the final norm; returns :class:`BaseModelOutput`."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config)
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.norm_f = make_norm(config.d_model, config.rms_norm, config.norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embedding = value

    def _forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``hidden_states``: the residual stream entering each block, then the final-norm output."""
        check_input_ids(input_ids, self.config)
        record = residual_stream if output_hidden_states else None
        hidden, residual, states = run_blocks(self, self.embedding(input_ids), attention_mask, record)
        hidden, _ = add_norm(self.norm_f, hidden, residual, self.config.residual_in_fp32, autocast_output=False)
        if states is not None:
            states.append(hidden)
        return hidden, states

    #: A state holds a sequence of any length (see :class:`.tasks.RecurrentLMMixin`).
    max_state_length = None

    def allocate_state(self, batch: int, device: torch.device | None = None,
                       length: int | None = None) -> list[LayerState]:
        """Fresh (zero) recurrent states for :meth:`step`, one per layer (of a fixed size: ``length``, the
        positions it will hold, is not needed)."""
        return [layer.mixer.empty_state(batch, device) for layer in self.layers]

    def step(self, input_ids: torch.Tensor, state: list[LayerState]) -> torch.Tensor:
        """One token per sequence: ``input_ids`` (batch,) -> final-norm hidden (batch, d_model)."""
        check_step_ids(input_ids, state[0].conv.shape[0], self.config)
        hidden = self.embedding(input_ids)
        residual = None
        for layer, layer_state in zip(self.layers, state):
            hidden, residual = layer.step(hidden, residual, layer_state)
        hidden, _ = add_norm(self.norm_f, hidden, residual, self.config.residual_in_fp32, autocast_output=False)
        return hidden

    def extend(self, input_ids: torch.Tensor, state: list[LayerState]) -> torch.Tensor:
        """Continue the sequence ``state`` holds (from :meth:`allocate_state`: an empty one) by
        ``input_ids`` (batch, l <= max_seq_len) in one parallel pass: the final-norm hidden of every new
        position (batch, l, d_model), with ``state`` left as l calls of :meth:`step` would leave it."""
        check_input_ids(input_ids, self.config)
        hidden, residual = self.embedding(input_ids), None
        for layer, layer_state in zip(self.layers, state):
            hidden, residual = layer(hidden, residual, state=layer_state)
        hidden, _ = add_norm(self.norm_f, hidden, residual, self.config.residual_in_fp32, autocast_output=False)
        return hidden

    def prefill(self, input_ids: torch.Tensor, state: list[LayerState]) -> torch.Tensor:
        """A whole prompt: ``input_ids`` (batch, L) -> final-norm hidden of its last position (batch,
        d_model), with ``state`` (from :meth:`allocate_state`, or left by earlier calls: the prompt
        continues it) filled as L calls of :meth:`step` would leave it. The prompt goes through
        :meth:`extend` in pieces of at most ``max_seq_len`` tokens (the parallel forward's limit), so prompts
        of any length take memory for ``max_seq_len`` tokens only."""
        check_prompt(input_ids, "prefill")
        for start in range(0, input_ids.shape[1], self.config.max_seq_len):
            last = self.extend(input_ids[:, start:start + self.config.max_seq_len], state)[:, -1]
        return last


class _MambaLMBase(LMHeadMixin, MambaPreTrainedModel):
    """Backbone + LM head over ``padded_vocab_size`` columns, float32 logits; the task mixin picks the loss.

    The head is tied to the embedding matrix unless ``tie_word_embeddings`` is false: tied models own no
    ``lm_head`` parameter (as every genomix family), so mamba_ssm's duplicate ``lm_head.weight`` is
    dropped on load and re-derived from ``backbone.embedding.weight``."""

    backbone_class = MambaModel
    fp32_logits = True


class MambaForCausalLM(RecurrentLMMixin, CausalLMMixin, _MambaLMBase):
    """mamba_ssm's ``MambaLMHeadModel``: next-token LM with a recurrent :meth:`step` for generation."""

    @torch.no_grad()
    @in_weights_precision
    def extend(self, input_ids: torch.Tensor, state: list[LayerState]) -> torch.Tensor:
        """Next-token logits (batch, l, padded_vocab) at every position of ``input_ids`` (batch, l <=
        max_seq_len), continuing the sequence ``state`` holds (:meth:`MambaModel.extend`)."""
        return self.logits(self.backbone.extend(input_ids, state))

    @torch.no_grad()
    def generate_greedy(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation of ``input_ids`` (batch, L) through the recurrent path: the prompt in one
        parallel pass, then O(1) per token (one CUDA graph replay per token on a GPU)."""
        state = self.allocate_state(input_ids.shape[0], input_ids.device)
        logits = self.prefill(input_ids, state)
        step = step_function(self, state, input_ids.shape[0], max_new_tokens - 1)
        out = [input_ids]
        for i in range(max_new_tokens):
            nxt = logits[:, : self.config.vocab_size].argmax(-1)
            out.append(nxt[:, None])
            if i + 1 < max_new_tokens:
                logits = step(nxt)
        return torch.cat(out, dim=1)


class MambaForMaskedLM(MaskedLMMixin, _MambaLMBase):
    """The same network trained with a position-wise (masked-LM) objective, labels not shifted."""


class MambaForSequenceClassification(SequenceClassificationMixin, MambaPreTrainedModel):
    """Backbone + padding-aware pooling (``config.pooling``) + linear classifier (``num_labels``);
    float32 logits."""

    backbone_class = MambaModel
    fp32_logits = True


FAMILY = register_family(
    Family(
        model_type=MambaConfig.model_type,
        config_class=MambaConfig,
        models={
            "base": MambaModel,
            "causal-lm": MambaForCausalLM,
            "masked-lm": MambaForMaskedLM,
            "classification": MambaForSequenceClassification,
        },
        default_task="causal-lm",
    )
)
