"""`genomix generate`: sampled continuations of prompts to FASTA, reproducible per prompt, resumable."""
from __future__ import annotations

import re

import pytest
import torch

import genomix.generate_fasta as generate_module
import genomix.hub as hub
from genomix.cli import main
from genomix.embed import SequenceInput
from genomix.errors import InputFormatError
from genomix.generate_fasta import generate_fasta
from genomix.genome import read_fasta
from genomix.models import build
from genomix.models.generation import beam_search, generate
from genomix.models.scoring import token_log_likelihoods
from genomix.tokenizer import decode, encode

PROMPTS = {"first": "ACGTTGCAAC", "second": "GGATCC", "third": "TTTAAACCCGGGA"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("mamba-tiny-1k", task="causal-lm").eval()


def prompts(names=PROMPTS):
    return [SequenceInput(name, encode(seq)) for name, seq in names.items()]


def test_each_prompt_samples_with_its_own_seed_and_only_new_bases_are_written(model, tmp_path):
    out = generate_fasta(model, prompts(), tmp_path / "samples.fa", 12, num_samples=2, top_k=3, top_p=0.9,
                         seed=5, quiet=True)
    records = read_fasta(out)
    assert list(records) == [f"{name}/{j}" for name in PROMPTS for j in (1, 2)]
    for index, (name, seq) in enumerate(PROMPTS.items()):
        rows = torch.from_numpy(encode(seq))[None].repeat(2, 1)
        expected = generate(model, rows, 12, top_k=3, top_p=0.9, generator=torch.Generator().manual_seed(5 + index))
        assert [records[f"{name}/{j}"] for j in (1, 2)] == [decode(row[len(seq):]) for row in expected]
    headers = [line for line in (tmp_path / "samples.fa").read_text().splitlines() if line.startswith(">")]
    assert re.fullmatch(r">first/1 prompt_length=10 log_likelihood=-\d+\.\d{4} temperature=1.0 top_k=3 top_p=0.9 seed=5 "
                        r"num_samples=2",
                        headers[0])
    # the seed and sample count that reproduce it alone: a prompt's samples are drawn together
    assert headers[-1].startswith(">third/2 ") and headers[-1].endswith(" seed=7 num_samples=2")
    alone = generate_fasta(model, prompts({"third": PROMPTS["third"]}), tmp_path / "alone.fa", 12, num_samples=2,
                           top_k=3, top_p=0.9, seed=5 + 2, quiet=True)
    assert read_fasta(alone)["third/1"] == records["third/1"]  # not shifted by the prompts before it
    assert not list(tmp_path.glob(".*partial*"))


def test_each_sample_carries_its_log_likelihood_under_the_model(model, tmp_path):
    """The header's log_likelihood is what scoring the prompt and sample in one parallel pass gives for the
    new bases: the model's own distribution, not the tempered and truncated one the bases were drawn from."""
    out = tmp_path / "samples.fa"
    generate_fasta(model, prompts(), out, 20, num_samples=3, temperature=1.7, top_k=2, seed=1, quiet=True)
    headers = [line[1:].split() for line in out.read_text().splitlines() if line.startswith(">")]
    records = read_fasta(out)
    for name, *fields in headers:
        prompt = PROMPTS[name.split("/")[0]]
        recorded = float(dict(field.split("=") for field in fields)["log_likelihood"])
        ids = torch.from_numpy(encode(prompt + records[name]))[None]
        expected = token_log_likelihoods(model, ids)[0, len(prompt) - 1:].sum().item()
        assert recorded == pytest.approx(expected, abs=2e-3)
    lls = [float(dict(f.split("=") for f in fields)["log_likelihood"]) for _, *fields in headers]
    assert len(set(lls)) == len(lls)  # one per sample, not per prompt


def test_an_interrupted_run_resumes_to_the_uninterrupted_file(model, tmp_path, monkeypatch):
    whole = generate_fasta(model, prompts(), tmp_path / "whole.fa", 30, num_samples=2, line_width=7, quiet=True)
    real, calls = generate_module.generate, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate_module, "generate", interrupting)
    out = tmp_path / "out.fa"
    with pytest.raises(KeyboardInterrupt, match="samples of the first 1 prompts are kept"):
        generate_fasta(model, prompts(), out, 30, num_samples=2, line_width=7, quiet=True)
    monkeypatch.setattr(generate_module, "generate", real)
    partial = tmp_path / ".out.fa.partial"
    with open(partial, "ab") as fh:  # a record cut off mid-write, as a kill during the second prompt would leave
        fh.write(b">second/1 prompt_length=6\nACG")
    with pytest.raises(InputFormatError, match=r"resume=True \(--resume\) continues it"):
        generate_fasta(model, prompts(), out, 30, num_samples=2, line_width=7, quiet=True)
    with pytest.raises(InputFormatError, match=r"other settings \(max_new_tokens: 30 -> 31\)"):
        generate_fasta(model, prompts(), out, 31, num_samples=2, line_width=7, quiet=True, resume=True)
    with pytest.raises(InputFormatError, match=r"other settings \(line_width: 7 -> 9\)"):  # one width per file
        generate_fasta(model, prompts(), out, 30, num_samples=2, line_width=9, quiet=True, resume=True)
    with pytest.raises(InputFormatError, match="first 1 prompts differ"):
        generate_fasta(model, prompts({"other": "ACGT"}), out, 30, num_samples=2, line_width=7, quiet=True,
                       resume=True)
    generate_fasta(model, prompts(), out, 30, num_samples=2, line_width=7, quiet=True, resume=True)
    assert out.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob(".*partial*"))


def test_beam_search_writes_each_prompts_best_beams_best_first(model, tmp_path):
    out = generate_fasta(model, prompts(), tmp_path / "beams.fa", 10, num_samples=2, num_beams=4,
                         repetition_penalty=1.3, quiet=True)
    records = read_fasta(out)
    headers = [line[1:].split() for line in out.read_text().splitlines() if line.startswith(">")]
    for name, seq in PROMPTS.items():
        beams, log_likelihood = beam_search(model, torch.from_numpy(encode(seq))[None], 10, 4, repetition_penalty=1.3)
        assert [records[f"{name}/{j}"] for j in (1, 2)] == [decode(row) for row in beams[:2, len(seq):].numpy()]
        fields = [dict(f.split("=") for f in rest if "=" in f) for head, *rest in headers if head.startswith(name)]
        assert [float(f["log_likelihood"]) for f in fields] == pytest.approx(log_likelihood[:2].tolist(), abs=1e-4)
        assert all(f["num_beams"] == "4" and f["repetition_penalty"] == "1.3" and "seed" not in f for f in fields)


def test_refusals(model, tmp_path):
    with pytest.raises(InputFormatError, match="one continuation per prompt"):
        generate_fasta(model, prompts(), tmp_path / "g.fa", 5, num_samples=2, greedy=True, quiet=True)
    with pytest.raises(InputFormatError, match=r"num_samples \(--num-samples\) 3 must be at most num_beams \(--num-beams\)"):
        generate_fasta(model, prompts(), tmp_path / "g.fa", 5, num_samples=3, num_beams=2, quiet=True)
    with pytest.raises(InputFormatError, match="takes no temperature, top_k"):
        generate_fasta(model, prompts(), tmp_path / "g.fa", 5, num_beams=2, temperature=0.5, top_k=2, quiet=True)
    with pytest.raises(InputFormatError, match="input is empty"):
        generate_fasta(model, [], tmp_path / "g.fa", 5, quiet=True)
    with pytest.raises(InputFormatError, match="'blank' is empty"):
        generate_fasta(model, [SequenceInput("blank", encode(""))], tmp_path / "g.fa", 5, quiet=True)
    assert not list(tmp_path.iterdir())  # nothing partial left behind by runs that completed no prompt


def test_cli_prompts_from_fasta_and_the_command_line(tmp_path, capsys, monkeypatch):
    fasta = tmp_path / "prompts.fa"
    fasta.write_text("".join(f">{name} some description\n{seq}\n" for name, seq in PROMPTS.items()))
    out = tmp_path / "out.fa"
    args = ["generate", "--model", "hyenadna-tiny-1k", "--max-new-tokens", "9", "--greedy", "--quiet", "--out"]
    assert main([*args, str(out), "--fasta", str(fasta)]) == 0
    records = read_fasta(out)
    assert list(records) == [f"{name}/1" for name in PROMPTS] and all(len(s) == 9 for s in records.values())
    assert main([*args, str(tmp_path / "cli.fa"), "--prompt", PROMPTS["first"], "--prompt", "acgtn"]) == 0
    assert list(read_fasta(tmp_path / "cli.fa")) == ["prompt1/1", "prompt2/1"]
    assert read_fasta(tmp_path / "cli.fa")["prompt1/1"] == records["first/1"]  # greedy: the same bases
    beams = ["generate", "--model", "hyenadna-tiny-1k", "--max-new-tokens", "9", "--num-beams", "3", "--num-samples",
             "2", "--repetition-penalty", "1.2", "--quiet", "--out", str(tmp_path / "beams.fa")]
    assert main([*beams, "--prompt", PROMPTS["first"]]) == 0
    beamed = read_fasta(tmp_path / "beams.fa")
    assert list(beamed) == ["prompt1/1", "prompt1/2"] and beamed["prompt1/1"] != beamed["prompt1/2"]
    assert main([*args, str(tmp_path / "bad.fa"), "--prompt", "ACGU"]) == 2
    assert "--prompt number 1: invalid DNA character 'U'" in capsys.readouterr().err
    assert main([*args, str(out), "--prompt", "ACGT"]) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main(["generate", "--model", "caduceus-ps-1k-d118", "--max-new-tokens", "3", "--quiet", "--out",
                 str(tmp_path / "masked.fa"), "--prompt", "ACGT"]) == 2
    assert "needs a causal language model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, str(tmp_path / "p.fa"), "--prompt", "ACGT", "--top-p", "1.5"])
    assert "--top-p: must be in (0, 1]" in capsys.readouterr().err
    monkeypatch.setattr(hub, "load_model", lambda *a: pytest.fail("the model loaded before the options were checked"))
    assert main(["generate", "--model", "x", "--max-new-tokens", "3", "--greedy", "--num-samples", "2", "--out",
                 str(tmp_path / "two.fa"), "--prompt", "ACGT"]) == 2
    assert "greedy decoding gives one continuation per prompt" in capsys.readouterr().err
    assert main(["generate", "--model", "x", "--max-new-tokens", "3", "--num-beams", "2", "--top-p", "0.5", "--out",
                 str(tmp_path / "refused.fa"), "--prompt", "ACGT"]) == 2
    assert "beam search is deterministic and takes no top_p" in capsys.readouterr().err
    assert main(["generate", "--model", "x", "--max-new-tokens", "3", "--greedy", "--temperature", "0.5", "--top-k",
                 "2", "--out", str(tmp_path / "refused.fa"), "--prompt", "ACGT"]) == 2
    assert "greedy decoding takes the most likely base at every step and takes no temperature, top_k" in \
        capsys.readouterr().err
    assert main(["generate", "--model", "x", "--max-new-tokens", "3", "--genome", "g.h5", "--out",
                 str(tmp_path / "refused.fa"), "--prompt", "ACGT"]) == 2
    assert "--genome is the store that --bed intervals are read from, and is not used with --prompt" in \
        capsys.readouterr().err
    assert main(["generate", "--model", "x", "--max-new-tokens", "3", "--out", str(tmp_path / "none.fa"), "--fasta",
                 str(tmp_path / "missing.fa")]) == 2
    assert "missing.fa: no such FASTA file" in capsys.readouterr().err


def test_infinite_temperature_or_penalty_is_refused_and_a_sliding_window_is_announced(model, tmp_path, capsys, caplog):
    """An infinite temperature divided the masked tokens' -inf into NaN (a torch traceback from multinomial); a
    prompt longer than a windowed model's context was silently cut to its last max_seq_len bases."""
    from genomix.errors import ConfigError

    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        generate_fasta(model, prompts(), tmp_path / "inf.fa", 4, temperature=float("inf"), quiet=True)
    with pytest.raises(ConfigError, match="repetition_penalty must be a finite number > 0"):
        generate_fasta(model, prompts(), tmp_path / "inf.fa", 4, repetition_penalty=float("inf"), quiet=True)
    for flag in ("--temperature", "--repetition-penalty"):
        with pytest.raises(SystemExit):
            main(["generate", "--model", "mamba-tiny-1k", "--prompt", "ACGT", "--max-new-tokens", "2", "--out",
                  str(tmp_path / "cli.fa"), flag, "inf"])
        assert "must be a positive finite number, got inf" in capsys.readouterr().err
    torch.manual_seed(0)
    hyena = build("hyenadna-tiny-1k", task="causal-lm").eval()  # a window of max_seq_len (1026) bases
    long = {"long": "ACGT" * 260, "short": "ACGT"}
    with caplog.at_level("WARNING", logger="genomix.generate_fasta"):
        generate_fasta(hyena, prompts(long), tmp_path / "long.fa", 3, quiet=True)
    assert caplog.text.count("sliding window") == 1
    assert "prompt 'long' (1040 bases) and its new bases exceed the model's context: each new base is sampled given " \
           "the last 1026 bases only" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomix.generate_fasta"):
        generate_fasta(model, prompts(long), tmp_path / "mamba.fa", 3, quiet=True)  # a recurrent state: no window
    assert "sliding window" not in caplog.text
