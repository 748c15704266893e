"""Unit tests of genomix.train pieces that need no genome: warm-up plan, sampler, recipes, optimiser
groups, schedule, checkpoint I/O, FLOP estimate, and the non-finite-loss guard (with a stand-in model)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from genomix.errors import CheckpointError, ConfigError, TrainingError
from genomix.train import (
    AtomicCheckpointIO, LanguageModelingModule, OptimConfig, ResumableSampler, available_recipes, load_recipe,
    plan_warmup, stage_at,
)
from genomix.train.flops import flops_per_token, long_conv_flops_per_token
from genomix.train.module import count_target_tokens, decay_groups, no_decay_names, warmup_cosine


def test_warmup_doubles_length_at_constant_tokens_and_adjusts_batch_and_accumulation():
    stages = plan_warmup(seq_len=4096, global_batch=16, micro_batch_tokens=2048, world_size=2,
                         start_seq_len=512, stage_epochs=3)
    assert [s.seq_len for s in stages] == [512, 1024, 2048, 4096]
    assert [s.first_epoch for s in stages] == [0, 3, 6, 9]
    assert {s.tokens_per_step for s in stages} == {16 * 4096}
    assert [s.global_batch for s in stages] == [128, 64, 32, 16]
    assert [s.micro_batch for s in stages] == [4, 2, 1, 1]  # at most 2048 tokens per forward (or 1 window)
    assert [s.accumulate for s in stages] == [16, 16, 16, 8]
    for s in stages:
        assert s.micro_batch * s.accumulate * 2 == s.global_batch
    assert stage_at(stages, 0).seq_len == 512 and stage_at(stages, 5).seq_len == 1024
    assert stage_at(stages, 100).seq_len == 4096


def test_warmup_single_stage_and_bad_split():
    (only,) = plan_warmup(seq_len=1024, global_batch=4, micro_batch_tokens=2048, start_seq_len=None)
    assert (only.seq_len, only.micro_batch, only.accumulate) == (1024, 2, 2)
    with pytest.raises(ConfigError, match="cannot be split"):
        plan_warmup(seq_len=1024, global_batch=3, micro_batch_tokens=2048, world_size=2)


def test_sampler_resumes_mid_epoch_with_the_same_order():
    full = ResumableSampler(12, epoch=3, seed=7, shuffle=True, rank=1, world_size=2)
    order = list(full)
    assert len(order) == len(full) == 6
    assert sorted(order + list(ResumableSampler(12, epoch=3, seed=7, shuffle=True, rank=0, world_size=2))) == list(range(12))
    assert order != list(ResumableSampler(12, epoch=4, seed=7, shuffle=True, rank=1, world_size=2))
    full.advance(4)
    resumed = ResumableSampler(12, epoch=3, seed=7, shuffle=True, rank=1, world_size=2)
    resumed.load_state_dict(full.state_dict())
    assert list(resumed) == order[4:]
    assert len(resumed) == 6  # Lightning restores its own batch counter; the epoch length is unchanged
    # a state from an earlier epoch (checkpoint at an epoch end) starts the new epoch from the beginning
    later = ResumableSampler(12, epoch=4, seed=7, shuffle=True, rank=1, world_size=2)
    later.load_state_dict(full.state_dict())
    assert later.consumed == 0
    with pytest.raises(TrainingError, match="seed"):
        ResumableSampler(12, epoch=3, seed=8).load_state_dict(full.state_dict())
    with pytest.raises(TrainingError, match="device"):
        ResumableSampler(12, epoch=3, seed=7, world_size=3).load_state_dict(full.state_dict())


def test_shipped_recipes_load_and_typos_are_errors(tmp_path):
    names = available_recipes()
    assert {"demo", "hyenadna-hg38", "caduceus-hg38", "mamba-hg38", "m2-hg38"} <= set(names)
    hg38 = load_recipe("hyenadna-hg38")
    assert (hg38.optim.lr, hg38.optim.weight_decay, hg38.gradient_clip, hg38.global_batch) == (6e-4, 0.1, 1.0, 256)
    assert hg38.optim.warmup_fraction == 0.01 and "filter" in hg38.optim.no_decay
    assert hg38.model_overrides["embed_dropout"] == 0.1 and hg38.activation_checkpointing
    assert load_recipe("caduceus-hg38").task == "masked-lm"
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: causal-lm\noptim: {lrr: 1.0}\n")
    with pytest.raises(ConfigError, match="lrr"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="unknown pretraining recipe"):
        load_recipe("no-such-recipe")
    assert load_recipe("demo", max_steps=3, seed=None).max_steps == 3


def test_every_shipped_recipes_windows_fit_its_model():
    """A recipe whose seq_len its model cannot hold would be refused only after the genome store is built (for
    hg38, a download); every shipped one must fit, and a bad one is refused from its config alone."""
    from genomix.train.run import check_seq_len_fits

    for name in available_recipes():
        check_seq_len_fits(load_recipe(name))
    with pytest.raises(ConfigError, match="seq_len 2048 exceeds hyenadna-tiny-1k's max_seq_len 1026"):
        check_seq_len_fits(load_recipe("demo", model="hyenadna-tiny-1k", seq_len=2048))


def test_no_decay_groups_and_schedule():
    model = nn.ModuleDict({"proj": nn.Linear(4, 4), "norm": nn.LayerNorm(4), "filter_fn": nn.Linear(4, 4)})
    skip = no_decay_names(model, ("filter", "bias", "norm"))
    assert skip == {"proj.bias", "norm.weight", "norm.bias", "filter_fn.weight", "filter_fn.bias"}
    decay, plain = decay_groups(model, 0.1, skip)
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert decay["params"][0] is model["proj"].weight
    assert len(plain["params"]) == 5
    lrs = [warmup_cosine(s, 10, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_no_decay_survives_wrapper_names():
    inner = nn.Linear(4, 4)
    skip = no_decay_names(nn.ModuleDict({"blk": inner}), ("bias",))
    wrapped = nn.ModuleDict({"blk": nn.ModuleDict({"_fsdp_wrapped_module": inner})})
    assert skip == {"blk.bias"}
    # FSDP-style names: "blk._fsdp_wrapped_module.bias" is matched as "blk.bias"
    decay, plain = decay_groups(wrapped, 0.1, skip)
    assert decay["params"] == [inner.weight] and plain["params"] == [inner.bias]


def test_count_target_tokens_shifts_for_causal():
    labels = torch.tensor([[7, -100, 8, 9], [-100, 10, -100, 7]])
    assert count_target_tokens(labels, causal=True).item() == 4
    assert count_target_tokens(labels, causal=False).item() == 5


def test_atomic_checkpoint_io_round_trip_and_errors(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "x.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, path)
    assert [p.name for p in path.parent.iterdir()] == ["x.ckpt"]  # no temporary left behind
    assert io.load_checkpoint(path)["global_step"] == 3
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot read"):
        io.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        io.load_checkpoint(tmp_path / "missing.ckpt")


def test_flops_include_the_long_convolution_term():
    config = SimpleNamespace(model_type="genomix-hyena", n_layer=2, d_model=8, hyena_order=2)
    model = nn.Linear(10, 10)
    model.config = config
    base = 6 * 110
    assert flops_per_token(model, 1024) == pytest.approx(base + long_conv_flops_per_token(2, 8, 2, 1024))
    assert flops_per_token(model, 2048) > flops_per_token(model, 1024)
    assert long_conv_flops_per_token(1, 1, 2, 1024) == pytest.approx(3 * 3 * 10 * math.log2(2048))


class _Stub(nn.Module):
    """Stand-in causal model: a bigram table; ``poison_at`` makes the loss NaN from that call on."""

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        self.table = nn.Embedding(16, 16)
        self.calls, self.poison_at = 0, poison_at

    def forward(self, input_ids, labels=None):
        self.calls += 1
        logits = self.table(input_ids)
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 16), labels[:, 1:].reshape(-1), ignore_index=-100)
        if self.poison_at is not None and self.calls >= self.poison_at:
            loss = loss * float("nan")
        return SimpleNamespace(loss=loss, logits=logits)


def test_nan_loss_stops_with_training_error():
    module = LanguageModelingModule(_Stub(poison_at=1), "causal-lm", OptimConfig(), schedule_steps=10)
    batch = {"input_ids": torch.randint(7, 11, (2, 8)), "labels": torch.randint(7, 11, (2, 8))}
    with pytest.raises(TrainingError, match="non-finite training loss.*step 0.*no checkpoint"):
        module.training_step(batch, 0)


def test_offloaded_checkpoints_keep_gradients(monkeypatch, tmp_path):
    """offload_checkpoints routes each block through the host-memory checkpoint; gradients do not change."""
    from genomix.models import base, build
    from genomix.train.recipe import Recipe
    from genomix.train.run import enable_activation_checkpointing, pretrain

    with pytest.raises(ConfigError, match="offload_checkpoints needs activation_checkpointing"):
        Recipe(offload_checkpoints=True)
    with pytest.raises(ConfigError, match="offload_checkpoints .* one device"):
        pretrain(Recipe(activation_checkpointing=True, offload_checkpoints=True), tmp_path, devices=2,
                 accelerator="cpu", quiet=True)
    torch.manual_seed(0)
    models = [build("hyenadna-tiny-1k", n_layer=2, d_model=32, max_seq_len=64, embed_dropout=0.0) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    enable_activation_checkpointing(models[0])
    enable_activation_checkpointing(models[1], offload=True)
    calls = []
    offloaded = base.host_checkpoint
    monkeypatch.setattr(base, "host_checkpoint", lambda *a: calls.append(1) or offloaded(*a))
    ids = torch.randint(7, 11, (2, 40))
    for model in models:
        model.train()
        model(ids, labels=ids).loss.backward()
    assert len(calls) == 2  # one per block, only for the offloading model
    for (name, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_checkpoint_keeping_the_scan_runs_its_forward_once(monkeypatch):
    """checkpoint_keeps_scan: a checkpointed Mamba block recomputes everything in the backward except the
    Triton scan's forward (interpreter), whose outputs are kept; gradients equal plain checkpointing's."""
    from genomix.kernels.scan import ops
    from genomix.models import build
    from genomix.train.recipe import Recipe
    from genomix.train.run import enable_activation_checkpointing

    with pytest.raises(ConfigError, match="checkpoint_keeps_scan needs activation_checkpointing"):
        Recipe(checkpoint_keeps_scan=True)
    with pytest.raises(ConfigError, match="checkpoint_keeps_scan needs"):
        Recipe(checkpoint_keeps_scan=True, activation_checkpointing=True, offload_checkpoints=True)
    monkeypatch.setenv("GENOMIX_FORCE_TRITON", "1")
    monkeypatch.setenv("GENOMIX_REFERENCE_OPS", "causal_conv1d,transpose,add_norm,layer_norm")
    launches = []
    real_launch = ops._launch_fwd
    monkeypatch.setattr(ops, "_launch_fwd", lambda *a: launches.append(1) or real_launch(*a))
    torch.manual_seed(0)
    models = [build("mamba-7m-1m", n_layer=2, d_model=16, d_state=8, max_seq_len=64) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    enable_activation_checkpointing(models[0])
    enable_activation_checkpointing(models[1], keep_scan=True)
    ids = torch.randint(4, 12, (1, 24))
    counts = []
    for model in models:
        launches.clear()
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        counts.append(len(launches))
    assert counts == [4, 2]  # two blocks: forward + recompute each, then forward only
    for (name, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)
    with pytest.raises(ConfigError, match="exclude each other"):
        enable_activation_checkpointing(models[1], offload=True, keep_scan=True)


class _GradientRecorder(LanguageModelingModule):
    """Keeps a copy of the gradients each optimiser step is about to apply (after rescaling and clipping)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.applied: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        self.applied.append([p.grad.detach().clone() for p in self.model.parameters()])


class _FixedAccumulation(L.Callback):
    """Sets the accumulation as StageAccumulation does (manual optimisation reads it from the trainer)."""

    def __init__(self, accumulate: int) -> None:
        self.accumulate = accumulate

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.accumulate_grad_batches = self.accumulate


def _micro_batches_with_unequal_targets() -> list[dict[str, torch.Tensor]]:
    """Six micro-batches of two 12-base windows; masking leaves 17, 2, 10, 5, 14 and 1 targets."""
    generator = torch.Generator().manual_seed(5)
    batches = []
    for kept in (12, 2, 7, 4, 10, 1):  # positions kept per window (after the causal shift: 11 at most)
        ids = torch.randint(7, 11, (2, 12), generator=generator)
        labels = ids.clone()
        labels[0, kept:] = -100
        labels[1, 1 + max(kept - 1, 0) // 2 + 1:] = -100
        batches.append({"input_ids": ids, "labels": labels})
    return batches


def _mean_loss_gradients(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The gradient of the mean loss over every target of ``batches`` at once."""
    model.zero_grad(set_to_none=True)
    ids = torch.cat([b["input_ids"] for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    model(input_ids=ids, labels=labels).loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("step_runner", [None, "eager"])
def test_each_steps_gradient_is_the_token_weighted_mean_whatever_its_micro_batches(step_runner):
    """Micro-batches holding 17, 2, 10 and 5 targets, accumulated over one step, give the gradient of the
    mean loss over all 34 targets, as one micro-batch of them all does; the epoch's short last window
    (two micro-batches where four are accumulated) gets its own targets' mean gradient, not half of it.
    A plain mean of micro-batch means differs from it by tens of per cent here. Learning rate 0 keeps
    the weights, so every step is compared at the same point."""
    batches = _micro_batches_with_unequal_targets()
    torch.manual_seed(0)
    model = _Stub()
    expected = [_mean_loss_gradients(model, batches[:4]), _mean_loss_gradients(model, batches[4:])]
    merged = [{k: torch.cat([b[k] for b in batches[:4]]) for k in batches[0]},
              {k: torch.cat([b[k] for b in batches[4:]]) for k in batches[0]}]
    for data, accumulate in ((merged, 1), (batches, 4)):
        module = _GradientRecorder(copy.deepcopy(model), "causal-lm", OptimConfig(lr=0.0), schedule_steps=10,
                                   step_runner=step_runner)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[_FixedAccumulation(accumulate)])
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=None))
        assert len(module.applied) == 2
        for got, want in zip(module.applied, expected):
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


def test_the_gradient_rescale_counts_the_targets_of_every_rank():
    """Under data parallelism the gradients arrive averaged over the ranks, each rank's backward weighted
    by its own target counts; the rescale must use the step's count summed over all ranks (one all-reduce),
    not this rank's alone, or ranks holding fewer targets (masked-LM masks, N bases) would weigh more."""
    module = LanguageModelingModule(_Stub(), "masked-lm", OptimConfig(), schedule_steps=10)
    reduced = []

    def reduce(tensor, reduce_op):
        reduced.append(reduce_op)
        return tensor + 30.0  # the other rank's 30 targets

    module._trainer = SimpleNamespace(world_size=2, accumulate_grad_batches=2, strategy=SimpleNamespace(reduce=reduce))
    module._weight_base, module._step_count = 24, torch.tensor(10.0, dtype=torch.float64)
    module.model.table.weight.grad = torch.ones_like(module.model.table.weight)
    module._token_weight_gradients()
    assert reduced == ["sum"] and module._step_count.item() == 10.0  # the rank's own count is left as it was
    torch.testing.assert_close(module.model.table.weight.grad, torch.full_like(module.model.table.weight, 2 * 24 * 2 / 40))
