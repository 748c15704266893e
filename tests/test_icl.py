"""In-context classification: prompt layout, soft-prompt embedding, verbalizer logits against a direct
forward pass, soft-prompt tuning (it learns, and a resumed run ends where an uninterrupted one does),
refusals, and `genomix icl` on real GUE rows."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genomix.cli import main
from genomix.errors import ConfigError, RangeError
from genomix.hub import save_native
from genomix.models import build
from genomix.tasks.icl import (CHECKPOINT, IclRecipe, PromptBuilder, SoftPromptEmbedding, class_logits,
                               load_icl_recipe, run_icl, tune_soft_prompt)
from genomix.tasks.labelled import LabelledSequences, TaskData
from genomix.tokenizer import MASK_ID, PAD_ID, RESERVED_ID, SEP_ID, encode

GUE_TATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue" / "prom" / "prom_300_tata"


def _split(seqs: list[str], labels: list[int]) -> LabelledSequences:
    return LabelledSequences([encode(s) for s in seqs], np.array(labels, dtype=np.int64), "mem")


def _lm(name: str = "hyenadna-tiny-1k") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(name, task="causal-lm").eval()
    model.requires_grad_(False)
    return model


TRAIN = _split(["AAAA", "AAAT", "CCCC", "CCCG", "AATT", "CCGG"], [0, 0, 1, 1, 0, 1])


def test_rows_hold_slots_demonstrations_label_tokens_and_the_query():
    builder = PromptBuilder(TRAIN, 2, IclRecipe(shots=1, soft_prompt_tokens=3, seed=5))
    query = encode("GGT")
    row = builder.row(query, "test", 0)
    assert row[:3].tolist() == [RESERVED_ID] * 3 and row[-4:].tolist() == [*query.tolist(), SEP_ID]
    body = row[3:-4]
    # two demonstrations (one per class): seq [SEP] label [SEP] each, labels written as A (0) and C (1)
    seps = np.flatnonzero(body == SEP_ID)
    assert len(seps) == 4 and sorted(body[seps[0] + 1: seps[0] + 2].tolist() + body[seps[2] + 1: seps[2] + 2].tolist()) \
        == encode("AC").tolist()
    assert np.array_equal(builder.row(query, "test", 0), row)  # the same demonstrations every time
    for i in range(len(TRAIN)):  # a training query is never its own demonstration
        body = builder.row(TRAIN.ids[i], "train", i)[3:]
        pieces = np.split(body, np.flatnonzero(body == SEP_ID) + 1)  # demo, label, demo, label, query, ''
        demos = [tuple(p[:-1].tolist()) for p in pieces[0:-2:2]]
        assert len(demos) == 2 and tuple(TRAIN.ids[i].tolist()) not in demos


def test_too_few_examples_or_too_many_classes_are_refused():
    with pytest.raises(ConfigError, match="too few examples .* class 0 has 3, class 1 has 3, and each class needs 4;"):
        PromptBuilder(TRAIN, 2, IclRecipe(shots=4))
    PromptBuilder(TRAIN, 2, IclRecipe(shots=3))  # k-shot scoring of dev/test queries may use every example
    with pytest.raises(ConfigError, match="needs 4 \\(soft-prompt tuning queries training rows"):
        PromptBuilder(TRAIN, 2, IclRecipe(shots=3, soft_prompt_tokens=2, steps=1))
    with pytest.raises(ConfigError, match="verbalizer"):
        PromptBuilder(TRAIN, 3, IclRecipe(verbalizer="AC"))
    with pytest.raises(ConfigError, match="soft_prompt_tokens"):
        IclRecipe(steps=5)


def test_soft_prompt_embedding_replaces_only_the_slots_in_order():
    base = torch.nn.Embedding(16, 6)
    soft = SoftPromptEmbedding(base, 3)
    ids = torch.tensor([[RESERVED_ID, RESERVED_ID, RESERVED_ID, 7, 8], [PAD_ID, RESERVED_ID, RESERVED_ID, RESERVED_ID, 9]])
    out = soft(ids)
    torch.testing.assert_close(out[0, :3], soft.prompt)
    torch.testing.assert_close(out[1, 1:4], soft.prompt)
    torch.testing.assert_close(out[0, 3:], base(ids[0, 3:]))
    torch.testing.assert_close(out[1, 0], base.weight[PAD_ID])
    out.sum().backward()
    assert soft.prompt.grad is not None and base.weight.grad is not None


@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "mamba-tiny-1k", "transformer-tiny-1k"])
def test_class_logits_match_one_row_at_a_time(name):
    model = _lm(name)
    builder = PromptBuilder(TRAIN, 2, IclRecipe(shots=1))
    rows = [builder.row(encode(q), "test", i) for i, q in enumerate(["ACGTACGTAA", "GG"])]
    batch = class_logits(model, rows, builder.label_tokens, torch.device("cpu"))
    for row, got in zip(rows, batch):
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(row)[None]).logits[0, -1]
        torch.testing.assert_close(got, logits[torch.from_numpy(builder.label_tokens)].float(), rtol=1e-5, atol=1e-5)


def test_prompts_past_the_model_limit_say_how_to_shorten_them():
    model = _lm()
    long_train = _split(["A" * 300, "C" * 300, "A" * 301, "C" * 301], [0, 1, 0, 1])
    builder = PromptBuilder(long_train, 2, IclRecipe(shots=1))
    rows = [builder.row(encode("A" * 1000), "test", 0)]
    with pytest.raises(RangeError, match="fewer shots"):
        class_logits(model, rows, builder.label_tokens, torch.device("cpu"))


def _imbalanced(n: int = 60) -> LabelledSequences:
    rng = np.random.default_rng(0)
    return LabelledSequences([rng.integers(7, 11, size=8).astype(np.uint8) for _ in range(n)],
                             (np.arange(n) % 6 != 0).astype(np.int64), "mem")


def test_a_soft_prompt_learns_and_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    train = _imbalanced()
    recipe = IclRecipe(shots=0, soft_prompt_tokens=16, steps=24, lr=0.3, batch_size=12, checkpoint_every=4)
    builder = PromptBuilder(train, 2, recipe)
    rows = [builder.row(ids, "train", i) for i, ids in enumerate(train.ids)]
    cpu = torch.device("cpu")

    def tune(steps: int, state: Path) -> tuple[torch.Tensor, float, float]:
        """(tuned prompt, whole-train loss before, after)."""
        model = _lm()
        prompt = SoftPromptEmbedding(model.get_input_embeddings(), 16, seed=1)
        model.set_input_embeddings(prompt)
        loss = torch.no_grad()(lambda: float(torch.nn.functional.cross_entropy(  # noqa: E731
            class_logits(model, rows, builder.label_tokens, cpu), torch.from_numpy(train.labels))))
        before = loss()
        tune_soft_prompt(model, prompt, builder, train, IclRecipe(**{**recipe.__dict__, "steps": steps}), cpu, state)
        return prompt.prompt.detach().clone(), before, loss()

    whole, before, after = tune(24, tmp_path / "a.pt")
    assert after < before - 0.15, (before, after)  # the 5:1 class balance is learnt (0.865 -> 0.589 when written)
    tune(16, tmp_path / "b.pt")
    resumed, _, _ = tune(24, tmp_path / "b.pt")
    torch.testing.assert_close(resumed, whole)


def test_a_resumed_soft_prompt_run_keeps_the_loss_of_every_step(tmp_path):
    train = _imbalanced(24)
    recipe = IclRecipe(shots=0, soft_prompt_tokens=4, steps=6, lr=0.3, batch_size=6, checkpoint_every=2)
    builder = PromptBuilder(train, 2, recipe)

    def tune(steps: int, state: Path) -> list[float]:
        model = _lm()
        prompt = SoftPromptEmbedding(model.get_input_embeddings(), 4, seed=1)
        model.set_input_embeddings(prompt)
        return tune_soft_prompt(model, prompt, builder, train, IclRecipe(**{**recipe.__dict__, "steps": steps}),
                                torch.device("cpu"), state)

    straight = tune(6, tmp_path / "a.pt")
    first = tune(4, tmp_path / "b.pt")
    assert tune(6, tmp_path / "b.pt") == pytest.approx(straight) and first == pytest.approx(straight[:4])
    assert tune(6, tmp_path / "b.pt") == pytest.approx(straight)  # finished: the history, nothing new
    with pytest.raises(ConfigError, match=r"b.pt: the soft prompt there was tuned for 6 steps, more than the 5 asked "
                                          r"for; resume with steps \(--steps\) 6 or more"):
        tune(5, tmp_path / "b.pt")  # its metrics would be recorded under steps 5


def test_a_soft_prompt_resumes_only_on_what_it_was_tuned_on(tmp_path):
    """More steps may follow; another learning rate, model or task is refused, naming what changed."""
    from genomix.errors import ConfigError
    from genomix.tasks.icl import tuning_identity

    train = _imbalanced(24)
    recipe = IclRecipe(shots=0, soft_prompt_tokens=4, steps=2, lr=0.3, batch_size=6, checkpoint_every=1)

    def tune(recipe: IclRecipe, model_name: str = "hyenadna-tiny-1k") -> list[float]:
        model = _lm(model_name)
        examples = TaskData("task-a", {"train": train}, ["0", "1"])
        identity = tuning_identity(model_name, "task-a", recipe, model, examples)
        prompt = SoftPromptEmbedding(model.get_input_embeddings(), 4, seed=1)
        model.set_input_embeddings(prompt)
        return tune_soft_prompt(model, prompt, PromptBuilder(train, 2, recipe), train, recipe, torch.device("cpu"),
                                tmp_path / "s.pt", identity=identity)

    tune(recipe)
    with pytest.raises(ConfigError, match="recipe lr: 0.3 -> 0.1"):
        tune(dataclasses.replace(recipe, steps=3, lr=0.1))
    with pytest.raises(ConfigError, match=r"another base model \(model: hyenadna-tiny-1k -> mamba-tiny-1k; "
                                          r"weights: sha256:\w+ -> sha256:\w+\)"):
        tune(dataclasses.replace(recipe, steps=3), "mamba-tiny-1k")
    assert len(tune(dataclasses.replace(recipe, steps=3))) == 3


@pytest.mark.parametrize("name", ["caduceus-ps-1k-d118", "m2-bert-small-1k"])
def test_masked_models_fill_a_label_mask_and_never_see_padding(name):
    torch.manual_seed(0)
    model = build(name, task="masked-lm").eval()
    builder = PromptBuilder(TRAIN, 2, IclRecipe(shots=1), masked=True)
    rows = [builder.row(encode(q), "test", i) for i, q in enumerate(["ACGTACGTAA", "GG", "TTTTTTTTTTTT"])]
    assert rows[0][-3:].tolist() == [SEP_ID, MASK_ID, SEP_ID]
    batch = class_logits(model, rows, builder.label_tokens, torch.device("cpu"), builder.score_offset)
    for row, got in zip(rows, batch):
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(row)[None]).logits[0, -2]
        torch.testing.assert_close(got, logits[torch.from_numpy(builder.label_tokens)].float(), rtol=1e-4, atol=1e-4)


def test_soft_prompts_need_a_causal_model_but_k_shot_takes_a_masked_one(tmp_path, caplog):
    task = TaskData("t", {"train": TRAIN, "test": TRAIN}, ["0", "1"])
    with pytest.raises(ConfigError, match="soft prompts need a causal LM"):
        run_icl("caduceus-ps-1k-d118", task, tmp_path / "x", IclRecipe(shots=0, soft_prompt_tokens=2), quiet=True)
    with caplog.at_level("WARNING", logger="genomix.tasks.labelled"):
        summary = run_icl("caduceus-ps-1k-d118", task, tmp_path / "y", IclRecipe(shots=1), device="cpu", quiet=True)
    assert set(summary["metrics"]) == {"test"}
    # the test split is the training split here: its metrics measure memory, and the run says so
    assert f"{len(TRAIN)} of {len(TRAIN)} test sequences (the first at mem, example 1) are also in the training" in caplog.text


@pytest.mark.skipif(not GUE_TATA.is_dir(), reason="needs shared/data/gue")
def test_cli_on_real_gue_rows_writes_metrics_predictions_and_the_prompt(tmp_path, capsys, monkeypatch):
    import genomix.tasks.icl as icl_module

    loops = []
    real_loop = icl_module.inference_loop
    monkeypatch.setattr(icl_module, "inference_loop",
                        lambda model, **kw: loops.append(kw.get("cuda_graphs", True)) or real_loop(model, **kw))
    out = tmp_path / "icl"
    args = ["icl", "--model", "hyenadna-tiny-1k", "--task", str(GUE_TATA), "--recipe", "quick", "--out", str(out),
            "--steps", "4", "--test-rows", "24", "--train-rows", "200", "--quiet"]
    assert main(args) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["metrics"]) == {"dev", "test"} and len(summary["soft_prompt_losses"]) == 4
    lines = (out / "predictions" / "test.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["row", "source", "label", "prediction", "p_0", "p_1"] and len(lines) == 25
    assert lines[1].split("\t")[1].endswith("test.csv.gz:2")  # the first example, after the header line
    assert (out / "soft_prompt.safetensors").is_file() and (out / CHECKPOINT).is_file()
    assert main(args) == 2 and "--resume" in capsys.readouterr().err
    assert loops == [True, True]  # dev and test scored in inference loops with CUDA graphs (on a GPU)
    assert main(args + ["--resume", "--no-cuda-graphs"]) == 0  # finished: nothing left to tune, scored again
    assert loops[2:] == [False, False]
    assert len(json.loads((out / "metrics.json").read_text())["soft_prompt_losses"]) == 4  # the history is kept
    assert load_icl_recipe("soft-prompt").soft_prompt_tokens == 64


@pytest.mark.skipif(not GUE_TATA.is_dir(), reason="needs shared/data/gue")
def test_the_pretrain_transfer_pipeline_runs_end_to_end(tmp_path):
    """pipelines/pretrain_transfer.sh at toy sizes: pretrain, fine-tune, both ICL recipes, finished work skipped."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, GUE=str(GUE_TATA.parents[1]), OUT=str(tmp_path), TASKS="prom/prom_300_tata",
               PRETRAIN_RECIPE="demo", PRETRAIN_ARGS="--max-steps 2",
               FINETUNE_ARGS="--max-epochs 1 --train-rows 64 --accelerator cpu", ICL_TASKS="prom/prom_300_tata",
               ICL_ARGS="--test-rows 8 --train-rows 50", SOFT_PROMPT_ARGS="--steps 2",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    run = lambda: subprocess.run(["bash", str(repo / "pipelines" / "pretrain_transfer.sh")], cwd=repo, env=env,  # noqa: E731
                                 capture_output=True, text=True, timeout=600)
    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    assert "prom/prom_300_tata kshot test MCC" in first.stdout and "soft-prompt test MCC" in first.stdout
    assert (tmp_path / "pretrain" / "model" / "config.json").is_file()
    assert (tmp_path / "finetune" / "finetune_gue.json").is_file()
    second = run()
    assert second.returncode == 0 and "kshot test MCC" not in second.stdout  # finished ICL runs are skipped



def _tune_from(model_dir: Path, out: Path, steps: int, resume: bool = False, train: LabelledSequences = TRAIN) -> dict:
    """A soft-prompt run of ``steps`` steps on the checkpoint in ``model_dir``, saving its state every step."""
    recipe = IclRecipe(shots=0, soft_prompt_tokens=2, steps=steps, batch_size=4, checkpoint_every=1)
    task = TaskData("t", {"train": train, "test": TRAIN}, ["0", "1"])
    return run_icl(str(model_dir), task, out, recipe, device="cpu", resume=resume, quiet=True)


def test_a_soft_prompt_does_not_resume_on_other_examples_of_the_same_task(tmp_path):
    """The state records a fingerprint of the task's examples: the same task name with other rows is refused,
    naming both fingerprints, and the state stays for a resume on the rows it was tuned on."""
    model_dir = _save_lm(tmp_path / "lm", seed=0)
    _tune_from(model_dir, tmp_path / "icl", steps=2)
    state = (tmp_path / "icl" / CHECKPOINT).read_bytes()
    relabelled = _split(["AAAA", "AAAT", "CCCC", "CCCG", "AATT", "CCGG"], [1, 0, 1, 1, 0, 1])
    with pytest.raises(ConfigError, match=r"its task's examples differ from those the run started on \(task_data: "
                                          r"sha256:\w+ -> sha256:\w+\)"):
        _tune_from(model_dir, tmp_path / "icl", steps=3, resume=True, train=relabelled)
    assert (tmp_path / "icl" / CHECKPOINT).read_bytes() == state
    assert len(_tune_from(model_dir, tmp_path / "icl", steps=3, resume=True)["soft_prompt_losses"]) == 3


def _save_lm(path: Path, seed: int) -> Path:
    """A HyenaDNA LM with the weights of ``seed``, saved (or saved over) at ``path``."""
    torch.manual_seed(seed)
    return save_native(build("hyenadna-tiny-1k", task="causal-lm"), path)


def test_a_soft_prompt_does_not_resume_on_other_weights_saved_at_the_same_path(tmp_path):
    model_dir = _save_lm(tmp_path / "lm", seed=0)
    _tune_from(model_dir, tmp_path / "icl", steps=2)
    _save_lm(model_dir, seed=1)  # the checkpoint is replaced by another model's weights
    pattern = r"another base model \(weights: (sha256:\w+) -> (sha256:\w+)\)"
    with pytest.raises(ConfigError, match=pattern) as refused:
        _tune_from(model_dir, tmp_path / "icl", steps=3, resume=True)
    saved, now = re.search(pattern, str(refused.value)).groups()
    assert saved != now


def test_a_soft_prompt_resumes_on_the_same_weights_moved_to_another_path(tmp_path, caplog):
    first = _save_lm(tmp_path / "lm", seed=0)
    _tune_from(first, tmp_path / "icl", steps=2)
    moved = first.rename(tmp_path / "elsewhere")
    with caplog.at_level("INFO", logger="genomix.resume"):
        losses = _tune_from(moved, tmp_path / "icl", steps=3, resume=True)["soft_prompt_losses"]
    assert len(losses) == 3 and None not in losses
    assert f"the interrupted run used {first}, which held the same weights as {moved}" in caplog.text


def test_a_soft_prompt_saved_without_a_fingerprint_resumes_on_its_path(tmp_path, caplog):
    """States written before fingerprints are checked by the model's path, as then, and gain one on saving."""
    model_dir = _save_lm(tmp_path / "lm", seed=0)
    _tune_from(model_dir, tmp_path / "icl", steps=2)
    state_path = tmp_path / "icl" / CHECKPOINT
    state = torch.load(state_path, weights_only=True)
    del state["identity"]["weights"]
    torch.save(state, state_path)
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    with pytest.raises(ConfigError, match=rf"another base model \(model: {model_dir} -> {copy}\)"):
        _tune_from(copy, tmp_path / "icl", steps=3, resume=True)
    with caplog.at_level("WARNING", logger="genomix.resume"):
        assert len(_tune_from(model_dir, tmp_path / "icl", steps=3, resume=True)["soft_prompt_losses"]) == 3
    assert "before genomix kept a fingerprint" in caplog.text
    assert torch.load(state_path, weights_only=True)["identity"]["weights"].startswith("sha256:")


def _interrupt_tuning_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th class-logits pass (1-based; one a tuning step) raise KeyboardInterrupt, as Ctrl-C would."""
    import genomix.tasks.icl as icl_module

    calls, real = [], icl_module.class_logits

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(icl_module, "class_logits", interrupted)


def test_an_interrupted_soft_prompt_run_says_what_it_kept_and_how_to_go_on(tmp_path, monkeypatch, capsys):
    """The CLI said "nothing partial was kept" while the soft prompt's state was kept and --resume continued it."""
    task = tmp_path / "task"
    task.mkdir()
    for split in ("train", "test"):
        (task / f"{split}.csv").write_text("sequence,label\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(
            ["AAAA", "CCCC", "AAAT", "CCCG", "AATT", "CCGG"])))
    out = tmp_path / "icl"
    args = ["icl", "--model", "hyenadna-tiny-1k", "--task", str(task), "--shots", "0", "--soft-prompt", "2",
            "--steps", "10", "--quiet", "--device", "cpu", "--out", str(out)]
    _interrupt_tuning_at(monkeypatch, 2)  # during step 2 of 10: before the first checkpoint (quick: every 10)
    assert main([*args, "--recipe", "quick"]) == 130
    assert ("interrupted; soft-prompt tuning stopped after step 1 of 10, before its first checkpoint (every 10 "
            "steps): nothing was kept; rerun the same command to start again") in capsys.readouterr().err
    assert not out.exists()
    recipe = IclRecipe(shots=0, soft_prompt_tokens=2, steps=10, batch_size=4, checkpoint_every=2)
    _interrupt_tuning_at(monkeypatch, 4)
    data = TaskData("t", {"train": TRAIN, "test": TRAIN}, ["0", "1"])
    with pytest.raises(KeyboardInterrupt, match=rf"stopped after step 3 of 10; the soft prompt's state after step 2 is "
                                                rf"kept in {re.escape(str(out / CHECKPOINT))}: rerun the same command "
                                                "with --resume to continue from there"):
        run_icl("hyenadna-tiny-1k", data, out, recipe, device="cpu", quiet=True)
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 2


def test_a_run_interrupted_while_scoring_says_what_it_kept(tmp_path, monkeypatch):
    """After tuning, the soft prompt's state is kept for --resume; a k-shot run stopped before any split was
    written kept nothing, and says so."""
    import genomix.tasks.icl as icl_module

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(icl_module, "score_split", stopped)
    data = TaskData("t", {"train": TRAIN, "test": TRAIN}, ["0", "1"])
    with pytest.raises(KeyboardInterrupt, match="scoring stopped before any split was written: nothing was kept"):
        run_icl("hyenadna-tiny-1k", data, tmp_path / "kshot", IclRecipe(shots=1), device="cpu", quiet=True)
    assert not (tmp_path / "kshot").exists()
    tuned = IclRecipe(shots=0, soft_prompt_tokens=2, steps=1, batch_size=4)
    with pytest.raises(KeyboardInterrupt, match=r"the tuned soft prompt's state is kept in .*: rerun the same command "
                                                "with --resume to score it"):
        run_icl("hyenadna-tiny-1k", data, tmp_path / "soft", tuned, device="cpu", quiet=True)
