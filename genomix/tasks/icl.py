"""In-context classification with a DNA language model: k-shot prompts and soft prompts.

The model's weights never change. Every query becomes one token row::

    [soft prompt: P slots] demo_1 [SEP] y_1 [SEP] ... demo_n [SEP] y_n [SEP] query [SEP]

- ``y_i`` is the demonstration's class written as one token of the *verbalizer* (class 0 -> ``A``,
  class 1 -> ``C``, ...): a DNA model's vocabulary has no other tokens to spare, and nucleotides are
  tokens it has learnt embeddings for.
- The class distribution is the model's next-token distribution at the final ``[SEP]``, restricted to
  the verbalizer tokens. A masked LM (Caduceus, M2-BERT) gets ``[MASK] [SEP]`` after the query's
  ``[SEP]`` instead and is read at the mask: the label slot filled in, as in its pretraining.
- Demonstrations (``shots`` per class, in random order) are drawn from the training split with a
  generator seeded by (seed, split, row), so a query always sees the same demonstrations.
- A soft prompt (HyenaDNA's soft prompting) is ``P`` trainable embedding vectors in front of every row,
  tuned by gradient descent on the training split while the model stays frozen. The slots are
  ``[RESERVED]`` tokens in the row; :class:`SoftPromptEmbedding` swaps their embeddings for the
  prompt's.

Rows are padded on the right and the logits are read at each row's scoring position: for a causal
model the padding after it cannot change them, so no mask is needed. A bidirectional model would see the
padding, so its rows are batched only with rows of the same length. Soft prompts are for causal models.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..devices import resolve_device
from ..errors import CheckpointError, ConfigError, RangeError, TokenizationError, TrainingError
from ..models.inference_loop import inference_loop
from ..models.tasks import CausalLMMixin, MaskedLMMixin
from ..outputs import atomic_write_text, check_output_dir, make_output_dir, temp_sibling
from ..resume import changed_settings, flat_settings, weights_fingerprint
from ..tokenizer import A_ID, MASK_ID, PAD_ID, RESERVED_ID, SEP_ID, T_ID, encode
from ..train.recipe import check_field_types, config_dirs, from_mapping, read_named_yaml
from .finetune import refuse_finished_out, refuse_task_folder, write_predictions
from .identity import BASE_MODEL_KEYS, check_base_model, check_task_data, run_identity, task_fingerprint
from .labelled import LabelledSequences, TaskData, load_task, warn_of_training_rows_in
from .metrics import classification_metrics, require_finite_logits

log = logging.getLogger(__name__)

SOFT_ID = RESERVED_ID
SPLIT_SEEDS = {"train": 0, "dev": 1, "test": 2}
CHECKPOINT = "soft_prompt_state.pt"


@dataclasses.dataclass
class IclRecipe:
    """How to prompt: ``shots`` demonstrations per class, a soft prompt of ``soft_prompt_tokens``
    vectors tuned for ``steps`` steps (0 tokens: none), the verbalizer, and how many rows to score.

    - ``max_length``: cut demonstrations and queries to their first ``max_length`` bases (``None``: keep
      whole; a row longer than the model's ``max_seq_len`` is then an error naming the fix).
    - ``test_rows``/``train_rows``: score or tune on the first rows only (quick runs; ``None``: all).
    - ``checkpoint_every``: soft-prompt steps between resumable checkpoints.
    """

    shots: int = 2
    soft_prompt_tokens: int = 0
    steps: int = 0
    lr: float = 1e-2
    batch_size: int = 16
    eval_batch_size: int = 64
    verbalizer: str = "ACGTN"
    max_length: int | None = None
    train_rows: int | None = None
    test_rows: int | None = None
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("shots", "soft_prompt_tokens", "steps"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"ICL recipe field {name} must be >= 0, got {getattr(self, name)}")
        if self.steps and not self.soft_prompt_tokens:
            raise ConfigError("ICL recipe: steps > 0 tunes a soft prompt; set soft_prompt_tokens (--soft-prompt) too")
        try:
            tokens = encode(self.verbalizer)
        except TokenizationError as exc:
            raise ConfigError(f"ICL recipe verbalizer: {exc}") from None
        if len(set(tokens.tolist())) != len(tokens) or not len(tokens):
            # IUPAC codes all read as N, and lower case as upper case: classes would share one label token
            raise ConfigError(f"ICL recipe verbalizer must be bases that are distinct tokens (A, C, G, T, N: one "
                              f"letter per class, any IUPAC code counting as N), got {self.verbalizer!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"ICL recipe field max_length must be a positive integer (or null: keep whole), "
                              f"got {self.max_length}")
        for name in ("batch_size", "eval_batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"ICL recipe field {name} must be a positive integer, got {getattr(self, name)}")
        for name in ("train_rows", "test_rows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"ICL recipe field {name} must be a positive integer (or null: all), "
                                  f"got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"ICL recipe field lr must be a positive learning rate, got {self.lr}")


def load_icl_recipe(name_or_path: str | os.PathLike, **overrides: Any) -> IclRecipe:
    """A recipe by shipped name (``kshot``, ``soft-prompt``) or YAML path; ``None`` overrides are ignored."""
    data, where = read_named_yaml(name_or_path, config_dirs("GENOMIX_ICL_RECIPE_PATH", "icl"), "ICL recipe",
                                  **overrides)
    check_field_types(IclRecipe, data, where)
    return from_mapping(IclRecipe, data, where)


class SoftPromptEmbedding(nn.Module):
    """The model's token embedding, except that the ``[RESERVED]`` slots of a row take the prompt's
    vectors in order (the i-th slot of a row gets vector i)."""

    def __init__(self, base: nn.Embedding, length: int, seed: int = 0) -> None:
        super().__init__()
        self.base = base
        generator = torch.Generator().manual_seed(seed)
        start = torch.randint(A_ID, T_ID + 1, (length,), generator=generator)  # initialised from random nucleotides
        self.prompt = nn.Parameter(base.weight.detach()[start].clone().float())

    @property
    def weight(self) -> torch.Tensor:  # tied LM heads read the embedding matrix through this
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded = self.base(input_ids)
        slots = input_ids == SOFT_ID
        if not bool(slots.any()):
            return embedded
        index = (slots.cumsum(dim=1) - 1).clamp(0, self.prompt.shape[0] - 1)
        return torch.where(slots.unsqueeze(-1), self.prompt[index].to(embedded.dtype), embedded)


class PromptBuilder:
    """Token rows for queries of one split: soft-prompt slots, demonstrations, the query, ``[SEP]``."""

    def __init__(self, train: LabelledSequences, num_labels: int, recipe: IclRecipe, masked: bool = False) -> None:
        if num_labels > len(recipe.verbalizer):
            raise ConfigError(f"{num_labels} classes but the verbalizer {recipe.verbalizer!r} has "
                              f"{len(recipe.verbalizer)} tokens; ICL handles at most that many classes")
        self.train, self.recipe = train, recipe
        self.tail = [SEP_ID, MASK_ID, SEP_ID] if masked else [SEP_ID]
        self.score_offset = 2 if masked else 1  # the scoring position, counted back from the row's end
        self.label_tokens = encode(recipe.verbalizer[:num_labels], dtype=np.int64)
        self.by_class = [np.flatnonzero(train.labels == c) for c in range(num_labels)]
        # tuning a soft prompt queries training rows, and a training query is never its own demonstration
        needed = recipe.shots + 1 if recipe.steps else recipe.shots
        short = [f"class {c} has {len(rows)}" for c, rows in enumerate(self.by_class) if len(rows) < needed]
        if recipe.shots and short:
            rows = f"the first {recipe.train_rows} training rows" if recipe.train_rows else "the training split"
            why = " (soft-prompt tuning queries training rows, and a query is never its own demonstration)"
            raise ConfigError(f"too few examples in {rows} for {recipe.shots} shots per class: {', '.join(short)}, "
                              f"and each class needs {needed}{why if recipe.steps else ''}; use fewer shots (--shots)"
                              + (", or more train_rows (--train-rows)" if recipe.train_rows else ""))

    def _cut(self, ids: np.ndarray) -> np.ndarray:
        return ids if self.recipe.max_length is None else ids[: self.recipe.max_length]

    def row(self, query: np.ndarray, split: str, index: int) -> np.ndarray:
        """The row for ``query`` (row ``index`` of ``split``; a training query never sees itself)."""
        rng = np.random.default_rng([self.recipe.seed, SPLIT_SEEDS[split], index])
        demos = []
        for rows in self.by_class:
            pool = rows[rows != index] if split == "train" else rows
            demos.extend(rng.choice(pool, size=self.recipe.shots, replace=False).tolist())
        rng.shuffle(demos)
        parts = [np.full(self.recipe.soft_prompt_tokens, SOFT_ID, dtype=np.int64)]
        for d in demos:
            label = self.label_tokens[self.train.labels[d]]
            parts += [self._cut(self.train.ids[d]).astype(np.int64), [SEP_ID, label, SEP_ID]]
        parts += [self._cut(query).astype(np.int64), self.tail]
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def _too_long(length: int, limit: int, where: str = "") -> RangeError:
    """The refusal of a prompt of ``length`` tokens past the model's ``limit`` (``where``: the query it is for),
    naming the fixes as both command-line flags and :class:`IclRecipe` fields, since both callers reach it."""
    return RangeError(f"{where}an ICL prompt of {length} tokens exceeds the model's max_seq_len={limit}; use fewer "
                      "shots (--shots), a shorter soft prompt (--soft-prompt) or --max-length (max_length) to cut "
                      "the sequences")


def check_prompt_lengths(builder: PromptBuilder, splits: dict[str, LabelledSequences], limit: int | None) -> None:
    """Refuse, naming the first query's file and line, a prompt of any row of ``splits`` (split name -> the rows
    that will be prompted) longer than ``limit``, so that a run stops before scoring anything rather than after
    writing one split's predictions."""
    if limit is None:
        return
    for split, data in splits.items():
        for i in range(len(data)):
            length = len(builder.row(data.ids[i], split, i))
            if length > limit:
                raise _too_long(length, limit, f"{data.origin(i)} ({split} row {i}): ")


def _batch(rows: list[np.ndarray], limit: int | None) -> torch.Tensor:
    """Right-padded (batch, longest) ids."""
    longest = max(len(r) for r in rows)
    if limit is not None and longest > limit:
        raise _too_long(longest, limit)
    ids = torch.full((len(rows), longest), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.from_numpy(r)
    return ids


def class_logits(model: nn.Module, rows: list[np.ndarray], label_tokens: np.ndarray, device: torch.device,
                 score_offset: int = 1) -> torch.Tensor:
    """(batch, K) logits of the verbalizer tokens at each row's scoring position (``score_offset`` tokens
    from its end: 1 for a causal model's last token, 2 for a masked model's ``[MASK]``). Bidirectional
    models run each row length as its own batch, so no row sees another's padding."""
    limit = getattr(model.config, "max_seq_len", None)
    lengths = np.array([len(r) for r in rows])
    groups = [np.arange(len(rows))] if isinstance(model, CausalLMMixin) else [
        np.flatnonzero(lengths == n) for n in np.unique(lengths)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out = torch.empty(len(rows), len(label_tokens), device=device)
    for group in groups:
        ids = _batch([rows[i] for i in group], limit).to(device)
        with autocast:
            logits = model(input_ids=ids).logits
        at = torch.as_tensor(lengths[group] - score_offset, device=device)
        scored = logits[torch.arange(len(group), device=device), at]
        out[torch.as_tensor(group, device=device)] = scored[:, torch.as_tensor(label_tokens, device=device)].float()
    return out


@torch.no_grad()
def score_split(model: nn.Module, builder: PromptBuilder, data: LabelledSequences, split: str,
                batch_size: int, device: torch.device, quiet: bool = True, cuda_graphs: bool = True) -> np.ndarray:
    """(n, K) class logits for every row of ``data`` (repeated batch shapes replayed from CUDA graphs on a GPU
    unless ``cuda_graphs`` is False)."""
    from tqdm.auto import tqdm

    out = []
    with inference_loop(model, cuda_graphs=cuda_graphs):  # the weights are fixed for the whole pass
        for start in tqdm(range(0, len(data), batch_size), desc=f"{split} prompts", disable=quiet):
            rows = [builder.row(data.ids[i], split, i) for i in range(start, min(start + batch_size, len(data)))]
            out.append(class_logits(model, rows, builder.label_tokens, device, builder.score_offset).cpu())
    return torch.cat(out).numpy()


#: Recipe fields a resumed soft-prompt run may change: how long it tunes, and how it scores afterwards.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "eval_batch_size", "test_rows")


def tuning_identity(model: str, task: str | os.PathLike | TaskData, recipe: IclRecipe, lm: nn.Module,
                    examples: TaskData) -> dict[str, str]:
    """What a soft prompt is tuned on: the model (its name and the fingerprint of ``lm``, the frozen model as
    loaded, LM head included), the task (as named, ``task``, and by the fingerprint of its loaded ``examples``) and
    every recipe field a resume must keep."""
    kept = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in RESUMABLE_CHANGES}
    return {**run_identity(model, task), "task_data": task_fingerprint(examples), "weights": weights_fingerprint(lm),
            "recipe": json.dumps(kept, sort_keys=True)}


def _save_state(path: Path, prompt: SoftPromptEmbedding, optimizer: torch.optim.Optimizer,
                losses: list[float | None], identity: dict[str, str]) -> None:
    """The resumable state after ``len(losses)`` steps: prompt, optimizer, every step's loss so far and what
    the prompt is tuned on (``identity``, checked when resuming)."""
    make_output_dir(path.parent)  # the first write of a soft-prompt run: a run stopped before leaves no folder
    tmp = temp_sibling(path)
    torch.save({"prompt": prompt.prompt.detach().cpu(), "optimizer": optimizer.state_dict(), "step": len(losses),
                "losses": losses, "identity": identity}, tmp)
    os.replace(tmp, path)


def _check_identity(state_path: Path, saved: dict[str, str] | None, identity: dict[str, str]) -> None:
    """Refuse to resume a soft prompt tuned on another model (by its weights, :func:`.identity.check_base_model`),
    task (by its examples, :func:`.identity.check_task_data`, or, in a state saved before they were
    fingerprinted, by its name) or recipe, naming each change (states written before the identity was kept, and
    calls without one, are trusted; only what ``identity`` holds is compared)."""
    if saved is None or not identity:
        return
    check_base_model(saved, identity, state_path)
    check_task_data(saved, identity, state_path)
    compared_elsewhere = (*BASE_MODEL_KEYS, "task_data", *(("task",) if "task_data" in saved else ()))
    now = {key: value for key, value in _readable_identity(identity).items() if key not in compared_elsewhere}
    changed = changed_settings(_readable_identity(saved), now, keys=now)
    if changed:
        raise ConfigError(f"{state_path}: the interrupted soft prompt was tuned with other settings "
                          f"({'; '.join(changed)}); resume with its settings, or choose another --out")


def _readable_identity(identity: dict[str, str]) -> dict[str, Any]:
    """``identity`` with its recipe (JSON) spread into ``recipe FIELD`` entries, so that a change names the field."""
    recipe = json.loads(identity.get("recipe", "{}"))
    return {**{k: v for k, v in identity.items() if k != "recipe"}, **flat_settings(recipe, "recipe ")}


def tune_soft_prompt(model: nn.Module, prompt: SoftPromptEmbedding, builder: PromptBuilder, train: LabelledSequences,
                     recipe: IclRecipe, device: torch.device, state_path: Path,
                     quiet: bool = True, identity: dict[str, str] | None = None) -> list[float | None]:
    """``recipe.steps`` AdamW steps on the prompt alone (cross-entropy of the class logits), resuming
    from ``state_path`` when it exists (and was tuned on the same ``identity``, :func:`tuning_identity`) and
    saving it every ``checkpoint_every`` steps; returns the loss of every step, those before a resume
    included (item ``i`` is step ``i + 1``'s)."""
    identity = identity or {}
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW([prompt.prompt], lr=recipe.lr, weight_decay=0.0)
    losses: list[float | None] = []
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        _check_identity(state_path, state.get("identity"), identity)
        if state["prompt"].shape != prompt.prompt.shape:
            raise CheckpointError(f"{state_path}: a soft prompt of shape {tuple(state['prompt'].shape)}, the recipe "
                                  f"asks for {tuple(prompt.prompt.shape)}; use another --out")
        with torch.no_grad():
            prompt.prompt.copy_(state["prompt"])
        optimizer.load_state_dict(state["optimizer"])
        # states written before the loss history was kept hold only the step: those losses are unknown (None)
        losses = state.get("losses", [None] * int(state["step"]))
        if len(losses) > recipe.steps:  # scoring that prompt under this recipe would mislabel it
            raise ConfigError(f"{state_path}: the soft prompt there was tuned for {len(losses)} steps, more than the "
                              f"{recipe.steps} asked for; resume with steps (--steps) {len(losses)} or more, or tune a "
                              "new prompt in another --out")
        log.info("resuming the soft prompt at step %d of %d", len(losses), recipe.steps)
    saved = len(losses)  # the step of the state on disk (0: none)
    progress = tqdm(total=recipe.steps, initial=saved, desc="soft prompt", disable=quiet)
    try:
        while len(losses) < recipe.steps:
            losses.append(_tuning_step(model, optimizer, builder, train, recipe, device, len(losses), state_path))
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.4f}")
            if len(losses) % recipe.checkpoint_every == 0 or len(losses) == recipe.steps:
                _save_state(state_path, prompt, optimizer, losses, identity)
                saved = len(losses)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_tuning_interrupted(state_path, len(losses), saved, recipe)) from None
    finally:
        progress.close()
    return losses


def _tuning_step(model: nn.Module, optimizer: torch.optim.Optimizer, builder: PromptBuilder,
                 train: LabelledSequences, recipe: IclRecipe, device: torch.device, step: int,
                 state_path: Path) -> float:
    """One optimizer step on the soft prompt (0-based ``step``: its batch is drawn from it, so a resumed run draws
    the batches an uninterrupted one would); returns its loss, refusing a non-finite one."""
    rng = np.random.default_rng([recipe.seed, 7919, step])
    picks = rng.choice(len(train), size=min(recipe.batch_size, len(train)), replace=False)
    rows = [builder.row(train.ids[i], "train", int(i)) for i in picks]
    logits = class_logits(model, rows, builder.label_tokens, device)
    loss = nn.functional.cross_entropy(logits, torch.as_tensor(train.labels[picks], device=device))
    if not bool(torch.isfinite(loss)):
        raise TrainingError(f"non-finite soft-prompt loss at step {step}; the last good state is {state_path} "
                            "(if written): lower lr (--lr) and rerun with --resume")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _tuning_interrupted(state_path: Path, done: int, saved: int, recipe: IclRecipe) -> str:
    """What an interrupted soft-prompt run kept and how to go on, after ``done`` steps of which the state on disk
    holds ``saved`` (0: none yet); the CLI prints it after "interrupted; "."""
    stopped = f"soft-prompt tuning stopped after step {done} of {recipe.steps}"
    if not saved:
        return (f"{stopped}, before its first checkpoint (every {recipe.checkpoint_every} steps): nothing was kept; "
                "rerun the same command to start again")
    return (f"{stopped}; the soft prompt's state after step {saved} is kept in {state_path}: rerun the same command "
            "with --resume to continue from there")


def _prompting_lm(model_name: str, revision: str | None, soft_prompt: bool) -> nn.Module:
    """The model with its LM head; soft prompts need a causal one."""
    from ..hub import load_model

    model = load_model(model_name, "lm", revision=revision)
    if not isinstance(model, (CausalLMMixin, MaskedLMMixin)):
        raise ConfigError(f"{model_name} is a {type(model).__name__}; in-context prompting reads a language-model "
                          "head's token distribution, so it needs a causal or masked LM")
    if soft_prompt and not isinstance(model, CausalLMMixin):
        raise ConfigError(f"{model_name} is a masked LM ({type(model).__name__}); soft prompts need a causal LM "
                          "(HyenaDNA, Mamba, M2 causal, the Transformer). k-shot prompts work with it")
    return model


def run_icl(model: str, task: str | os.PathLike | TaskData, out_dir: str | os.PathLike, recipe: IclRecipe, *,
            revision: str | None = None, device: str | torch.device | None = None, resume: bool = False,
            quiet: bool = False, cuda_graphs: bool = True) -> dict[str, Any]:
    """Prompt ``model`` on ``task``'s dev and test splits (after tuning a soft prompt if the recipe has
    one) and write ``metrics.json``, ``predictions/{dev,test}.tsv`` and ``soft_prompt.safetensors`` to
    ``out_dir``. With ``resume``, a soft-prompt run continues from its checkpoint in ``out_dir`` (tuning on to
    ``steps``, then scoring again); without it, or with a recipe without a soft prompt (which would write its
    results beside the unfinished run's checkpoint), an ``out_dir`` holding such a checkpoint is refused. A
    finished run's ``metrics.json`` (this command's or fine-tuning's) is refused unless ``resume`` continues that
    checkpoint, as fine-tuning refuses one without a checkpoint to resume: a k-shot run keeps none, so resuming it
    would only score everything again. The task folder itself is refused. ``cuda_graphs``: scoring replays repeated
    batch shapes from CUDA graphs on a GPU (:func:`genomix.models.inference_loop`)."""
    out = Path(out_dir).expanduser()
    _check_out(out, task, recipe, resume)
    task_source = task
    task = task if isinstance(task, TaskData) else load_task(task)
    train = task.split("train")
    if recipe.train_rows is not None:
        train = train.head(recipe.train_rows)
    scored = {split: task.splits[split] if recipe.test_rows is None else task.splits[split].head(recipe.test_rows)
              for split in ("dev", "test") if split in task.splits}
    warn_of_training_rows_in(train, scored)
    torch_device = resolve_device(device, "device=")
    lm = _prompting_lm(model, revision, soft_prompt=recipe.soft_prompt_tokens > 0).to(torch_device).eval()
    lm.requires_grad_(False)
    builder = PromptBuilder(train, task.num_labels, recipe, masked=isinstance(lm, MaskedLMMixin))
    prompted = {**({"train": train} if recipe.steps else {}), **scored}
    check_prompt_lengths(builder, prompted, getattr(lm.config, "max_seq_len", None))
    losses: list[float | None] = []
    if recipe.soft_prompt_tokens:
        identity = tuning_identity(model, task_source, recipe, lm, task)  # before the prompt joins the model
        prompt = SoftPromptEmbedding(lm.get_input_embeddings(), recipe.soft_prompt_tokens, recipe.seed).to(torch_device)
        lm.set_input_embeddings(prompt)
        losses = tune_soft_prompt(lm, prompt, builder, train, recipe, torch_device, out / CHECKPOINT, quiet, identity)
        _save_prompt(out, prompt)
    try:
        metrics = _score_splits(lm, builder, scored, task.label_names, out, recipe, torch_device, quiet, cuda_graphs,
                                model)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_scoring_interrupted(out, recipe)) from None
    summary = {"model": model, "task": task.name, "label_names": task.label_names,
               "verbalizer": recipe.verbalizer[: task.num_labels], "recipe": dataclasses.asdict(recipe),
               "soft_prompt_losses": losses, "metrics": metrics}
    atomic_write_text(make_output_dir(out) / "metrics.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _check_out(out: Path, task: str | os.PathLike | TaskData, recipe: IclRecipe, resume: bool) -> None:
    """Refuse an ``--out`` that this run must not write to (see :func:`run_icl`), creating nothing: the folder is
    made right before the first write, so a run refused on the way (no training split, a model that does not
    load) leaves no empty folder behind."""
    held = (out / CHECKPOINT).is_file()  # a soft-prompt run's, finished or not
    if held and not resume:
        raise ConfigError(f"{out} already holds a soft-prompt run; pass --resume to continue it, or choose another "
                          "--out")
    if not (resume and recipe.soft_prompt_tokens and held):
        refuse_finished_out(out)
    if held and not recipe.soft_prompt_tokens:  # unfinished (refused above if not): results beside its checkpoint
        raise ConfigError(f"{out} holds an unfinished soft-prompt run ({out / CHECKPOINT}), which a recipe without "
                          "a soft prompt cannot continue; resume it with the soft-prompt recipe it was started with, "
                          "or choose another --out")
    refuse_task_folder(out, task)
    check_output_dir(out)  # a file in the way is refused before the model loads


def _save_prompt(out: Path, prompt: SoftPromptEmbedding) -> None:
    """``soft_prompt.safetensors``: the tuned prompt's vectors, written atomically."""
    from safetensors.torch import save_file

    path = make_output_dir(out) / "soft_prompt.safetensors"
    tmp = temp_sibling(path)
    save_file({"prompt": prompt.prompt.detach().cpu().contiguous()}, str(tmp))
    os.replace(tmp, path)


def _score_splits(lm: nn.Module, builder: PromptBuilder, scored: dict[str, LabelledSequences],
                  label_names: list[str], out: Path, recipe: IclRecipe, device: torch.device, quiet: bool,
                  cuda_graphs: bool, model: str) -> dict[str, dict[str, float]]:
    """The metrics of every split in ``scored``, writing each one's ``predictions/SPLIT.tsv`` once it is scored."""
    metrics = {}
    for split, data in scored.items():
        logits = score_split(lm, builder, data, split, recipe.eval_batch_size, device, quiet, cuda_graphs)
        require_finite_logits(logits, model, split)
        metrics[split] = classification_metrics(logits, data.labels)
        predictions = make_output_dir(out / "predictions")  # once a split is scored: none for a run refused before
        write_predictions(predictions / f"{split}.tsv", logits, data, label_names)
    return metrics


def _scoring_interrupted(out: Path, recipe: IclRecipe) -> str:
    """What a run interrupted while scoring kept and how to go on; the CLI prints it after "interrupted; "."""
    if (out / CHECKPOINT).is_file():
        return (f"scoring stopped; the tuned soft prompt's state is kept in {out / CHECKPOINT}: rerun the same "
                "command with --resume to score it")
    written = [str(p.relative_to(out)) for p in (out / "soft_prompt.safetensors",
                                                 *sorted((out / "predictions").glob("*.tsv"))) if p.is_file()]
    if not written:
        return "scoring stopped before any split was written: nothing was kept"
    return (f"scoring stopped after writing {', '.join(written)} in {out} (no metrics.json); rerun the same command "
            "to score again")
