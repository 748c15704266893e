"""The task heads every family shares: one mixin per task of :data:`genomix.models.registry.TASKS`
(the ``base`` task's is :class:`genomix.models.base.BaseModelMixin`).

A family declares each task class by putting the mixin before its own ``PreTrainedModel`` (which
brings the config class and weight init) and naming its backbone::

    class HyenaForCausalLM(CausalLMMixin, HyenaPreTrainedModel):
        backbone_class = HyenaModel

The mixins only arrange code; parameter names stay the families' own (``backbone.*``, ``lm_head.weight``
when untied, ``score.proj.*``), so checkpoints load as before.

- :class:`CausalLMMixin` / :class:`MaskedLMMixin`: backbone + LM head over ``padded_vocab_size``
  columns, tied to the input embedding matrix unless ``tie_word_embeddings`` is false (tied models own
  no ``lm_head`` parameter); next-token or position-wise loss.
- :class:`RecurrentLMMixin`: a causal LM's ``prefill`` and ``step`` through its backbone's recurrent state.
- :class:`SequenceClassificationMixin`: backbone + :class:`~genomix.models.heads.SequenceClassificationHead`
  under ``score``; loss by ``problem_type``.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from .base import check_forward_kwargs, in_weights_precision, model_output
from .heads import SequenceClassificationHead, causal_lm_loss, classification_loss, masked_lm_loss


class TaskMixin:
    """A task model around ``backbone_class(config)`` (stored as ``backbone``): ``forward`` runs
    :meth:`_logits_and_states`, adds :meth:`_loss` when ``labels`` are given and returns
    ``output_class`` (or a tuple with ``return_dict=False``); other keyword arguments are refused or ignored
    as :func:`~genomix.models.base.check_forward_kwargs` says.

    ``fp32_logits`` makes the logits float32 under autocast too (the Mamba family's choice).
    """

    backbone_class: ClassVar[type[PreTrainedModel]]
    output_class: ClassVar[type[ModelOutput]]
    fp32_logits: ClassVar[bool] = False
    backbone: PreTrainedModel

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> ModelOutput | tuple:
        check_forward_kwargs(self, kwargs)
        logits, states = self._logits_and_states(input_ids, attention_mask, output_hidden_states)
        loss = self._loss(logits, labels) if labels is not None else None
        return model_output(self.output_class, return_dict, loss=loss, logits=logits, hidden_states=states)

    def _logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The head's logits and the backbone's ``hidden_states`` (``None`` unless asked)."""
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, input_ids: torch.Tensor, **options: Any) -> torch.Tensor:
        """Refused by name (a :class:`~genomix.errors.ConfigError`) rather than an ``AttributeError``: a masked LM
        (Caduceus, M2-BERT) or a classifier has no next-token distribution to generate from; causal LMs
        (:class:`CausalLMMixin`) generate."""
        raise not_a_causal_lm(self, "generate")


class LMHeadMixin(TaskMixin):
    """Backbone + vocabulary projection; :class:`CausalLMMixin` and :class:`MaskedLMMixin` pick the loss."""

    lm_loss: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.backbone = self.backbone_class(config)
        self.lm_head = self._lm_head(config)
        self.post_init()

    def _lm_head(self, config: PretrainedConfig) -> nn.Module | None:
        """``None`` when tied (logits use the embedding matrix), else a bias-free ``nn.Linear``."""
        if config.tie_word_embeddings:
            return None
        return nn.Linear(config.d_model, config.padded_vocab_size, bias=False)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.lm_head  # None when tied: logits use the embedding matrix directly

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM logits (``padded_vocab_size`` columns) from final hidden states."""
        weight = self.get_input_embeddings().weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(hidden.to(weight.dtype), weight)
        return logits.float() if self.fp32_logits else logits

    def _logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        out = self.backbone(input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        return self.logits(out.last_hidden_state), out.hidden_states

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.lm_loss(logits, labels)


class CausalLMMixin(LMHeadMixin):
    """Next-token LM: ``labels`` are shifted inside, -100 ignored (:class:`CausalLMOutput`)."""

    output_class = CausalLMOutput
    lm_loss = staticmethod(causal_lm_loss)

    def generate(self, input_ids: torch.Tensor, **options: Any) -> torch.Tensor:
        """transformers' ``model.generate`` for a DNA LM: greedy or sampled bases after each prompt row
        (:func:`genomix.models.generation.generate_like_transformers` lists the options taken)."""
        from .generation import generate_like_transformers  # generation imports this module

        return generate_like_transformers(self, input_ids, **options)


class RecurrentLMMixin:
    """Next-token logits through the backbone's recurrent state, for generation (:mod:`.generation`).

    The backbone provides ``allocate_state(batch, device, length)``, ``prefill(ids, state)`` and
    ``step(ids, state)`` returning final-norm hidden states, and ``max_state_length`` (None when a state
    holds a sequence of any length, as Mamba's; else the most positions one can hold: HyenaDNA's and M2's
    ``max_seq_len``). Put it before :class:`CausalLMMixin`."""

    backbone: PreTrainedModel

    @property
    def max_state_length(self) -> int | None:
        return self.backbone.max_state_length

    def allocate_state(self, batch: int, device: torch.device | None = None, length: int | None = None) -> list:
        """Fresh per-layer states for ``batch`` sequences that will hold ``length`` positions (prompt and
        generated tokens). Where ``max_state_length`` is not None a state is sized by it (default: that
        limit), so ask for what the sequence needs; Mamba's state has one size whatever the length."""
        return self.backbone.allocate_state(batch, device, length)

    @torch.no_grad()
    @in_weights_precision
    def prefill(self, input_ids: torch.Tensor, state: list) -> torch.Tensor:
        """Logits (batch, padded_vocab) for the token after the prompt ``input_ids`` (batch, L), read in
        parallel, leaving ``state`` ready for :meth:`step`."""
        return self.logits(self.backbone.prefill(input_ids, state))

    @torch.no_grad()
    @in_weights_precision
    def step(self, input_ids: torch.Tensor, state: list) -> torch.Tensor:
        """Logits (batch, padded_vocab) for the next token after feeding ``input_ids`` (batch,)."""
        return self.logits(self.backbone.step(input_ids, state))


class MaskedLMMixin(LMHeadMixin):
    """Masked LM: ``labels`` compared position-wise, -100 ignored (:class:`MaskedLMOutput`)."""

    output_class = MaskedLMOutput
    lm_loss = staticmethod(masked_lm_loss)


class SequenceClassificationMixin(TaskMixin):
    """Backbone + padding-aware pooling (``config.pooling``) + linear classifier (``num_labels``) under
    ``score``; loss by ``problem_type``.

    The head's dropout and bias come from ``classifier_dropout`` / ``classifier_bias`` (default: a
    bias); a family may override :meth:`_score_head`.
    """

    output_class = SequenceClassifierOutput

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = self.backbone_class(config)
        self.score = self._score_head(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The classifier's linear layer gets N(0, ``initializer_range``) weights and a zero bias; every
        other module the family's own init.

        Done here, for every family, because transformers builds models on the meta device: a head
        missing from the checkpoint (an LM checkpoint loaded for classification) has values only if
        ``_init_weights`` gives it some, and not every family's init covers linear weights.
        """
        score = getattr(self, "score", None)
        if module is (score.proj if isinstance(score, SequenceClassificationHead) else score):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def _score_head(self, config: PretrainedConfig) -> nn.Module:
        return SequenceClassificationHead(
            config.d_model,
            config.num_labels,
            config.pooling,
            config.classifier_dropout,
            getattr(config, "classifier_bias", True),
        )

    def _logits_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        out = self.backbone(input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        logits = self.score(out.last_hidden_state, attention_mask)
        return (logits.float() if self.fp32_logits else logits), out.hidden_states

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, labels, self.config)


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model``'s output is a next-token distribution: a causal LM head on a model that reads left to
    right (not Caduceus' bidirectional one)."""
    return isinstance(model, CausalLMMixin) and not getattr(model.config, "bidirectional", False)


def require_causal_lm(model: nn.Module, caller: str) -> None:
    """Refuse a model whose output is not a next-token distribution (a base model's hidden states, a
    classifier's scores, a masked or bidirectional LM's logits), naming ``caller``; their numbers would
    come out without meaning."""
    if not is_causal_lm(model):
        raise not_a_causal_lm(model, caller)


def not_a_causal_lm(model: nn.Module, caller: str) -> Exception:
    """The :class:`~genomix.errors.ConfigError` by which ``caller`` refuses ``model``, which is no causal LM."""
    from ..errors import ConfigError

    return ConfigError(f"{caller} needs a causal language model (HyenaDNA, Mamba, causal M2, the Transformer with "
                       f"their LM head); {type(model).__name__} is not one: a masked or classification model does "
                       "not predict the next base. In Python, a checkpoint that has that head loads with "
                       "task='causal-lm' (or genomix.from_pretrained without task=)")
