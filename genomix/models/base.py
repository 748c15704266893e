"""Shared base classes of every genomix backbone family.

Each family (``hyena``, ``mamba``, ``caduceus``, ``m2``, ``transformer``) subclasses
:class:`GenomixConfig` with its own ``model_type`` (``"genomix-<family>"``) and
:class:`GenomixPreTrainedModel` for its base model and heads. Building on ``transformers``' classes
gives users the conventions they know (``from_pretrained``/``save_pretrained``/``push_to_hub``,
output dataclasses, ``Trainer``) without ``trust_remote_code``: each family registers with the ``Auto*``
classes as its module loads (:func:`~genomix.models.registry.register_family`), importing
``genomix.hub`` loads them all, and after a bare ``import genomix`` transformers loads a family the first time
it looks the family's ``model_type`` up (:mod:`genomix.model_types`).

A family's base model puts :class:`BaseModelMixin` (the ``forward`` contract) or
:class:`LayerNormStackMixin` (embeddings -> blocks -> ``ln_f``, the whole base model but its blocks)
before its ``PreTrainedModel``; :func:`run_layers` / :func:`run_residual_layers` / :func:`run_layer` run
its blocks with optional activation checkpointing. The task heads on top are in :mod:`genomix.models.tasks`.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import os
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput

from ..errors import ConfigError, InputFormatError, RangeError
from .host_checkpoint import host_checkpoint
from .norms import LayerNorm


def may_sync(tensor: torch.Tensor) -> bool:
    """Whether a check may read ``tensor``'s values on the host: always on the CPU; on a GPU not while a CUDA
    graph is captured (a sync would break the capture) nor in training steps (a sync per step stalls the GPU)."""
    return not (tensor.is_cuda and (torch.is_grad_enabled() or torch.cuda.is_current_stream_capturing()))


def check_id_tensor(ids: Any, name: str, any_integer: bool = False) -> None:
    """Refuse ``ids`` that are not a torch tensor of integers (a list, a numpy array, float ids), naming the argument:
    the embedding lookup would fail deep inside torch with a message about indices. Token ids must be int64 or
    int32, what an embedding lookup takes (uint8 ids would index Caduceus' reverse complement as a boolean mask);
    ``any_integer`` also takes the narrower integer types (labels, which the losses cast)."""
    if not isinstance(ids, torch.Tensor):
        raise InputFormatError(f"{name} must be a torch tensor of token ids, got {type(ids).__name__}; convert with "
                               "torch.as_tensor(ids) or encode with genomix.Tokenizer(..., return_tensors='pt')")
    if (ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool
            or not (any_integer or ids.dtype in (torch.int64, torch.int32))):
        raise InputFormatError(f"{name} must hold integer ids (torch.long), got dtype {ids.dtype}; "
                               "convert with .long()")


def check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> None:
    """Refuse an ``attention_mask`` that is not a tensor of ``input_ids``' (batch, length) shape: some families
    would broadcast a wrong one without a word (padding then hides the wrong positions), others fail inside."""
    if attention_mask is None:
        return
    shape = tuple(getattr(input_ids, "shape", ()))
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != shape:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise InputFormatError(f"attention_mask must be a tensor of input_ids' shape {shape} (1 = real token, "
                               f"0 = padding), got {got}")


def check_input_ids(input_ids: torch.Tensor, config: PretrainedConfig) -> None:
    """Refuse what a model cannot read, before it fails inside: not a tensor of integer ids
    (:func:`check_id_tensor`), not (batch >= 1, length >= 1) rows, rows longer
    than ``config.max_seq_len``, ids outside ``[0, config.vocab_size)`` (the embedding's padding rows, or past
    it). The id check costs a device sync; it is skipped while a CUDA graph is captured (a sync would break
    the capture, and the eager calls before it checked the same shapes) and in CUDA training steps (a sync per
    step would stall the GPU; their batches come from genomix's own tokenizer)."""
    check_id_tensor(input_ids, "input_ids")
    if input_ids.dim() != 2 or 0 in input_ids.shape:
        raise InputFormatError(f"input_ids must be (batch >= 1, length >= 1) token ids, got shape "
                               f"{tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_seq_len:
        raise RangeError(f"sequence of length {input_ids.shape[1]} is longer than this model's max_seq_len "
                         f"{config.max_seq_len}; split it into windows (genomix embed and score-variants do) or use a "
                         "longer-context model")
    if not may_sync(input_ids):
        return
    low, high = (int(v) for v in torch.aminmax(input_ids))
    if low < 0 or high >= config.vocab_size:
        raise InputFormatError(f"token ids must lie in [0, {config.vocab_size}); got {low}..{high}. Encode sequences "
                               "with genomix.Tokenizer / genomix.tokenizer.encode")


NO_OP_FORWARD_KWARGS = ("output_attentions", "use_cache")


def _with_suggestion(name: str, accepted: Sequence[str], stems: bool = False) -> str:
    """``'name'``, with the closest accepted name when one is close (what a typo most likely meant); with
    ``stems``, else the longest accepted name of 4+ characters that starts ``name`` (``pooling_mode``: pooling)."""
    # 0.75: attn_mask gets attention_mask, inputs_embeds does not get input_ids
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.75)
    if not close and stems:
        close = sorted((a for a in accepted if len(a) >= 4 and name.startswith(a)), key=len, reverse=True)[:1]
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def check_forward_kwargs(model: nn.Module, kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments ``model.forward`` does not read, naming them and the model's class: a typo
    (``atention_mask=``) or an option the family lacks (``inputs_embeds=``) would otherwise be dropped without a
    word and the call run as if it had not been made. ``forward`` keeps ``**kwargs`` so that this message, not
    Python's, is what the user sees.

    Accepted and ignored: :data:`NO_OP_FORWARD_KWARGS` set to ``False``/``None``, as code written for other
    ``transformers`` models passes them to switch off what no genomix model has (attention maps, a key/value
    cache); set to ``True`` they ask for that, and are refused too."""
    unexpected = [name for name, value in kwargs.items() if name not in NO_OP_FORWARD_KWARGS or value]
    if not unexpected:
        return
    parameters = list(inspect.signature(type(model).forward).parameters.values())[1:]  # the class's: past self
    accepted = [param.name for param in parameters if param.kind is not inspect.Parameter.VAR_KEYWORD]
    named = ", ".join(_with_suggestion(name, accepted) for name in unexpected)
    raise TypeError(f"{type(model).__name__}.forward() got unexpected keyword argument(s) {named}; it "
                    f"takes {', '.join(accepted)} (and {'/'.join(NO_OP_FORWARD_KWARGS)} only as False or None: no "
                    "genomix model returns attention maps or keeps a key/value cache)")


@cache
def config_fields(config_class: type[PretrainedConfig]) -> frozenset[str]:
    """The field names a config of ``config_class`` takes: its and its bases' ``__init__`` parameters, the
    attributes a default instance holds, and settable properties (``num_labels``). Computed once per class (it
    builds a default config), since a YAML file and its overrides are both checked against it."""
    names = {"model_type"}
    for klass in config_class.__mro__:
        if "__init__" in vars(klass):
            names |= {param.name for param in inspect.signature(klass.__init__).parameters.values()
                      if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)}
        names |= {name for name, value in vars(klass).items() if isinstance(value, property) and value.fset}
    names |= {name for name in vars(config_class()) if not name.startswith("_")}
    return frozenset(names - {"self"})


def check_config_fields(config_class: type[PretrainedConfig], keys: Sequence[str], source: str) -> None:
    """Refuse config fields ``config_class`` does not take, naming ``source`` (a YAML file, overrides): a
    misspelt field (``pooling_mode: last``) would otherwise be stored on the config, unread, and the model built
    with the default it meant to change."""
    accepted = config_fields(config_class)
    unknown = [key for key in keys if key not in accepted]
    if unknown:
        named = ", ".join(_with_suggestion(key, sorted(accepted), stems=True) for key in unknown)
        raise ConfigError(f"{source}: {config_class.__name__} has no field(s) {named}")


def check_prompt(input_ids: torch.Tensor, caller: str) -> None:
    """Refuse token ids that are not (batch, length >= 1) rows of integers, naming ``caller`` (generation's entry
    points)."""
    check_id_tensor(input_ids, f"{caller}'s input_ids")
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise InputFormatError(f"{caller} takes (batch, length >= 1) token ids, got {tuple(input_ids.shape)}")


def check_step_ids(input_ids: torch.Tensor, batch: int, config: PretrainedConfig | None) -> None:
    """Refuse what a recurrent ``step`` cannot read: anything but one token id per sequence of its state, (batch,),
    or, given the model's ``config``, ids outside its vocabulary (:func:`check_input_ids`, which skips the sync
    while a CUDA graph is captured; None: the step checks them itself)."""
    check_id_tensor(input_ids, "step's input_ids")
    if tuple(input_ids.shape) != (batch,):
        raise InputFormatError(f"step takes one token id per sequence of its state, ({batch},), got shape "
                               f"{tuple(input_ids.shape)}")
    if config is not None:
        check_input_ids(input_ids[:, None], config)


def pad_to_multiple(n: int, multiple: int) -> int:
    """Round ``n`` up to a multiple of ``multiple`` (embedding rows are padded for tensor cores)."""
    return n if multiple <= 1 else ((n + multiple - 1) // multiple) * multiple


class GenomixConfig(PretrainedConfig):
    """Fields every genomix model has; families add their own hyper-parameters.

    ``name`` records which named size (``configs/models/<name>.yaml``) the config came from, if any.
    """

    model_type = "genomix"
    #: Sizes that must be whole numbers >= 1 (None: derived later), checked once a config is made, so a nonsensical
    #: size is a ConfigError naming it rather than a zero-layer model or an error deep inside torch. Families add
    #: their own; a field a family lacks is skipped.
    size_fields: ClassVar[tuple[str, ...]] = ("vocab_size", "pad_vocab_size_multiple", "max_seq_len", "d_model",
                                              "n_layer", "d_inner")

    def __init__(
        self,
        vocab_size: int = 12,
        pad_vocab_size_multiple: int = 8,
        max_seq_len: int = 1024,
        name: str | None = None,
        pad_token_id: int = 4,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.pad_vocab_size_multiple = pad_vocab_size_multiple
        self.max_seq_len = max_seq_len
        self.name = name
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Refuse sizes below 1, dropout probabilities outside [0, 1) and norm epsilons <= 0 (fields named
        ``*dropout``, ``*epsilon``), naming the field: torch refuses a dropout of 1.5 in a traceback when the model
        is built, and a negative epsilon trains to NaN, which a run blames on its learning rate."""
        for field in self.size_fields:
            value = getattr(self, field, None)
            if _number(value) and not (float(value).is_integer() and value >= 1):
                raise ConfigError(f"{type(self).__name__}: {field} must be a whole number >= 1, got {value!r}")
        for field, value in vars(self).items():
            if field.endswith("dropout") and _number(value) and not 0 <= value < 1:
                raise ConfigError(f"{type(self).__name__}: {field} must be a probability in [0, 1), got {value!r}")
            if field.endswith("epsilon") and _number(value) and not value > 0:
                raise ConfigError(f"{type(self).__name__}: {field} must be > 0, got {value!r}")

    @property
    def padded_vocab_size(self) -> int:
        return pad_to_multiple(self.vocab_size, self.pad_vocab_size_multiple)


def _number(value: Any) -> bool:
    """Whether a config value is a number to check: not None (derived later), a bool, or of another type (refused by
    name where the config is read)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class GenomixPreTrainedModel(PreTrainedModel):
    """Base of all genomix ``nn.Module``s that load and save through ``transformers``' machinery.

    A model cast to half precision (``.to(torch.bfloat16)``, ``.half()``, transformers' ``dtype=``) runs its
    forward under autocast to that dtype, as a model kept in fp32 does under the user's own autocast: the
    residual stream, norms, FFTs and the scan's state stay fp32 where the families keep them so, and the
    matrix products run in the half type."""

    config_class = GenomixConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []
    # forward's **kwargs exist only for check_forward_kwargs' message: without this, transformers' Trainer reads
    # them as "normalises its loss by num_items_in_batch", passes that argument and skips its own division of the
    # loss by the gradient-accumulation steps
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any, **kwargs: Any
    ) -> "GenomixPreTrainedModel":
        """transformers' ``from_pretrained``, refusing with a :class:`~genomix.errors.CheckpointError` a
        checkpoint of another family (which transformers would load as random weights, or fail on obscurely),
        and reading this family's other layouts (HyenaDNA original, mamba_ssm, Caduceus ...) through genomix's
        adapters: see :mod:`genomix.hub.class_loader`. ``genomix.from_pretrained`` picks the family itself."""
        from ..hub.class_loader import load_for_class  # late: genomix.hub imports the model modules

        native_loader = super().from_pretrained
        return load_for_class(cls, pretrained_model_name_or_path, model_args, kwargs, native_loader)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """transformers' resize (after ``tokenizer.add_tokens``), its rows padded to the config's
        ``pad_vocab_size_multiple`` unless ``pad_to_multiple_of`` says otherwise, and the config left describing
        them: a saved model is rebuilt with ``padded_vocab_size`` rows, so rows that the config would pad further
        (13 of a multiple of 8) could not be loaded back. Caduceus's reverse-complement-equivariant embedding is
        refused: it reads each token's complement, which a new token does not have."""
        if getattr(self.config, "rcps", False):
            raise ConfigError(f"{type(self).__name__}: a reverse-complement-equivariant (rcps) embedding maps each "
                              "token to its complement's row, which added tokens lack; its vocabulary cannot be "
                              "resized")
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of or
                                                     self.config.pad_vocab_size_multiple, mean_resizing)
        if embeddings.weight.shape[0] % self.config.pad_vocab_size_multiple:  # another multiple, asked for
            self.config.pad_vocab_size_multiple = 1
        return embeddings

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``save_pretrained``, then ``weights.sha256`` beside the weights: the SHA-256 of each
        weights file, which genomix checks when it loads them, so that a file changed since (a flipped bit, a bad
        copy) is an error rather than other weights (:mod:`genomix.hub.integrity`). ``save_pretrained(...,
        push_to_hub=True)`` uploads before the record is written, so that upload lacks it; ``push_to_hub()`` saves
        through this method first and uploads the record too."""
        from ..hub.integrity import write_manifest  # late: genomix.hub imports the model modules

        saved = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_manifest(Path(save_directory))
        return saved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with weights_autocast(self):
            return super().__call__(*args, **kwargs)


def weights_autocast(module: nn.Module) -> contextlib.AbstractContextManager:
    """Autocast to the weights' dtype when they are fp16/bf16 and no autocast is on: a half-precision model keeps
    its fp32 residual stream and norms, and its matmuls then take their inputs in the weights' dtype, as under
    mixed precision. Entry points other than ``forward`` (the recurrent ``prefill`` and ``step`` that generation
    calls) need it as much (:func:`in_weights_precision`). No cast cache: a CUDA graph may capture the step."""
    weight = next(module.parameters(), None)
    half = weight is not None and weight.dtype in (torch.float16, torch.bfloat16)
    if not half or torch.is_autocast_enabled(weight.device.type):
        return contextlib.nullcontext()
    return torch.autocast(weight.device.type, dtype=weight.dtype, cache_enabled=False)


def in_weights_precision(method: Callable) -> Callable:
    """Run a model method (not ``forward``: ``__call__`` already does) under :func:`weights_autocast`."""
    @functools.wraps(method)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with weights_autocast(self):
            return method(self, *args, **kwargs)
    return wrapper


def checkpointing(model: nn.Module) -> bool:
    """Whether :func:`run_layer` checkpoints ``model``'s blocks now (switched on, training, with gradients)."""
    return bool(getattr(model, "gradient_checkpointing", False) and model.training and torch.is_grad_enabled())


def run_layer(model: nn.Module, layer: nn.Module, *args: Any) -> Any:
    """Call ``layer(*args)``, under activation checkpointing when the model has it switched on and is
    training with gradients: only block inputs are kept, which is what makes 1 Mb contexts trainable.

    The checkpoint function is the one ``gradient_checkpointing_enable`` /
    ``activation_checkpointing_enable`` installed (so their ``use_reentrant`` choice holds), else
    non-reentrant :func:`torch.utils.checkpoint.checkpoint` (e.g. HyenaDNA's ``checkpoint_blocks``). With
    ``model.offload_checkpoints`` (the recipe's ``offload_checkpoints``) the block inputs are kept in host
    memory by :func:`.host_checkpoint.host_checkpoint` instead.
    """
    if checkpointing(model):
        if getattr(model, "offload_checkpoints", False):
            return host_checkpoint(layer.__call__, *args)
        checkpoint_fn: Callable[..., Any] = getattr(model, "_gradient_checkpointing_func", None) or partial(
            checkpoint, use_reentrant=False
        )
        return checkpoint_fn(layer.__call__, *args)
    return layer(*args)


def run_layers(
    model: nn.Module,
    hidden: torch.Tensor,
    *args: Any,
    final_norm: Callable[[torch.Tensor], torch.Tensor],
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Run ``hidden`` through every block of ``model.layers`` (each called as ``layer(hidden, *args)``,
    checkpointed by :func:`run_layer`), then ``final_norm``.

    Returns the normed output and, with ``output_hidden_states``, the states in HyenaDNA's convention:
    the block input (embeddings), each block's output, the last one replaced by the normed output.
    """
    states = [hidden] if output_hidden_states else None
    for layer in model.layers:
        hidden = run_layer(model, layer, hidden, *args)
        if states is not None:
            states.append(hidden)
    hidden = final_norm(hidden)
    if states is not None:
        states[-1] = hidden
    return hidden, states


def _stream_after(layer: nn.Module, hidden: torch.Tensor, *args: Any) -> torch.Tensor:
    """The residual stream after a :func:`run_residual_layers` block whose input is the whole stream."""
    out, residual = layer(hidden, None, *args)
    return residual + out


def run_residual_layers(
    model: nn.Module,
    hidden: torch.Tensor,
    *args: Any,
    final_norm: LayerNorm,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """:func:`run_layers` for blocks that leave their last residual add to whoever reads the stream next.

    Each block is called as ``layer(hidden, residual, *args)`` on the stream ``residual + hidden`` (``hidden``
    alone when ``residual`` is None) and returns the pair for the next one, whose first norm adds them in
    the same pass that normalizes (:meth:`.norms.LayerNorm.add_and_norm`); ``final_norm`` does the last add.
    Per block that is one read and one write of the fp32 stream fewer than a separate add (HyenaDNA at
    L = 1M on an H200: ~1 ms a block). Checkpointed blocks (:func:`run_layer`) still take and return the
    whole stream, one fp32 tensor each as with :func:`run_layers`, whose outputs and ``hidden_states``
    these are.
    """
    residual = None
    states = [hidden] if output_hidden_states else None
    whole_stream = checkpointing(model)
    for layer in model.layers:
        if whole_stream:
            hidden = run_layer(model, partial(_stream_after, layer), hidden, *args)
        else:
            hidden, residual = layer(hidden, residual, *args)
        if states is not None:
            states.append(hidden if residual is None else residual + hidden)
    out = final_norm(hidden) if residual is None else final_norm.add_and_norm(hidden, residual)[0]
    if states is not None:
        states[-1] = out
    return out, states


def model_output(output_class: type[ModelOutput], return_dict: bool, **fields: Any) -> ModelOutput | tuple:
    """``output_class(**fields)``, or with ``return_dict=False`` the tuple of the fields that are not
    ``None``, in order (transformers' convention)."""
    if not return_dict:
        return tuple(value for value in fields.values() if value is not None)
    return output_class(**fields)


class BaseModelMixin:
    """``forward`` of a family's base model around the family's :meth:`_forward_hidden`."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> BaseModelOutput | tuple:
        """Final hidden states (batch, length, hidden size); ``hidden_states`` (if asked) as the
        family's ``_forward_hidden`` documents. Other keyword arguments: :func:`check_forward_kwargs`."""
        check_forward_kwargs(self, kwargs)
        check_attention_mask(attention_mask, input_ids)
        hidden, states = self._forward_hidden(input_ids, attention_mask, output_hidden_states)
        states = None if states is None else tuple(states)
        return model_output(BaseModelOutput, return_dict, last_hidden_state=hidden, hidden_states=states)

    def _forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, Sequence[torch.Tensor] | None]:
        """(final hidden states, per-layer states or ``None`` unless ``output_hidden_states``)."""
        raise NotImplementedError


class LayerNormStackMixin(BaseModelMixin):
    """A base model ``embeddings`` (``nn.Embedding``) -> ``n_layer`` x ``block_class`` -> ``ln_f``
    (``LayerNorm``) with an fp32 residual stream; blocks are called as ``block(x, block_mask)``.

    The family supplies ``block_class`` and :meth:`_block_mask`. ``hidden_states``
    as :func:`run_layers` returns them (the last one normed, as in HyenaDNA).
    """

    block_class: ClassVar[type[nn.Module]]

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(self.block_class(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.d_model, eps=config.layer_norm_epsilon, autocast_output=False)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def _block_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """What every block gets for ``attention_mask`` (``None`` when nothing is padded)."""
        raise NotImplementedError

    def _forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        check_input_ids(input_ids, self.config)
        mask = self._block_mask(attention_mask)
        x = self.embeddings(input_ids).float()
        return run_layers(self, x, mask, final_norm=self.ln_f, output_hidden_states=output_hidden_states)
