"""Monarch Mixer (M2) for DNA: a causal LM (``m2``) and a bidirectional masked LM / classifier (``m2-bert``).

M2 (Fu et al., 2023) replaces attention with a gated long convolution whose filter is implicit
(Hyena-style: positional features -> sine MLP -> exponential decay) and replaces the dense MLP with
Monarch matrices (:mod:`genomix.models.monarch`), so both the sequence and the width mixing are
sub-quadratic. The published code is BERT-only; here the same mixer also runs causally (forward filter
only) for next-nucleotide pretraining, and bidirectionally through ``fftconv(..., bidirectional=True)``
with a forward and a reversed filter.

Parameter names below each block follow M2-BERT's (``sequence_mixing.{in_linear, out_linear,
short_filter, filter_fn.{implicit_filter, implicit_filter_rev, pos_emb, modulation, bias}}``,
``mlp.{gated_layers, wo, layernorm}``), for readers who know that code; its checkpoints do not load here with
their outputs. Unlike M2-BERT's post-norm BERT layers, blocks here are pre-norm with an fp32 residual stream
(the genomix convention; ``mlp.layernorm`` is the MLP's input norm), and the reversed filter's first tap weighs
the next position (lag -1), where M2-BERT's (its ``k_rev + conj`` spectrum) weighs the current one, beside the
forward filter's.

Padding: positions where ``attention_mask`` is 0 are zeroed before every convolution, so the outputs at
real positions equal those of the unpadded sequence (left padding for causal models, any padding for
bidirectional ones).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..kernels import (causal_conv1d, causal_conv1d_update, fftconv, fftconv_prepared, fftconv_update, gelu_glu,
                       prepare_filter)
from .base import GenomixConfig, GenomixPreTrainedModel, LayerNormStackMixin, check_input_ids
from .fixed_filters import FilterReuse, active_reuse
from .heads import SequenceClassificationHead, check_pooling
from .implicit_filter import ExponentialModulation, PositionalEmbedding, Sin, implicit_filter_taps
from .linear import Linear
from .long_conv_state import LongConvGenerationMixin, LongConvState, run_mixer
from .monarch import BlockdiagLinear, MonarchLinear, make_linear
from .norms import LayerNorm
from .registry import Family, register_family
from .tasks import CausalLMMixin, MaskedLMMixin, RecurrentLMMixin, SequenceClassificationMixin


class M2Config(GenomixConfig):
    """Hyper-parameters of an M2 backbone; ``bidirectional`` selects ``m2-bert`` over causal ``m2``.

    ``mlp_linear`` is ``"monarch"`` (two block-diagonal factors with permutations), ``"blockdiag"``
    (M2-BERT's grouped layer) or ``"dense"``; ``monarch_nblocks`` is their number of blocks.
    """

    model_type = "genomix-m2"
    size_fields = GenomixConfig.size_fields + ("filter_order", "short_filter_order", "monarch_nblocks")

    def __init__(
        self,
        d_model: int = 128,
        n_layer: int = 2,
        d_inner: int | None = None,
        max_seq_len: int = 1024,
        bidirectional: bool = False,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter_order: int = 3,
        num_inner_mlps: int = 2,
        activation_freq: float = 10.0,
        modulation_shift: float = 0.0,
        residual_long_conv: bool = False,
        mlp_linear: str = "monarch",
        monarch_nblocks: int = 4,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        pooling: str = "mean",
        **kwargs: Any,
    ) -> None:
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ConfigError(f"M2 emb_dim must be odd and >= 3 (time + cos/sin bands), got {emb_dim}")
        if mlp_linear not in ("monarch", "blockdiag", "dense"):
            raise ConfigError(f"mlp_linear must be monarch, blockdiag or dense, got {mlp_linear!r}")
        check_pooling(pooling)
        self.d_model = d_model
        self.n_layer = n_layer
        self.d_inner = d_inner if d_inner is not None else 4 * d_model
        self.bidirectional = bidirectional
        self.filter_order = filter_order
        self.emb_dim = emb_dim
        self.short_filter_order = short_filter_order
        self.num_inner_mlps = num_inner_mlps
        self.activation_freq = activation_freq
        self.modulation_shift = modulation_shift
        self.residual_long_conv = residual_long_conv
        self.mlp_linear = mlp_linear
        self.monarch_nblocks = monarch_nblocks
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.pooling = pooling
        super().__init__(max_seq_len=max_seq_len, **kwargs)
        if self.num_inner_mlps < 0:
            raise ConfigError(f"num_inner_mlps must be >= 0, got {self.num_inner_mlps}")

    @property
    def hidden_size(self) -> int:  # transformers' generic name (Trainer, pipelines)
        return self.d_model

    @property
    def default_task(self) -> str:
        """What :func:`genomix.models.build` makes when not told: bidirectional models are masked LMs."""
        return "masked-lm" if self.bidirectional else "causal-lm"


# --------------------------------------------------------------------------------- implicit filter


def _filter_mlp(config: M2Config) -> nn.Sequential:
    """positional features -> (Linear, Sin) × (1 + num_inner_mlps) -> Linear to one tap per channel."""
    order, layers = config.filter_order, []
    dims = [config.emb_dim] + [order] * (config.num_inner_mlps + 1)
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), Sin(d_out, config.activation_freq)]
    layers.append(nn.Linear(order, config.d_model, bias=False))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            layer.genomix_default_init = True  # the sine MLP needs PyTorch's fan-in init, not N(0, 0.02)
    return nn.Sequential(*layers)


class HyenaFilter(nn.Module):
    """Implicit long filter: ``k[c, t] = MLP(z_t)[c] · decay_c(t)``, plus the skip weight ``bias`` (D).

    With ``bidirectional`` a second MLP (``implicit_filter_rev``) gives the filter for future positions.
    """

    def __init__(self, config: M2Config, bidirectional: bool) -> None:
        super().__init__()
        self.implicit_filter = _filter_mlp(config)
        self.implicit_filter_rev = _filter_mlp(config) if bidirectional else None
        self.pos_emb = PositionalEmbedding(config.emb_dim, config.max_seq_len)
        self.modulation = ExponentialModulation(config.d_model, shift=config.modulation_shift)
        self.bias = nn.Parameter(torch.randn(config.d_model))

    def kernel(self, length: int) -> torch.Tensor:
        """(C, L) causal filter, or (C, 2L) ``concat(k_fwd, k_rev)`` when bidirectional (fp32)."""
        k = implicit_filter_taps(self.implicit_filter, self.pos_emb, self.modulation, length)
        if self.implicit_filter_rev is not None:
            k = torch.cat([k, implicit_filter_taps(self.implicit_filter_rev, self.pos_emb, self.modulation, length)],
                          dim=-1)
        return k


# -------------------------------------------------------------------------------- blocks


class MonarchMixerSequenceMixing(nn.Module):
    """M2's sequence mixer: three gated streams, short conv, implicit long conv, output projection. Inside
    :func:`.fixed_filters.fixed_filters` its inference forwards reuse the filters' spectra."""

    filter_reuse: FilterReuse | None = None

    def __init__(self, config: M2Config) -> None:
        super().__init__()
        d = config.d_model
        self.d_model = d
        self.bidirectional = config.bidirectional
        self.in_linear = Linear(d, 3 * d)
        self.out_linear = Linear(d, d)
        width = config.short_filter_order
        self.short_filter = nn.Conv1d(3 * d, 3 * d, kernel_size=width, groups=3 * d, padding=width - 1)
        self.filter_fn = HyenaFilter(config, config.bidirectional)
        self.filter_fn2 = HyenaFilter(config, config.bidirectional) if config.residual_long_conv else None

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None,
                state: LongConvState | None = None) -> torch.Tensor:
        """u: (B, L, d); mask: (B, L, 1) of 0/1 or None. Returns (B, L, d). A fresh ``state`` (causal, no
        mask) is filled for :meth:`step`."""
        length = u.shape[1]
        z = self.in_linear(u)
        if mask is not None:
            z = z * mask.to(z.dtype)
        conv = self.short_filter
        projected = z
        z = causal_conv1d(z.transpose(1, 2), conv.weight.squeeze(1), conv.bias)  # causal, (B, 3d, L)
        if state is not None:
            state.begin(projected)
        x1, x2, v = z.split(self.d_model, dim=1)
        if mask is not None:
            x1 = x1 * mask.transpose(1, 2).to(x1.dtype)  # zero v·x1 at pads so they feed no conv
        if state is not None:
            state.history[0, ..., :length] = v.float() * x1.float()
        y = self._long_conv(self.filter_fn, v, length, pregate=x1, postgate=x2)
        if self.filter_fn2 is not None:
            uo = u.transpose(1, 2)
            if mask is not None:
                uo = uo * mask.transpose(1, 2).to(uo.dtype)
            if state is not None:
                state.history[1, ..., :length] = uo.float()
            y = y + self._long_conv(self.filter_fn2, uo, length)
        return self.out_linear(y.transpose(1, 2))

    def _long_conv(self, filter_fn: HyenaFilter, v: torch.Tensor, length: int, pregate: torch.Tensor | None = None,
                   postgate: torch.Tensor | None = None) -> torch.Tensor:
        """``fftconv`` of ``v`` with ``filter_fn``'s filter and skip weight; its spectrum prepared once and
        reused while :func:`.fixed_filters.active_reuse` allows."""
        reuse = active_reuse(self)
        if reuse is None:
            return fftconv(v, filter_fn.kernel(length), filter_fn.bias, pregate=pregate, postgate=postgate,
                           bidirectional=self.bidirectional)
        prepared = reuse.prepared(filter_fn, v, length, lambda: prepare_filter(
            filter_fn.kernel(length), filter_fn.bias, like=v, bidirectional=self.bidirectional))
        return fftconv_prepared(v, prepared, pregate=pregate, postgate=postgate)

    def empty_state(self, batch: int, length: int, device: torch.device | None = None) -> LongConvState:
        """A fresh generation state (causal mixers only) for sequences of up to ``length`` positions."""
        if self.bidirectional:
            raise ConfigError("a bidirectional M2 (m2-bert) sees the future: it has no token-by-token state")
        fns = [self.filter_fn] + ([self.filter_fn2] if self.filter_fn2 is not None else [])
        with torch.no_grad():
            taps = torch.stack([fn.kernel(length) for fn in fns])
        return LongConvState.empty(batch, 3 * self.d_model, self.short_filter.kernel_size[0], taps, device)

    def step(self, u: torch.Tensor, state: LongConvState) -> torch.Tensor:
        """One token: ``u`` (B, d) -> (B, d), updating ``state`` in place: :meth:`forward`'s arithmetic at the
        next position (short conv over the cached inputs, the long convolutions by
        :func:`genomix.kernels.fftconv_update`)."""
        conv = self.short_filter
        z = causal_conv1d_update(state.conv, self.in_linear(u), conv.weight.squeeze(1), conv.bias).to(u.dtype)
        x1, x2, v = z.split(self.d_model, dim=-1)
        y = fftconv_update(state.history[0], state.position, v, state.filters[0], self.filter_fn.bias, pregate=x1,
                           postgate=x2)
        if self.filter_fn2 is not None:
            y = y + fftconv_update(state.history[1], state.position, u, state.filters[1], self.filter_fn2.bias)
        state.position += 1
        return self.out_linear(y)


class MonarchGLU(nn.Module):
    """Dimension mixer: ``wo(gelu(gate) * value)`` with ``[gate, value] = gated_layers(norm(x))``.

    The gate is one fused op (:func:`genomix.kernels.gelu_glu`, fp32 math, one Triton pass each way on
    CUDA) instead of split, gelu, multiply and the backward's concatenation of the two gradient halves."""

    def __init__(self, config: M2Config) -> None:
        super().__init__()
        kind, k = config.mlp_linear, config.monarch_nblocks
        self.d_inner = config.d_inner
        self.layernorm = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.gated_layers = make_linear(kind, config.d_model, 2 * config.d_inner, k, bias=False)
        self.wo = make_linear(kind, config.d_inner, config.d_model, k, bias=True)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(self.dropout(gelu_glu(self.gated_layers(self.layernorm(x)), self.d_inner)))


class M2Block(nn.Module):
    """Pre-norm residual block: ``x += mixer(norm(x)); x += mlp(x)`` (the MLP owns its norm)."""

    def __init__(self, config: M2Config) -> None:
        super().__init__()
        self.norm = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.sequence_mixing = MonarchMixerSequenceMixing(config)
        self.mlp = MonarchGLU(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                state: LongConvState | None = None) -> torch.Tensor:
        """``state``: the mixer's generation state, filled from a prompt when fresh, else advanced by one
        token (length 1, no mask)."""
        # x is the fp32 residual stream; adding a 16-bit branch output promotes in the one add kernel.
        x = x + self.dropout(run_mixer(self.sequence_mixing, self.norm(x), state, mask))
        return x + self.dropout(self.mlp(x))


# -------------------------------------------------------------------------------- models


class M2PreTrainedModel(GenomixPreTrainedModel):
    """Weight init and config class shared by the M2 base model and its heads."""

    config_class = M2Config
    _no_split_modules = ["M2Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "genomix_default_init", False):
                module.reset_parameters()
            else:
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (MonarchLinear, BlockdiagLinear, nn.Conv1d)):
            module.reset_parameters()
        elif isinstance(module, Sin):
            module.freq.fill_(self.config.activation_freq)
        elif isinstance(module, HyenaFilter):
            module.bias.normal_()
        elif isinstance(module, (PositionalEmbedding, ExponentialModulation)):
            module.reset_buffers()


class M2Model(LongConvGenerationMixin, LayerNormStackMixin, M2PreTrainedModel):
    """Embeddings, ``n_layer`` M2 blocks and a final LayerNorm; returns ``BaseModelOutput``.

    Positions where ``attention_mask`` is 0 are zeroed before every convolution. A causal model also
    generates token by token (``allocate_state``, ``prefill``, ``step``: :mod:`.long_conv_state`)."""

    block_class = M2Block

    def _state_mixer(self, layer: nn.Module) -> nn.Module:
        return layer.sequence_mixing

    def _run_with_state(self, input_ids: torch.Tensor, state: list[LongConvState]) -> torch.Tensor:
        check_input_ids(input_ids, self.config)
        x = self.embeddings(input_ids).float()
        for layer, layer_state in zip(self.layers, state):
            x = layer(x, None, layer_state)
        return self.ln_f(x)

    def _block_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(batch, length, 1) float multiplier, ``None`` when nothing is padded."""
        if attention_mask is None or bool(attention_mask.all()):
            return None
        return attention_mask[..., None].float()


class M2ForCausalLM(RecurrentLMMixin, CausalLMMixin, M2PreTrainedModel):
    """Next-nucleotide LM (``m2``) with an LM head tied to the embeddings unless ``tie_word_embeddings``
    is false. Labels are shifted inside; -100 is ignored. Generation reads a prompt in parallel and then
    takes one token at a time while the sequence fits ``max_seq_len``."""

    backbone_class = M2Model

    def __init__(self, config: M2Config) -> None:
        if config.bidirectional:
            raise ConfigError("a bidirectional M2 (m2-bert) sees the future: build it with task='masked-lm'")
        super().__init__(config)


class M2ForMaskedLM(MaskedLMMixin, M2PreTrainedModel):
    """Masked LM (``m2-bert``): labels compared position-wise, -100 ignored."""

    backbone_class = M2Model


class M2ForSequenceClassification(SequenceClassificationMixin, M2PreTrainedModel):
    """Padding-aware pooling (``config.pooling``) + linear classifier; loss by ``problem_type``.

    The classifier's dropout is the model's ``dropout``."""

    backbone_class = M2Model

    def _score_head(self, config: M2Config) -> SequenceClassificationHead:
        return SequenceClassificationHead(config.d_model, config.num_labels, config.pooling, config.dropout)


FAMILY = register_family(
    Family(
        model_type=M2Config.model_type,
        config_class=M2Config,
        models={
            "base": M2Model,
            "causal-lm": M2ForCausalLM,
            "masked-lm": M2ForMaskedLM,
            "classification": M2ForSequenceClassification,
        },
        default_task="causal-lm",
    )
)


__all__ = [
    "M2Config",
    "M2ForCausalLM",
    "M2ForMaskedLM",
    "M2ForSequenceClassification",
    "M2Model",
    "MonarchMixerSequenceMixing",
]
