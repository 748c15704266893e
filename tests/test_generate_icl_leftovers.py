"""Leftovers of `genomix icl` and `genomix generate`: ``--resume`` on a finished k-shot run is refused as fine-tuning
refuses a finished run without a checkpoint (it rescored everything), and a k-shot ``--resume`` into an unfinished
soft-prompt run as well (it wrote k-shot results beside that run's checkpoint); beam search refuses a length whose
buffers cannot fit in memory by name (it was torch's allocation error). (A resumed FASTA's line width is checked
in tests/test_generate_fasta.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genomix.cli import main
from genomix.errors import ConfigError
from genomix.models import build
from genomix.models.generation import beam_search, generate
from genomix.tasks.icl import CHECKPOINT, IclRecipe, run_icl
from genomix.tasks.labelled import LabelledSequences, TaskData
from genomix.tokenizer import encode


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()


def _task() -> TaskData:
    sequences = ["ACGTAC", "AAAATT", "CCCCGG", "CCGGTA"] * 2
    labels = np.array([0, 0, 1, 1] * 2, dtype=np.int64)
    rows = LabelledSequences([encode(s) for s in sequences], labels, source="memory")
    return TaskData("t", {"train": rows, "test": rows}, ["0", "1"])


def test_resume_on_a_finished_kshot_run_is_refused_not_rescored(tmp_path, monkeypatch):
    """A k-shot run keeps no checkpoint, so --resume has nothing to continue once metrics.json is written: as
    ``finetune --resume auto`` on a finished run without checkpoints, it is refused and the results are kept."""
    import genomix.tasks.icl as icl_module

    out = tmp_path / "icl"
    run_icl("hyenadna-tiny-1k", _task(), out, IclRecipe(shots=1), device="cpu", quiet=True)
    before = (out / "metrics.json").read_text()

    def rescore(*args, **kwargs):
        raise AssertionError("the finished run was scored again")

    monkeypatch.setattr(icl_module, "score_split", rescore)
    for recipe in (IclRecipe(shots=1), IclRecipe(shots=2)):
        with pytest.raises(ConfigError, match=r"already holds a finished in-context run .*metrics.json"):
            run_icl("hyenadna-tiny-1k", _task(), out, recipe, device="cpu", resume=True, quiet=True)
    assert (out / "metrics.json").read_text() == before


def test_resume_with_a_kshot_recipe_never_replaces_a_finished_soft_prompt_run(tmp_path):
    """Only a soft-prompt recipe continues from the soft prompt's checkpoint; a k-shot --resume into that --out
    would have replaced the soft-prompt run's metrics.json with its own."""
    out = tmp_path / "icl"
    tuned = IclRecipe(shots=0, soft_prompt_tokens=2, steps=1, batch_size=4)
    run_icl("hyenadna-tiny-1k", _task(), out, tuned, device="cpu", quiet=True)
    assert (out / CHECKPOINT).is_file()
    before = (out / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a finished in-context run"):
        run_icl("hyenadna-tiny-1k", _task(), out, IclRecipe(shots=1), device="cpu", resume=True, quiet=True)
    assert (out / "metrics.json").read_text() == before
    more = run_icl("hyenadna-tiny-1k", _task(), out, IclRecipe(shots=0, soft_prompt_tokens=2, steps=2, batch_size=4),
                   device="cpu", resume=True, quiet=True)
    assert len(more["soft_prompt_losses"]) == 2  # a soft prompt still tunes on from its checkpoint


def test_beam_search_past_memory_is_refused_by_name(model, tmp_path, capsys):
    """Beam search keeps every step's tokens: a length whose buffers exceed the device's memory is refused before
    the model runs, naming what they need, where torch failed to allocate them. Past max_seq_len it slides, as
    sampling does."""
    prompt = torch.from_numpy(encode("ACGTACGTTG"))[None]
    refused = r"max_new_tokens=1000000000000 with 2 beams .* 48,000\.0 GB, more than .* GB of memory"
    with pytest.raises(ConfigError, match=refused):
        beam_search(model, prompt, 10**12, num_beams=2)
    assert beam_search(model, prompt, 70, num_beams=2)[0].shape == (2, 80)  # past max_seq_len=64
    out = tmp_path / "beams.fa"
    assert main(["generate", "--model", "hyenadna-tiny-1k", "--prompt", "ACGT", "--max-new-tokens", str(10**12),
                 "--num-beams", "2", "--quiet", "--device", "cpu", "--out", str(out)]) == 2
    assert "max_new_tokens=" in capsys.readouterr().err  # the memory or, first, the disk space it would need
    assert not list(tmp_path.iterdir())


def test_sampling_past_memory_is_refused_by_name(model):
    """Sampling returns the whole sequences: a length they cannot fit in is refused before the model runs (it ran
    for hours, growing a list of per-step tensors). Past max_seq_len it slides."""
    prompt = torch.from_numpy(encode("ACGTACGTTG"))[None]
    with pytest.raises(ConfigError, match=r"generate of max_new_tokens=1000000000000 for 2 sequence\(s\) .* "
                                          r"16,000\.0 GB, more than .* GB of memory on cpu; ask for fewer"):
        generate(model, prompt.repeat(2, 1), 10**12)
    assert generate(model, prompt, 70).shape == (1, 80)


def test_generate_refuses_records_past_the_free_disk_space(tmp_path, monkeypatch, capsys):
    """The records of every prompt still to do (of a streamed FASTA, the next one) are counted against the free
    space beside --out before sampling, so a long run does not stop with a full disk hours in; nothing is
    written."""
    import genomix.outputs as outputs

    free = 1000
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: outputs.shutil._ntuple_diskusage(10**6, 0, free))
    out = tmp_path / "out" / "samples.fa"
    args = ["generate", "--model", "hyenadna-tiny-1k", "--prompt", "ACGT", "--prompt", "TTGA", "--quiet",
            "--device", "cpu", "--out", str(out), "--num-samples", "2"]
    assert main(args + ["--max-new-tokens", "300"]) == 2  # 2 prompts x 2 samples x (300 + 4 line ends) > 1000
    err = capsys.readouterr().err
    assert "2 prompt(s) x 2 sample(s) of max_new_tokens=300 bases need at least 1,216 bytes" in err
    assert "1,000 free" in err and not out.parent.exists()
    assert main(args + ["--max-new-tokens", "200"]) == 0  # 4 x 203 fits
    assert out.read_text().count(">") == 4


def test_a_kshot_resume_into_an_unfinished_soft_prompt_run_is_refused(tmp_path, monkeypatch):
    """A soft-prompt run stopped after tuning (its checkpoint written, no metrics.json) is continued by its own
    recipe only: a k-shot --resume would have scored, and written metrics and predictions beside that checkpoint."""
    import genomix.tasks.icl as icl_module

    out = tmp_path / "icl"
    tuned = IclRecipe(shots=0, soft_prompt_tokens=2, steps=2, batch_size=4, checkpoint_every=1)
    score_split = icl_module.score_split

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(icl_module, "score_split", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_icl("hyenadna-tiny-1k", _task(), out, tuned, device="cpu", quiet=True)
    monkeypatch.setattr(icl_module, "score_split", score_split)
    left = sorted(p.name for p in out.iterdir())
    assert CHECKPOINT in left and "metrics.json" not in left
    for shots in (0, 1):
        with pytest.raises(ConfigError, match=r"holds an unfinished soft-prompt run .*soft-prompt recipe it was "
                                              r"started with, or choose another --out"):
            run_icl("hyenadna-tiny-1k", _task(), out, IclRecipe(shots=shots), device="cpu", resume=True,
                    quiet=True)
    assert sorted(p.name for p in out.iterdir()) == left
    resumed = run_icl("hyenadna-tiny-1k", _task(), out, tuned, device="cpu", resume=True, quiet=True)
    assert len(resumed["soft_prompt_losses"]) == 2  # the soft prompt's own recipe still finishes it
