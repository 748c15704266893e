"""HyenaDNA (Nguyen et al., 2023): a causal Hyena-operator language model over single nucleotides.

Architecture, with the released checkpoints' parameter names (below ``backbone``) so their weights
map 1:1 (see ``genomix.hub.formats.hyenadna``)::

    embeddings.word_embeddings (padded vocab 16 x d_model)
    layers.i: x = x + mixer(norm1(x)); x = x + mlp(norm2(x))      pre-norm blocks, fp32 residual
        mixer (Hyena operator, order 2):
            in_proj d -> (order+1)·d, short_filter (depthwise causal conv, width 3) over all of it,
            split into gates x_0..x_{order-2} and value v;
            filter_fn: implicit long filter h(t) = MLP_sin(pos_emb(t)) · (exp(-|delta|·t) + shift),
            v <- fftconv(v · x_{o}, h_o, D=filter_fn.bias_o) for the gates in reverse, y = v · x_0,
            out_proj d -> d
        mlp: fc1 d -> d_inner, GELU (tanh), fc2 d_inner -> d
    ln_f; LM head tied to the embedding matrix

The long convolution goes through ``genomix.kernels.fftconv`` (Triton on CUDA, PyTorch elsewhere).
Positional features are computed once for ``max_seq_len`` (HyenaDNA's ``l_max``) and stored as
buffers, as in the released checkpoints; inputs may have any length up to ``max_seq_len``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..kernels import (PreparedFilter, causal_conv1d, causal_conv1d_update, fftconv, fftconv_prepared, fftconv_update,
                       prepare_filter)
from .base import BaseModelMixin, GenomixConfig, GenomixPreTrainedModel, check_input_ids, run_residual_layers
from .fixed_filters import FilterReuse, active_reuse
from .heads import check_pooling
from .implicit_filter import (ExponentialModulation, PositionalEmbedding, Sin, implicit_filter_taps,
                              implicit_filter_taps_and_sumsq)
from .linear import Linear, linear_gelu
from .long_conv_state import LongConvGenerationMixin, LongConvState, run_mixer
from .norms import LayerNorm
from .registry import Family, register_family
from .tasks import CausalLMMixin, RecurrentLMMixin, SequenceClassificationMixin


class HyenaConfig(GenomixConfig):
    """Every HyenaDNA hyper-parameter. Defaults are the released ``tiny-1k`` values.

    ``max_seq_len`` is HyenaDNA's ``l_max`` (the released sizes add 2 to the nominal length, e.g.
    1026 for "1k"). ``checkpoint_blocks`` turns on per-block activation checkpointing in training;
    it changes no parameter names. ``pooling`` is the classification head's pooling.
    """

    model_type = "genomix-hyena"
    size_fields = GenomixConfig.size_fields + ("filter_order", "short_filter_order")

    def __init__(
        self,
        d_model: int = 128,
        n_layer: int = 2,
        d_inner: int | None = None,
        max_seq_len: int = 1026,
        hyena_order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter_order: int = 3,
        activation_freq: float = 10.0,
        num_inner_mlps: int = 2,
        train_freq: bool = True,
        use_bias: bool = True,
        modulate: bool = True,
        modulation_shift: float = 0.05,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        modulation_target: float = 1e-2,
        normalized_filter: bool = False,
        embed_dropout: float = 0.1,
        resid_dropout: float = 0.0,
        hyena_dropout: float = 0.0,
        hyena_filter_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        checkpoint_blocks: bool = False,
        pooling: str = "mean",
        classifier_dropout: float = 0.0,
        classifier_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        self.d_model = d_model
        self.n_layer = n_layer
        self.d_inner = d_inner if d_inner is not None else 4 * d_model
        self.hyena_order = hyena_order
        self.filter_order = filter_order
        self.emb_dim = emb_dim
        self.short_filter_order = short_filter_order
        self.activation_freq = activation_freq
        self.num_inner_mlps = num_inner_mlps
        self.train_freq = train_freq
        self.use_bias = use_bias
        self.modulate = modulate
        self.modulation_shift = modulation_shift
        self.fast_decay_pct = fast_decay_pct
        self.slow_decay_pct = slow_decay_pct
        self.modulation_target = modulation_target
        self.normalized_filter = normalized_filter
        self.embed_dropout = embed_dropout
        self.resid_dropout = resid_dropout
        self.hyena_dropout = hyena_dropout
        self.hyena_filter_dropout = hyena_filter_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.checkpoint_blocks = checkpoint_blocks
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        self.classifier_bias = classifier_bias
        super().__init__(max_seq_len=max_seq_len, **kwargs)
        self._validate()

    def _validate(self) -> None:  # after the sizes' check (GenomixConfig.size_fields)
        if self.emb_dim < 3 or self.emb_dim % 2 == 0:
            raise ConfigError(f"emb_dim must be odd and >= 3 (time + cos/sin bands), got {self.emb_dim}")
        if self.hyena_order < 2:
            raise ConfigError(f"hyena_order must be >= 2, got {self.hyena_order}")
        if self.num_inner_mlps < 0:
            raise ConfigError(f"num_inner_mlps must be >= 0, got {self.num_inner_mlps}")
        check_pooling(self.pooling)

    @property
    def hidden_size(self) -> int:  # transformers' generic name (Trainer, pipelines)
        return self.d_model


def _modulation(config: HyenaConfig, channels: int) -> ExponentialModulation:
    """The implicit filter's decay over ``channels`` channels as the config sets it."""
    return ExponentialModulation(channels, config.fast_decay_pct, config.slow_decay_pct, config.modulation_target,
                                 config.modulation_shift, config.modulate)


class SharedSin(nn.Module):
    """A later use of an implicit filter's :class:`Sin` (no parameters of its own, keeps Sequential
    indices aligned with the released layout)."""

    def __init__(self, owner: Sin) -> None:
        super().__init__()
        object.__setattr__(self, "_owner", owner)  # not a submodule: its freq is stored once

    @property
    def freq(self) -> nn.Parameter:
        """The owner's frequency (read by the fused filter, which sees every layer's frequency)."""
        return self._owner.freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._owner(x)


class HyenaFilter(nn.Module):
    """The implicit long-convolution filter of one Hyena operator, and its skip term ``bias`` (D)."""

    def __init__(self, config: HyenaConfig, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.normalized = config.normalized_filter
        self.bias = nn.Parameter(torch.randn(channels))
        self.pos_emb = PositionalEmbedding(config.emb_dim, config.max_seq_len)
        act = Sin(config.filter_order, config.activation_freq, config.train_freq)
        layers: list[nn.Module] = [nn.Linear(config.emb_dim, config.filter_order), act]
        for _ in range(config.num_inner_mlps):
            layers += [nn.Linear(config.filter_order, config.filter_order), SharedSin(act)]
        layers.append(nn.Linear(config.filter_order, channels, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = _modulation(config, channels)
        self.dropout = nn.Dropout(config.hyena_filter_dropout)

    def filter(self, length: int) -> torch.Tensor:
        """The filter for ``length`` positions, (channels, length), computed in fp32 (one shared
        :class:`Sin` frequency for every layer, as in the reference)."""
        h = implicit_filter_taps(self.implicit_filter, self.pos_emb, self.modulation, length)
        if self.normalized:  # HyenaDNA normalises each position over the channels
            h = h / torch.norm(h, dim=0, p=1, keepdim=True)
        return self.dropout(h)

    def filter_and_sumsq(self, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(:meth:`filter`, each channel's sum of squares of it where the filter kernel computed it on the way,
        else None): for the long convolution's range scaling (``fftconv(k_sumsq=...)``). A normalised or
        dropped-out filter is not the kernel's output, so it comes without."""
        if self.normalized or (self.training and self.dropout.p > 0):
            return self.filter(length), None
        return implicit_filter_taps_and_sumsq(self.implicit_filter, self.pos_emb, self.modulation, length)


class HyenaOperator(nn.Module):
    """Hyena mixer: projections, short depthwise conv, gated long FFT convolutions.

    With a fresh :class:`.long_conv_state.LongConvState`, :meth:`forward` also fills it (a prompt);
    :meth:`step` then takes one token at a time, exactly as the forward over the whole sequence would.
    Inside :func:`.fixed_filters.fixed_filters` its inference forwards reuse the filters' spectra."""

    filter_reuse: FilterReuse | None = None

    def __init__(self, config: HyenaConfig) -> None:
        super().__init__()
        d = config.d_model
        self.d_model = d
        self.order = config.hyena_order
        width = d * (self.order + 1)
        self.in_proj = nn.Linear(d, width)
        self.out_proj = Linear(d, d)  # reads the convolution's feature-major output: bias in the GEMM
        self.short_filter = nn.Conv1d(
            width, width, config.short_filter_order, padding=config.short_filter_order - 1, groups=width
        )
        self.filter_fn = HyenaFilter(config, d * (self.order - 1))
        self.dropout = nn.Dropout(config.hyena_dropout)

    def forward(self, u: torch.Tensor, state: LongConvState | None = None) -> torch.Tensor:
        """(batch, L, d) -> (batch, L, d); with a fresh ``state`` (of at least L positions), also fills it."""
        length = u.shape[1]
        # The short conv reads the channels-last projection in place and writes it channel-major, as
        # the long convolution reads it (a separate transpose was the forward's largest cost at L = 1M).
        conv = self.short_filter
        projected = self.in_proj(u)
        z = causal_conv1d(projected.transpose(1, 2), conv.weight.squeeze(1), conv.bias)  # (B, (order+1)d, L)
        if state is not None:
            state.begin(projected)
        *gates, v = z.split(self.d_model, dim=1)
        reuse = active_reuse(self)
        if reuse is not None:
            prepared = reuse.prepared(self.filter_fn, v, length, lambda: self._prepared_filters(length, v))
        else:
            k, sumsq, skip = self._long_filters(length)
        use_dropout = self.training and self.dropout.p > 0
        for o, gate in enumerate(reversed(gates[1:])):
            postgate = gates[0] if o == self.order - 2 else None
            if state is not None:
                state.history[o, ..., :length] = v.float() * gate.float()
            if reuse is not None:
                v = fftconv_prepared(v, prepared[o], pregate=gate, postgate=postgate)
            elif use_dropout:
                v = fftconv(self.dropout(v * gate), k[o], skip[o])
                v = v * postgate if postgate is not None else v
            else:
                v = fftconv(v, k[o], skip[o], pregate=gate, postgate=postgate, k_sumsq=sumsq[o])
        return self.out_proj(v.transpose(1, 2))

    def empty_state(self, batch: int, length: int, device: torch.device | None = None) -> LongConvState:
        """A fresh state for ``batch`` sequences of up to ``length`` positions, with the long filters' taps
        for them computed now (without gradients; in eval mode, no filter dropout)."""
        with torch.no_grad():
            taps = self.filter_fn.filter(length).view(self.order - 1, self.d_model, length)
        return LongConvState.empty(batch, self.d_model * (self.order + 1), self.short_filter.kernel_size[0], taps,
                                   device)

    def step(self, u: torch.Tensor, state: LongConvState) -> torch.Tensor:
        """One token: ``u`` (batch, d) -> (batch, d); updates ``state`` in place. The same arithmetic as
        :meth:`forward` at the next position (short conv over the cached inputs, each long convolution as a
        dot product with all earlier inputs: :func:`genomix.kernels.fftconv_update`)."""
        conv = self.short_filter
        z = causal_conv1d_update(state.conv, self.in_proj(u), conv.weight.squeeze(1), conv.bias).to(u.dtype)
        *gates, v = z.split(self.d_model, dim=-1)
        skip = self.filter_fn.bias.view(self.order - 1, self.d_model)
        for o, gate in enumerate(reversed(gates[1:])):
            postgate = gates[0] if o == self.order - 2 else None
            v = fftconv_update(state.history[o], state.position, v, state.filters[o], skip[o], pregate=gate,
                               postgate=postgate)
        state.position += 1
        return self.out_proj(v)

    def _long_filters(self, length: int) -> tuple[torch.Tensor, list, torch.Tensor]:
        """Per long convolution: the filters (order - 1, d, L), their rows' sums of squares ((d,) each, or None
        each, :meth:`_filter`) and the skip weights (order - 1, d)."""
        k, k_sumsq = self._filter(length)
        k = k.view(self.order - 1, self.d_model, length)
        sumsq = [None] * (self.order - 1) if k_sumsq is None else list(k_sumsq.view(self.order - 1, self.d_model))
        return k, sumsq, self.filter_fn.bias.view(self.order - 1, self.d_model)

    def _prepared_filters(self, length: int, like: torch.Tensor) -> list[PreparedFilter]:
        """Each long convolution's filter and skip weight prepared for inputs like ``like`` (called without
        gradients, by :func:`.fixed_filters.active_reuse`'s conditions)."""
        k, sumsq, skip = self._long_filters(length)
        return [prepare_filter(k[o], skip[o], like=like, k_sumsq=sumsq[o]) for o in range(self.order - 1)]

    def _filter(self, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The implicit filter and, without gradients, its rows' sums of squares when the filter kernel
        gives them (:meth:`HyenaFilter.filter_and_sumsq`). When gradients are recorded the filter is
        recomputed in the backward instead of its intermediates being kept through the long convolution's
        backward (the training step's peak): ~3.5 GiB per layer at L = 1M on the PyTorch reference, 0.8 GiB
        of pre-activations on the fused kernels, for one more filter forward per step."""
        if torch.is_grad_enabled():
            return checkpoint(self.filter_fn.filter, length, use_reentrant=False), None
        return self.filter_fn.filter_and_sumsq(length)


#: Above this many tokens per call, a training MLP runs in chunks of this many tokens, each recomputed in
#: the backward: its two (tokens, d_inner) activations (16 GiB at 4M tokens for ``large-1m``) then exist for
#: one chunk at a time. At and below it (e.g. 1M tokens) nothing changes.
MLP_CHUNK_TOKENS = 1 << 20


class HyenaMLP(nn.Module):
    def __init__(self, config: HyenaConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_inner)
        self.fc2 = nn.Linear(config.d_inner, config.d_model)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu(x, self.fc1.weight, self.fc1.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length = x.shape[:2]
        if torch.is_grad_enabled() and batch * length > MLP_CHUNK_TOKENS:
            chunks = x.split(max(1, MLP_CHUNK_TOKENS // batch), dim=1)
            return torch.cat([checkpoint(self._mlp, chunk, use_reentrant=False) for chunk in chunks], dim=1)
        return self._mlp(x)


class HyenaBlock(nn.Module):
    """Pre-norm residual block ``x = x + mixer(norm1(x)); x = x + mlp(norm2(x))`` on an fp32 residual stream.

    Called as ``block(hidden, residual)`` on the stream ``residual + hidden`` (``hidden`` alone when
    ``residual`` is None), it returns ``(mlp output, stream before that output is added)``: each add is done
    by the norm that reads its sum next, in one pass (:meth:`.norms.LayerNorm.add_and_norm`; the last block's
    by the final norm, see :func:`.base.run_residual_layers`). fp32 + 16-bit promotes inside those adds, and
    the norms write the autocast dtype directly. Without gradients the adds update the stream in place
    (``residual``, and the stream the block makes from a ``None`` one), so inference keeps one fp32 stream.
    """

    def __init__(self, config: HyenaConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mixer = HyenaOperator(config)
        self.norm2 = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mlp = HyenaMLP(config)
        self.dropout1 = nn.Dropout(config.resid_dropout)
        self.dropout2 = nn.Dropout(config.resid_dropout)

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None = None, state: LongConvState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``state``: the mixer's, filled from a prompt when fresh, else advanced by one token (length 1)."""
        inplace = not torch.is_grad_enabled()
        if residual is None:  # the stream is the caller's tensor: the first add makes a new one
            normed, residual, owned = self.norm1(hidden), hidden, False
        else:
            normed, residual = self.norm1.add_and_norm(hidden, residual, inplace=inplace)
            owned = True
        mixed = self.dropout1(run_mixer(self.mixer, normed, state))
        normed, residual = self.norm2.add_and_norm(mixed, residual, inplace=inplace and owned)
        return self.dropout2(self.mlp(normed)), residual


class HyenaEmbeddings(nn.Module):
    def __init__(self, config: HyenaConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class HyenaPreTrainedModel(GenomixPreTrainedModel):
    config_class = HyenaConfig
    _no_split_modules = ["HyenaBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        """HyenaDNA's init: N(0, 0.02) linears/embeddings, residual output projections scaled by
        1/sqrt(2·n_layer), implicit-filter frequencies at ``activation_freq``, D ~ N(0, 1), and the
        fixed positional/decay buffers recomputed (transformers may build models on the meta device)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, Sin):
            nn.init.constant_(module.freq, float(self.config.activation_freq))
        elif isinstance(module, HyenaFilter):
            nn.init.normal_(module.bias)
        elif isinstance(module, (PositionalEmbedding, ExponentialModulation)):
            module.reset_buffers()
        elif isinstance(module, (HyenaOperator, HyenaMLP)):
            out = module.out_proj if isinstance(module, HyenaOperator) else module.fc2
            nn.init.normal_(out.weight, std=std / math.sqrt(2 * self.config.n_layer))


class HyenaModel(LongConvGenerationMixin, BaseModelMixin, HyenaPreTrainedModel):
    """The HyenaDNA backbone: token ids -> final hidden states (after ``ln_f``); the embedding model.

    With an ``attention_mask``, padding is made invisible: each row's real tokens are moved to the
    front (causal models then never see pads), run, and put back in place, so a padded batch gives
    each sequence exactly the outputs it gets alone. Outputs at pad positions are meaningless.
    ``hidden_states`` (if asked) holds the embeddings, each block's output, and last the ``ln_f``
    output.
    """

    def __init__(self, config: HyenaConfig) -> None:
        super().__init__(config)
        self.embeddings = HyenaEmbeddings(config)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.layers = nn.ModuleList(HyenaBlock(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.d_model, eps=config.layer_norm_epsilon, autocast_output=False)
        self.gradient_checkpointing = config.checkpoint_blocks
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def _forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        check_input_ids(input_ids, self.config)
        order = None
        if attention_mask is not None and not bool(attention_mask.all()):
            order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)
            input_ids = input_ids.gather(1, order)
        x = self.embed_dropout(self.embeddings(input_ids)).float()
        x, states = run_residual_layers(self, x, final_norm=self.ln_f, output_hidden_states=output_hidden_states)
        if order is not None:
            x = torch.empty_like(x).scatter_(1, order.unsqueeze(-1).expand_as(x), x)
            if states is not None:
                states = [torch.empty_like(s).scatter_(1, order.unsqueeze(-1).expand_as(s), s) for s in states]
        return x, states

    def _state_mixer(self, layer: nn.Module) -> nn.Module:
        return layer.mixer

    def _run_with_state(self, input_ids: torch.Tensor, state: list[LongConvState]) -> torch.Tensor:
        check_input_ids(input_ids, self.config)
        hidden, residual = self.embed_dropout(self.embeddings(input_ids)).float(), None
        for layer, layer_state in zip(self.layers, state):
            hidden, residual = layer(hidden, residual, layer_state)
        return self.ln_f.add_and_norm(hidden, residual)[0]


class HyenaForCausalLM(RecurrentLMMixin, CausalLMMixin, HyenaPreTrainedModel):
    """Backbone + LM head (tied to the embedding matrix unless ``tie_word_embeddings`` is false).

    Logits have ``padded_vocab_size`` (16) columns; ``labels`` are shifted inside, -100 ignored. Generation
    reads a prompt in parallel and then takes one token at a time (:meth:`prefill`, :meth:`step`) while the
    sequence fits ``max_seq_len``.
    """

    backbone_class = HyenaModel


class HyenaForSequenceClassification(SequenceClassificationMixin, HyenaPreTrainedModel):
    """Backbone + padding-aware pooling (``config.pooling``) + linear classifier (``num_labels``)."""

    backbone_class = HyenaModel


FAMILY = register_family(
    Family(
        model_type=HyenaConfig.model_type,
        config_class=HyenaConfig,
        models={"base": HyenaModel, "causal-lm": HyenaForCausalLM, "classification": HyenaForSequenceClassification},
        default_task="causal-lm",
    )
)


def fixed_buffers(config: HyenaConfig, prefix: str = "") -> dict[str, torch.Tensor]:
    """The deterministic buffers (positional features, decay rates) of every layer, by state-dict key.

    Checkpoint layouts that omit them (some ``-hf`` exports) are completed with these values.
    """
    pos = PositionalEmbedding(config.emb_dim, config.max_seq_len)
    modulation = _modulation(config, config.d_model * (config.hyena_order - 1))
    out = {}
    for i in range(config.n_layer):
        base = f"{prefix}layers.{i}.mixer.filter_fn."
        out[base + "pos_emb.z"] = pos.z
        out[base + "pos_emb.t"] = pos.t
        out[base + "modulation.deltas"] = modulation.deltas
    return out
