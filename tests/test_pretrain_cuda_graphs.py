"""``cuda_graphs: true`` in a pretraining recipe: Lightning's manual optimisation with a step runner.

On CPU the manual path runs with the eager step runner and must reproduce automatic optimisation
exactly (losses, logged rows, global step, final weights) with gradient accumulation, clipping and a
warm-up stage changing the batch shape, also when a resumed run switches between the two. On a GPU the
graphed runner is compared with the eager one, directly and through ``pretrain``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from genomix.cli import main as cli_main
from genomix.errors import ConfigError, TrainingError
from genomix.genome import prepare_genome
from genomix.models import build
from genomix.train import load_recipe, pretrain
from genomix.train import run as run_module
from genomix.train.module import LanguageModelingModule
from genomix.train.recipe import Recipe
from genomix.train.step_runner import EagerStep, GraphedSteps, graph_autocast_dtype

from test_pretrain import TINY_HYENA, _PoisonedModel, tiny_recipe, train_rows

cuda = pytest.mark.gpu  # CUDA graphs


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    return Path(prepare_genome("demo", cache=tmp_path_factory.mktemp("cache"), quiet=True))


def accumulating_recipe(tmp_path: Path, store: Path, **fields) -> Path:
    """4 optimiser steps, 2 micro-batches each: 2 at L=64 (micro-batch 2), 2 at L=128 (micro-batch 1);
    a clip norm far below the gradients' so that every step clips."""
    return tiny_recipe(tmp_path, store, seq_len=128, global_batch=2, micro_batch_tokens=128, max_steps=4,
                       schedule_steps=4, gradient_clip=0.05, checkpoint_every=100, **fields)


def run(recipe: Path, out: Path, monkeypatch, step_runner: str | None, max_steps: int | None = None):
    """``pretrain`` with the module's step runner forced to ``step_runner`` (None: automatic)."""
    monkeypatch.setattr(run_module, "LanguageModelingModule",
                        lambda *a, **k: LanguageModelingModule(*a, **{**k, "step_runner": step_runner}))
    return pretrain(load_recipe(recipe, max_steps=max_steps), out, resume="auto", quiet=True)


def rows(out: Path) -> list[tuple[int, str, str]]:
    return [(int(r["step"]), r["train/loss"], r["train/seq_len"]) for r in train_rows(out)]


def final_weights(result) -> dict[str, torch.Tensor]:
    return torch.load(result.checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def test_manual_eager_path_reproduces_automatic_optimisation(tmp_path, demo_store, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: norms.append(clip(*a, **k)) or norms[-1])
    recipe = accumulating_recipe(tmp_path, demo_store)
    auto = run(recipe, tmp_path / "auto", monkeypatch, None)
    assert [(s.seq_len, s.micro_batch, s.accumulate) for s in auto.stages] == [(64, 2, 2), (128, 1, 2)]
    assert len(norms) == 4 and min(norms) > 0.05  # clipped once per optimiser step
    norms.clear()
    eager = run(recipe, tmp_path / "eager", monkeypatch, "eager")
    assert len(norms) == 4
    expected = rows(tmp_path / "auto")
    assert [(step, seq_len) for step, _, seq_len in expected] == [(0, "64.0"), (1, "64.0"), (2, "128.0"), (3, "128.0")]
    assert rows(tmp_path / "eager") == expected  # the same logged rows, bit for bit
    a, b = final_weights(auto), final_weights(eager)
    assert torch.load(eager.checkpoint, weights_only=True)["global_step"] == 4
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)


def test_resumed_runs_may_switch_between_automatic_and_manual(tmp_path, demo_store, monkeypatch):
    recipe = accumulating_recipe(tmp_path, demo_store)
    full = run(recipe, tmp_path / "full", monkeypatch, None)
    out = tmp_path / "switched"
    run(recipe, out, monkeypatch, None, max_steps=1)  # automatic, stopped mid-epoch
    run(recipe, out, monkeypatch, "eager", max_steps=3)  # manual, through the stage change
    switched = run(recipe, out, monkeypatch, None)  # automatic again
    assert rows(out) == rows(tmp_path / "full")
    a, b = final_weights(full), final_weights(switched)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)


def test_manual_path_stops_on_a_non_finite_loss_like_automatic(tmp_path, demo_store, monkeypatch):
    recipe = tiny_recipe(tmp_path, demo_store, seq_len=64, global_batch=8, warmup={"start_seq_len": None})
    monkeypatch.setattr(run_module, "build_model", lambda recipe: _PoisonedModel(poison_at=7))  # optimiser step 3
    with pytest.raises(TrainingError, match=r"non-finite training loss.*step 3.*last good checkpoint is .*last\.ckpt"):
        run(recipe, tmp_path / "nan", monkeypatch, "eager")
    kept = torch.load(tmp_path / "nan" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert kept["global_step"] == 3 and all(torch.isfinite(v).all() for v in kept["state_dict"].values())


def test_cuda_graphs_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="cuda_graphs and offload_checkpoints"):
        Recipe(cuda_graphs=True, activation_checkpointing=True, offload_checkpoints=True)
    with pytest.raises(ConfigError, match="cuda_graphs .* one device"):
        pretrain(Recipe(cuda_graphs=True), tmp_path, devices=2, accelerator="cpu", quiet=True)
    with pytest.raises(ConfigError, match="cuda_graphs needs a CUDA GPU"):
        pretrain(Recipe(cuda_graphs=True), tmp_path, devices=1, accelerator="cpu", quiet=True)
    with pytest.raises(ConfigError, match="16-mixed"):
        graph_autocast_dtype("16-mixed")
    assert graph_autocast_dtype("bf16-mixed") is torch.bfloat16 and graph_autocast_dtype("32-true") is None
    with pytest.raises(ConfigError, match="step_runner"):
        LanguageModelingModule(torch.nn.Linear(2, 2), "causal-lm", Recipe().optim, 10, step_runner="compiled")
    assert load_recipe("m2-hg38").cuda_graphs is False  # documented there, off: the recipe also serves multi-GPU runs


@cuda
def test_graphed_steps_accumulate_like_eager_steps_across_shapes():
    torch.manual_seed(0)
    models = [build("m2-tiny-1k", d_model=64, n_layer=2, max_seq_len=256).cuda().train()]  # no dropout
    models.append(copy.deepcopy(models[0]))
    graphed = GraphedSteps(models[0], torch.bfloat16, max_graphs=1)  # the third window recaptures the first shape
    eager = EagerStep(models[1], lambda loss: loss.backward())
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]  # keeps gradient differences as they are
    for batch, length in [(4, 128), (2, 256), (4, 128)]:  # one optimiser step per shape, two micro-batches each
        for opt in optimizers:
            opt.zero_grad(set_to_none=False)
        for weight in (0.3, 0.7):  # token weights differ between micro-batches: a tensor refilled on the device
            ids = torch.randint(7, 11, (batch, length), device="cuda")
            inputs = {"input_ids": ids, "labels": ids}
            graphed_loss = graphed(inputs, torch.tensor(weight, device="cuda"))
            with torch.autocast("cuda", dtype=torch.bfloat16):
                eager_loss = eager(inputs, torch.tensor(weight, device="cuda"))
            torch.testing.assert_close(graphed_loss, eager_loss, rtol=1e-3, atol=1e-3)
        for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=2e-2, atol=1e-4, msg=name)
        for opt in optimizers:
            opt.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


@cuda
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "activation-checkpointing"])
def test_pretrain_with_cuda_graphs_matches_the_eager_runner(tmp_path, demo_store, monkeypatch, checkpointing):
    overrides = {"d_model": 32, "d_inner": 64, "n_layer": 2}  # M2 has no dropout by default
    recipe = accumulating_recipe(tmp_path, demo_store, model="m2-tiny-1k", model_overrides=overrides,
                                 precision="bf16-mixed", cuda_graphs=True, activation_checkpointing=checkpointing)
    start, build_model = {}, run_module.build_model

    def recording_build(recipe):  # the weights training starts from
        model = build_model(recipe)
        start.update({f"model.{k}": v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(run_module, "build_model", recording_build)
    graphed = pretrain(load_recipe(recipe), tmp_path / "graph", quiet=True)
    eager = run(recipe, tmp_path / "eager", monkeypatch, "eager")
    expected, got = rows(tmp_path / "eager"), rows(tmp_path / "graph")
    assert [(step, seq_len) for step, _, seq_len in got] == [(step, seq_len) for step, _, seq_len in expected]
    torch.testing.assert_close(torch.tensor([float(loss) for _, loss, _ in got]),
                               torch.tensor([float(loss) for _, loss, _ in expected]), rtol=2e-3, atol=2e-3)
    # AdamW turns a gradient's sign into a whole learning-rate step, so entries whose gradient is near zero
    # may differ by rounding: compare the weights' distance with the distance training moved them
    a, b = final_weights(eager), final_weights(graphed)
    moved = sum((a[k].float() - start[k].float()).square().sum() for k in a).sqrt()
    apart = sum((a[k].float() - b[k].float()).square().sum() for k in a).sqrt()
    assert moved > 0 and apart < 0.05 * moved


@cuda
def test_graphed_run_resumes_like_the_uninterrupted_one(tmp_path, demo_store, monkeypatch):
    recipe = accumulating_recipe(tmp_path, demo_store, model_overrides=TINY_HYENA, precision="bf16-mixed",
                                 cuda_graphs=True)  # with dropout: masks fixed per step under graphs too
    run(recipe, tmp_path / "full", monkeypatch, "graph")
    run(recipe, tmp_path / "cut", monkeypatch, "graph", max_steps=3)
    run(recipe, tmp_path / "cut", monkeypatch, "graph")
    full, cut = rows(tmp_path / "full"), rows(tmp_path / "cut")
    assert [s for s, _, _ in cut] == [s for s, _, _ in full] == [0, 1, 2, 3]
    torch.testing.assert_close(torch.tensor([float(x) for _, x, _ in cut]),
                               torch.tensor([float(x) for _, x, _ in full]), rtol=1e-4, atol=1e-4)


def test_cli_flag_turns_graphs_on_and_is_validated_like_the_recipe(tmp_path, capsys):
    """``genomix pretrain --cuda-graphs``: without a GPU, or with host-offloaded checkpoints, a clear error
    (exit status 2) before any data or model work."""
    offload = tmp_path / "offload.yaml"
    offload.write_text("activation_checkpointing: true\noffload_checkpoints: true\n")
    assert cli_main(["pretrain", "--recipe", str(offload), "--cuda-graphs", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli_main(["pretrain", "--cuda-graphs", "--out", str(tmp_path / "b"), "--quiet"]) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err
