"""Bad and unusual calls of `genomix generate`, `genomix icl` and `genomix embed` (and their Python APIs): each
gives a correct result or a GenomixError naming what to do, never a raw torch error, a special token in the
output, or a finished run's results silently replaced."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genomix.hub as hub
from genomix.cli import main
from genomix.embed import SequenceInput
from genomix.errors import ConfigError, GenomixError, InputFormatError
from genomix.generate_fasta import generate_fasta
from genomix.genome import read_fasta
from genomix.models import build
from genomix.models.generation import BASE_IDS, beam_search, generate, next_token_distribution
from genomix.tasks.icl import IclRecipe, run_icl
from genomix.tasks.labelled import LabelledSequences, TaskData
from genomix.models.scoring import token_log_likelihoods
from genomix.tokenizer import encode

PROMPT = torch.from_numpy(encode("ACGTACGTTG"))[None]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()


@pytest.fixture()
def broken():
    """A causal LM whose every logit is NaN (a corrupt checkpoint, or activations that overflowed)."""
    torch.manual_seed(0)
    lm = build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=64).eval()
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            if "norm_f" in name:
                parameter.fill_(float("nan"))
    return lm


# --- generation: the Python API ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "m2-tiny-1k", "mamba-tiny-1k"])
def test_half_precision_models_generate_through_their_recurrent_state(name):
    """prefill and step run in the weights' precision as the forward does (they were called without its autocast:
    fp32 activations met bf16 weights); the first new token is the forward's argmax, in beams too."""
    torch.manual_seed(0)
    lm = build(name, task="causal-lm").eval().to(torch.bfloat16)
    prompt = PROMPT.repeat(2, 1)
    first = lm(prompt).logits[:, -1, list(BASE_IDS)].argmax(-1)
    for options in ({"greedy": True}, {"greedy": False, "generator": torch.Generator().manual_seed(1)}):
        out = generate(lm, prompt, 6, recurrent=True, **options)
        assert out.shape == (2, PROMPT.shape[1] + 6)
    greedy = generate(lm, prompt, 6, greedy=True, recurrent=True)
    assert torch.equal(greedy[:, PROMPT.shape[1]], torch.tensor(BASE_IDS)[first])
    assert beam_search(lm, prompt, 4, num_beams=2, recurrent=True)[0].shape[-1] == PROMPT.shape[1] + 4


@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "m2-tiny-1k"])
def test_a_step_past_the_states_room_gives_nan_not_a_shorter_context(name):
    torch.manual_seed(0)
    lm = build(name, task="causal-lm").eval()
    state = lm.allocate_state(1, None, 11)
    lm.prefill(PROMPT, state)  # 10 positions
    assert torch.isfinite(lm.step(PROMPT[:, 0], state)).all()  # the 11th fits
    assert torch.isnan(lm.step(PROMPT[:, 1], state)).all()  # the 12th would drop the first out of the filters


@pytest.mark.parametrize("name", ["mamba-tiny-1k", "hyenadna-tiny-1k"])
def test_a_step_refuses_ids_it_cannot_read_by_name(name):
    """Mamba's step read a padded embedding row for id 13 and raised torch's IndexError for 100; a (batch, 1)
    column or a wrong batch failed inside a kernel's shape check."""
    lm = build(name, task="causal-lm").eval()
    state = lm.allocate_state(2, None, 8)
    lm.prefill(PROMPT.repeat(2, 1)[:, :3], state)
    for bad, message in [(torch.tensor([13, 7]), r"token ids must lie in \[0, 12\)"),
                         (torch.tensor([100, 7]), r"token ids must lie in \[0, 12\)"),
                         (torch.tensor([7]), r"one token id per sequence of its state, \(2,\), got shape \(1,\)"),
                         (torch.tensor([[7], [8]]), r"\(2,\), got shape \(2, 1\)")]:
        with pytest.raises(InputFormatError, match=message):
            lm.step(bad, state)
    assert lm.step(torch.tensor([7, 8]), state).shape[0] == 2


def test_mamba_generates_after_the_whole_prompt_past_max_seq_len():
    """Mamba's state reads a prompt of any length: a prompt longer than max_seq_len is not cut to its last
    max_seq_len tokens (the new tokens follow the whole sequence), so generate's log-likelihoods of its new
    tokens are token_log_likelihoods' over the whole sequence."""
    torch.manual_seed(0)
    lm = build("mamba-tiny-1k", task="causal-lm", d_model=32, n_layer=2, max_seq_len=8).eval()
    prompt = torch.randint(7, 11, (2, 21), generator=torch.Generator().manual_seed(2))
    out, log_likelihood = generate(lm, prompt, 3, greedy=True, return_log_likelihood=True)
    whole = token_log_likelihoods(lm, out)[:, -3:].sum(1)
    torch.testing.assert_close(log_likelihood, whole, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("options", [{"temperature": float("nan")}, {"repetition_penalty": float("nan")}])
def test_nan_sampling_settings_are_refused_by_name(model, options):
    name = next(iter(options))
    with pytest.raises(ConfigError, match=f"{name} must be a finite number > 0"):
        generate(model, PROMPT, 3, generator=torch.Generator().manual_seed(0), **options)


def test_a_tiny_temperature_samples_the_most_likely_base_instead_of_overflowing():
    """logits / 1e-40 overflow float32 to inf, and softmax of two infinities is NaN: the distribution is taken
    relative to the best allowed logit, where it is the argmax (transformers' limit of temperature -> 0)."""
    logits = torch.full((1, 16), -5.0)
    logits[0, list(BASE_IDS)] = torch.tensor([3.0, 5.0, 4.0, 1.0])
    probs = next_token_distribution(logits, temperature=1e-40)
    assert torch.isfinite(probs).all() and probs[0, BASE_IDS[1]] == 1


def test_non_finite_model_scores_are_named_and_never_give_special_tokens(broken):
    """Greedy decoding of NaN logits took the argmax of NaN probabilities: [CLS] (id 0), which decode drops, so the
    FASTA record came out shorter than asked; sampling failed in torch.multinomial; beam search wrote A's."""
    for call in (lambda: generate(broken, PROMPT, 4, greedy=True),
                 lambda: generate(broken, PROMPT, 4, generator=torch.Generator().manual_seed(0)),
                 lambda: beam_search(broken, PROMPT, 4, 2)):
        with pytest.raises(GenomixError, match="NaN or infinite next-token scores"):
            call()


def test_an_overflowing_repetition_penalty_is_named_not_a_torch_error(model):
    for greedy in (False, True):
        with pytest.raises(GenomixError, match="NaN or infinite next-token scores.*repetition_penalty"):
            generate(model, PROMPT, 4, greedy=greedy, repetition_penalty=1e-40,
                     generator=torch.Generator().manual_seed(0))


def test_greedy_ignores_the_sampling_temperature_as_transformers_does(model):
    """The refusal told a greedy call to 'use greedy=True'; the argmax does not depend on the temperature."""
    expected = generate(model, PROMPT, 5, greedy=True)
    assert torch.equal(generate(model, PROMPT, 5, greedy=True, temperature=0.0), expected)
    assert torch.equal(model.generate(PROMPT, max_new_tokens=5, temperature=0.0), expected)


def test_beam_search_takes_allowed_ids_as_any_sequence(model):
    """A list (a Sequence[int], as typed) failed in a cache as unhashable."""
    as_list, _ = beam_search(model, PROMPT, 3, 2, allowed_ids=[7, 8])
    as_tuple, _ = beam_search(model, PROMPT, 3, 2, allowed_ids=(7, 8))
    assert torch.equal(as_list, as_tuple)


def test_transformers_options_top_k_zero_and_a_mask_of_another_shape(model):
    """transformers reads top_k=0 as no top-k filtering; an attention_mask must have input_ids' shape."""
    sampled = model.generate(PROMPT, max_new_tokens=6, do_sample=True, top_k=0,
                             generator=torch.Generator().manual_seed(4))
    assert torch.equal(sampled, generate(model, PROMPT, 6, generator=torch.Generator().manual_seed(4)))
    with pytest.raises(InputFormatError, match="attention_mask of shape"):
        model.generate(PROMPT, max_new_tokens=2, attention_mask=torch.ones(1, 3))


# --- generate_fasta and `genomix generate` ----------------------------------------------------------------------------

def test_a_greedy_fasta_of_a_broken_model_is_refused_not_written_short(broken, tmp_path):
    out = tmp_path / "g.fa"
    with pytest.raises(GenomixError, match="NaN or infinite"):
        generate_fasta(broken, [SequenceInput("p", "ACGTACGT")], out, 5, greedy=True, quiet=True)
    assert not out.exists()


def test_any_integer_seed_samples(model, tmp_path):
    """torch seeds are 64-bit (a negative one counts modulo 2**64): a seed past that was a raw ValueError."""
    prompts = [SequenceInput("p", "ACGTACGT"), SequenceInput("q", "GGGCCC")]
    big = generate_fasta(model, prompts, tmp_path / "big.fa", 6, seed=2**64 - 1, quiet=True)
    small = generate_fasta(model, prompts, tmp_path / "small.fa", 6, seed=-1, quiet=True)
    assert read_fasta(big) == read_fasta(small) and all(len(s) == 6 for s in read_fasta(big).values())


# --- `genomix embed` ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["0", "-3"])
def test_embed_refuses_a_bad_batch_size_before_loading_the_model(tmp_path, capsys, monkeypatch, size):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGT\n")
    monkeypatch.setattr(hub, "load_model", lambda *a: pytest.fail("the model loaded before the options were checked"))
    with pytest.raises(SystemExit):
        main(["embed", "--model", "x", "--fasta", str(fasta), "--out", str(tmp_path / "e.h5"), "--batch-size", size])
    assert "--batch-size: must be a positive integer" in capsys.readouterr().err


# --- in-context prompting -------------------------------------------------------------------------------------------

def _split(seqs: list[str], labels: list[int]) -> LabelledSequences:
    return LabelledSequences([encode(s) for s in seqs], np.array(labels, dtype=np.int64), "mem")


TRAIN = _split(["ACGTAC", "AAAATT", "CCCCGG", "CCGGTA", "AATTAA", "GGCCGC"], [0, 0, 1, 1, 0, 1])


@pytest.mark.parametrize("max_length", [0, -5])
def test_icl_max_length_must_be_positive(max_length):
    """0 cut every query and demonstration to nothing, a negative value cut bases off their ends; both scored."""
    with pytest.raises(ConfigError, match="max_length must be a positive integer"):
        IclRecipe(max_length=max_length)


@pytest.mark.parametrize("verbalizer, message", [
    ("RY", "distinct tokens"), ("aA", "distinct tokens"), ("XZ", "invalid DNA character")])
def test_icl_verbalizer_letters_must_be_distinct_tokens(verbalizer, message):
    """IUPAC codes all read as N and lower case as upper case: classes written with them got one and the same label
    token, so every class scored alike."""
    with pytest.raises(ConfigError, match=f"verbalizer.*{message}"):
        IclRecipe(verbalizer=verbalizer)


@pytest.mark.parametrize("option, value", [
    ("--max-length", "0"), ("--shots", "-1"), ("--soft-prompt", "-2"), ("--steps", "-3")])
def test_icl_cli_counts_are_refused_by_option(tmp_path, capsys, option, value):
    """A negative --shots was reported against the recipe file (kshot.yaml), which does not hold it."""
    with pytest.raises(SystemExit):
        main(["icl", "--model", "x", "--task", str(tmp_path), "--out", str(tmp_path / "o"), option, value])
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and "kshot.yaml" not in err


def test_a_finished_icl_run_or_the_task_folder_is_not_overwritten(tmp_path, capsys):
    """A second k-shot run into the same --out (or a fine-tuning run's folder) replaced its metrics.json and
    predictions silently; --out equal to the task folder wrote them among the task's files."""
    task = tmp_path / "task"
    task.mkdir()
    for split in ("train", "test"):
        rows = "".join(f"{seq},{label}\n" for seq, label in zip(["ACGTAC", "AAAATT", "CCCCGG", "CCGGTA"] * 2,
                                                                  [0, 0, 1, 1] * 2))
        (task / f"{split}.csv").write_text("sequence,label\n" + rows)
    out = tmp_path / "icl"
    args = ["icl", "--model", "hyenadna-tiny-1k", "--task", str(task), "--shots", "1", "--quiet", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    before = (out / "metrics.json").read_text()
    assert main([*args, "--out", str(out), "--shots", "2"]) == 2
    assert "already holds a finished in-context run" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before and json.loads(before)["recipe"]["shots"] == 1
    assert main([*args, "--out", str(task)]) == 2
    assert "the task folder" in capsys.readouterr().err
    assert sorted(p.name for p in task.iterdir()) == ["test.csv", "train.csv"]
    data = TaskData("t", {"train": TRAIN, "test": TRAIN}, ["0", "1"])
    with pytest.raises(ConfigError, match="already holds a finished in-context run"):
        run_icl("hyenadna-tiny-1k", data, out, IclRecipe(shots=1), device="cpu", quiet=True)


def test_an_icl_run_refused_for_its_prompt_length_leaves_no_out(tmp_path):
    """The predictions folder was made before any split was scored, so a run refused for its prompt length left
    OUT/predictions/ behind; now every prompt is measured before anything is scored, and the output folder is made
    only at the first write."""
    from genomix.errors import RangeError

    long = _split(["ACGT" * 150, "AACC" * 150, "CCGG" * 150, "GGTT" * 150], [0, 0, 1, 1])
    data = TaskData("t", {"train": long, "test": long}, ["0", "1"])
    out = tmp_path / "icl"
    with pytest.raises(RangeError, match="exceeds the model's max_seq_len"):
        run_icl("hyenadna-tiny-1k", data, out, IclRecipe(shots=1), device="cpu", quiet=True)
    assert not out.exists()
