"""Caduceus: bidirectional, optionally reverse-complement-equivariant Mamba for DNA (Schiff et al. 2024).

Built from :mod:`genomix.models.mamba`'s mixer and norms:

- **BiMamba** (:class:`BiMamba`): a forward and a reverse Mamba whose outputs are added (``"add"``) or
  multiplied (``"ew_multiply"``); with ``bidirectional_weight_tie`` the two share in/out projections.
- **RCPS** (``rcps: true``, reverse-complement parameter sharing): the residual stream has ``2·d_model``
  channels; the first half sees the sequence, the second half its reverse complement (stored flipped in
  length and channels). Embedding, mixer, add-norm and LM head are wrapped so that one set of weights
  serves both strands, which makes the network exactly RC-equivariant:
  ``logits(RC(x)) == flip(logits(x))[..., complement]``.
- Heads: masked LM (tied to the embedding) and sequence classification with RC-invariant pooling (RCPS
  folds both strands; non-RCPS models "conjoin" post hoc by averaging over the sequence and its RC).

Parameter names below ``backbone`` equal the Hub checkpoints' names below ``caduceus.backbone`` (the
``genomix.hub`` adapter only strips that prefix). With ``fused_add_norm`` and RCPS the released code's
fused add-norm reads the two halves of the residual stream swapped at every block (the forward strand
is computed from the second half); :func:`rcps_add_norm` reproduces that, since the released weights
were trained with it.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..tokenizer import A_ID, C_ID, G_ID, T_ID
from .base import BaseModelMixin, check_input_ids
from .heads import check_pooling, pool
from .mamba import Mamba, MambaConfig, MambaPreTrainedModel, add_norm, make_norm, run_blocks
from .registry import Family, register_family
from .tasks import MaskedLMMixin, SequenceClassificationMixin

_STRATEGIES = ("add", "ew_multiply")


def default_complement_map(size: int) -> list[int]:
    """Token id -> id of its complement base (A<->T, C<->G, everything else to itself)."""
    cmap = list(range(size))
    for a, b in ((A_ID, T_ID), (C_ID, G_ID)):
        cmap[a], cmap[b] = b, a
    return cmap


class CaduceusConfig(MambaConfig):
    """Mamba fields plus Caduceus' bidirectional and RCPS switches and the token complement map."""

    model_type = "genomix-caduceus"

    def __init__(
        self,
        bidirectional: bool = True,
        bidirectional_strategy: str = "add",
        bidirectional_weight_tie: bool = True,
        rcps: bool = False,
        complement_map: Sequence[int] | dict | None = None,
        residual_in_fp32: bool = False,
        **kwargs: Any,
    ) -> None:
        if bidirectional_strategy not in _STRATEGIES:
            raise ConfigError(f"bidirectional_strategy must be one of {_STRATEGIES}, got {bidirectional_strategy!r}")
        # num_labels is left to transformers (from id2label when a saved config has one, else 2): a default
        # here would override a saved 3-class head's id2label on reload
        super().__init__(residual_in_fp32=residual_in_fp32, **kwargs)
        self.bidirectional = bidirectional
        self.bidirectional_strategy = bidirectional_strategy
        self.bidirectional_weight_tie = bidirectional_weight_tie
        self.rcps = rcps
        if isinstance(complement_map, dict):
            complement_map = [int(complement_map[k]) for k in sorted(complement_map, key=int)]
        cmap = list(complement_map) if complement_map is not None else default_complement_map(self.padded_vocab_size)
        if len(cmap) < self.padded_vocab_size:
            cmap += list(range(len(cmap), self.padded_vocab_size))
        if sorted(cmap) != list(range(len(cmap))) or any(cmap[c] != i for i, c in enumerate(cmap)):
            raise ConfigError(f"complement_map must be an involutive permutation of token ids, got {cmap}")
        self.complement_map = cmap


def rc(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of an RCPS half: flip the length and the channel axes of (batch, L, C)."""
    return torch.flip(x, dims=[-2, -1])


class RCPSEmbedding(nn.Module):
    """``[embed(x), RC(embed(complement(reverse(x))))]``: an RC-equivariant 2·d_model embedding."""

    def __init__(self, vocab: int, d_model: int, complement_map: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long))
        self.embedding = nn.Embedding(vocab, d_model)

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rc_ids = self.complement_map[torch.flip(input_ids, dims=[-1])]
        return torch.cat([self.embedding(input_ids), rc(self.embedding(rc_ids))], dim=-1)


class Embeddings(nn.Module):
    """Holds ``word_embeddings`` (plain or RCPS) under the Hub checkpoints' module name."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        vocab = config.padded_vocab_size
        self.word_embeddings = (
            RCPSEmbedding(vocab, config.d_model, config.complement_map)
            if config.rcps
            else nn.Embedding(vocab, config.d_model)
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class BiMamba(nn.Module):
    """Forward Mamba plus a Mamba over the reversed sequence, combined by ``strategy``.

    With ``bidirectional_weight_tie`` the reverse mixer has no in/out projections of its own and uses
    the forward mixer's (the Hub checkpoints store them twice; the adapter drops the copies)."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.strategy = config.bidirectional_strategy
        self.tied = config.bidirectional_weight_tie
        self.mamba_fwd = Mamba(config)
        self.mamba_rev = Mamba(config, own_projections=not self.tied) if config.bidirectional else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.mamba_fwd(hidden, mask=mask)
        if self.mamba_rev is None:
            return out
        rev_mask = None if mask is None else mask.flip(1)
        shared = (self.mamba_fwd.in_proj, self.mamba_fwd.out_proj) if self.tied else None
        out_rev = self.mamba_rev(hidden.flip(1), mask=rev_mask, projections=shared).flip(1)
        return out + out_rev if self.strategy == "add" else out * out_rev


class RCPSMixer(nn.Module):
    """Applies one mixer to the forward half and to the RC of the second half (shared weights)."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        d = hidden.shape[-1] // 2
        fwd = self.submodule(hidden[..., :d], mask=mask)
        rev = self.submodule(rc(hidden[..., d:]), mask=None if mask is None else mask.flip(1))
        return torch.cat([fwd, rc(rev)], dim=-1)


def rcps_add_norm(
    norm: nn.Module,
    hidden: torch.Tensor,
    residual: torch.Tensor | None,
    residual_in_fp32: bool,
    swap_halves: bool,
    autocast_output: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add-norm on a 2·d stream with one norm shared by both strands (the RC strand normed in forward
    orientation). ``swap_halves`` reproduces the released fused path, which reads the halves swapped;
    ``autocast_output`` as in :func:`~genomix.models.mamba.add_norm`."""
    d = hidden.shape[-1] // 2
    first, second = (slice(d, None), slice(None, d)) if swap_halves else (slice(None, d), slice(d, None))
    h_fwd, r_fwd = add_norm(norm, hidden[..., first], None if residual is None else residual[..., first],
                            residual_in_fp32, autocast_output)
    h_rc, r_rc = add_norm(
        norm, rc(hidden[..., second]), None if residual is None else rc(residual[..., second]), residual_in_fp32,
        autocast_output,
    )
    return torch.cat([h_fwd, rc(h_rc)], dim=-1), torch.cat([r_fwd, rc(r_rc)], dim=-1)


class CaduceusBlock(nn.Module):
    """Pre-norm residual block around a (RCPS-wrapped) BiMamba mixer; submodule names as on the Hub."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.rcps = config.rcps
        self.swap_halves = config.fused_add_norm
        self.residual_in_fp32 = config.residual_in_fp32
        mixer = BiMamba(config)
        self.mixer = RCPSMixer(mixer) if config.rcps else mixer
        self.norm = make_norm(config.d_model, config.rms_norm, config.norm_epsilon)

    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rcps:
            hidden, residual = rcps_add_norm(self.norm, hidden, residual, self.residual_in_fp32, self.swap_halves)
        else:
            hidden, residual = add_norm(self.norm, hidden, residual, self.residual_in_fp32)
        return self.mixer(hidden, mask=mask), residual


class CaduceusPreTrainedModel(MambaPreTrainedModel):
    config_class = CaduceusConfig
    _no_split_modules = ["CaduceusBlock"]
    # A masked-LM checkpoint (genomix's or the Hub's) holds the RCPS head's complement_map buffer. The base and
    # classification models have no LM head, so transformers would report that copy of the config's map as an
    # unexpected weight; it is dropped like the head itself. The buffer stays persistent: transformers 5 builds
    # models on the meta device and leaves non-persistent buffers uninitialised after from_pretrained.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\.complement_map$"]


class CaduceusModel(BaseModelMixin, CaduceusPreTrainedModel):
    """Embeddings, bidirectional blocks, final norm; hidden width ``2·d_model`` with RCPS."""

    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([CaduceusBlock(config) for _ in range(config.n_layer)])
        self.norm_f = make_norm(config.d_model, config.rms_norm, config.norm_epsilon)
        self.gradient_checkpointing = False
        self.post_init()

    @property
    def hidden_size(self) -> int:
        return self.config.d_model * (2 if self.config.rcps else 1)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    def _forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``hidden_states``: each block's ``hidden`` input (the embeddings, then the previous mixer's
        output), then the final-norm output."""
        check_input_ids(input_ids, self.config)
        record = (lambda hidden, residual: hidden) if output_hidden_states else None
        hidden, residual, states = run_blocks(self, self.embeddings(input_ids), attention_mask, record)
        if self.config.rcps:
            # The final norm is never swapped (the released code's fused final norm reads halves in order).
            hidden, _ = rcps_add_norm(self.norm_f, hidden, residual, self.config.residual_in_fp32, False,
                                      autocast_output=False)
        else:
            hidden, _ = add_norm(self.norm_f, hidden, residual, self.config.residual_in_fp32, autocast_output=False)
        if states is not None:
            states.append(hidden)
        return hidden, states


def rcps_logits(hidden: torch.Tensor, weight: torch.Tensor, complement_map: torch.Tensor) -> torch.Tensor:
    """Logits from both strands of a 2·d stream: ``W h_fwd + W[complement] flip_channels(h_rc)``."""
    d = hidden.shape[-1] // 2
    return F.linear(hidden[..., :d], weight) + F.linear(torch.flip(hidden[..., d:], dims=[-1]), weight[complement_map])


class RCPSLMHead(nn.Module):
    """RC-equivariant LM head; owns a weight only when it is not tied to the embedding."""

    def __init__(self, d_model: int, vocab: int, complement_map: Sequence[int], tied: bool) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long))
        self.lm_head = None if tied else nn.Linear(d_model, vocab, bias=False)

    def forward(self, hidden: torch.Tensor, tied_weight: torch.Tensor) -> torch.Tensor:
        weight = tied_weight if self.lm_head is None else self.lm_head.weight
        return rcps_logits(hidden, weight, self.complement_map)


def complement_ids(config: CaduceusConfig, device: torch.device) -> torch.Tensor:
    """The config's token complement map as an index tensor on ``device``.

    Built from the config on each use rather than kept as a non-persistent buffer: transformers 5 builds
    models on the meta device and leaves such buffers uninitialised after ``from_pretrained``."""
    return torch.tensor(config.complement_map, dtype=torch.long, device=device)


def rc_logits(logits: torch.Tensor, complement_map: torch.Tensor) -> torch.Tensor:
    """Map per-position logits of a sequence to those of its reverse complement (flip L, permute vocab)."""
    return torch.flip(logits, dims=[1])[..., complement_map]


class CaduceusForMaskedLM(MaskedLMMixin, CaduceusPreTrainedModel):
    """Masked-LM head tied to the embedding; float32 logits over ``padded_vocab_size`` columns."""

    backbone_class = CaduceusModel
    fp32_logits = True

    def _lm_head(self, config: CaduceusConfig) -> nn.Module | None:
        """RCPS models get an :class:`RCPSLMHead` (weightless when tied); others the plain head."""
        if not config.rcps:
            return super()._lm_head(config)
        return RCPSLMHead(config.d_model, config.padded_vocab_size, config.complement_map, config.tie_word_embeddings)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.lm_head.lm_head if isinstance(self.lm_head, RCPSLMHead) else self.lm_head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """MLM logits (float32) from final hidden states (both strands folded under RCPS)."""
        if isinstance(self.lm_head, RCPSLMHead):
            return self.lm_head(hidden, self.get_input_embeddings().weight).float()
        return super().logits(hidden)

    @torch.no_grad()
    def conjoined_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Post-hoc conjoining: the mean of ``logits(x)`` and the RC-mapped ``logits(RC(x))``.

        RC-equivariant for any model (RCPS models already are, so this changes nothing for them)."""
        cmap = complement_ids(self.config, input_ids.device)
        rc_ids = cmap[torch.flip(input_ids, dims=[1])]
        rc_mask = None if attention_mask is None else attention_mask.flip(1)
        fwd = self(input_ids, attention_mask=attention_mask).logits
        rev = self(rc_ids, attention_mask=rc_mask).logits
        return 0.5 * (fwd + rc_logits(rev, cmap))


class CaduceusForSequenceClassification(SequenceClassificationMixin, CaduceusPreTrainedModel):
    """Pooling (``config.pooling``) with RC invariance -> dropout -> linear classifier.

    RCPS: the two strands' halves are pooled (the RC half with the mirrored mode, first <-> last) and
    folded (``fwd + flip_channels(rc)``), which is exactly
    invariant. Non-RCPS: features are averaged over the sequence and its reverse complement (post-hoc
    conjoining) when ``conjoin`` is set (default), making the prediction strand-independent.
    Logits are float32; no ``hidden_states`` are returned."""

    backbone_class = CaduceusModel

    def __init__(self, config: CaduceusConfig) -> None:
        # Checked here, not only by the config: overrides (genomix.from_pretrained(..., pooling=...), transformers'
        # from_pretrained kwargs) are set on a built config, and this head pools in _pooled, not through the
        # shared SequenceClassificationHead that checks the others' pooling as it is built.
        check_pooling(config.pooling)
        super().__init__(config)
        self.conjoin = bool(getattr(config, "conjoin", True))
        self.dropout = nn.Dropout(config.classifier_dropout)

    def _score_head(self, config: CaduceusConfig) -> nn.Linear:
        return nn.Linear(config.d_model, config.num_labels)

    def _pooled(self, input_ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.backbone(input_ids, attention_mask=mask).last_hidden_state
        mode = self.config.pooling
        if not self.config.rcps:
            return pool(hidden, mask, mode)
        d = self.config.d_model
        mirrored = {"first": "last", "last": "first"}.get(mode, mode)
        return pool(hidden[..., :d], mask, mode) + torch.flip(pool(hidden[..., d:], mask, mirrored), dims=[-1])

    def _logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, None]:
        features = self._pooled(input_ids, attention_mask)
        if self.conjoin and not self.config.rcps:
            rc_ids = complement_ids(self.config, input_ids.device)[torch.flip(input_ids, dims=[1])]
            rc_mask = None if attention_mask is None else attention_mask.flip(1)
            features = 0.5 * (features + self._pooled(rc_ids, rc_mask))
        return self.score(self.dropout(features)).float(), None


FAMILY = register_family(
    Family(
        model_type=CaduceusConfig.model_type,
        config_class=CaduceusConfig,
        models={
            "base": CaduceusModel,
            "masked-lm": CaduceusForMaskedLM,
            "classification": CaduceusForSequenceClassification,
        },
        default_task="masked-lm",
    )
)
