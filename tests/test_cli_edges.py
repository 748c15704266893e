"""The commands at the operating system's edges: outputs that are devices or pipes, or files of the model being
read; files the system refuses (one line, exit 2, no traceback); ``~`` in paths; SIGTERM from a batch scheduler;
names that promise compression or a folder."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import genomix.embed as embed_module
from genomix.cli import main
from genomix.errors import CheckpointError
from genomix.hub.formats.base import _read_weights_file
from genomix.models import build

SEQUENCES = ">a\nACGTTGCAACGGATCC\n>b\nTTTAAACCCGGGA\n"


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fa"
    path.write_text(SEQUENCES)
    return path


def _embed(fasta: Path, out: str, *extra: str) -> int:
    return main(["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(fasta), "--out", out, "--device", "cpu",
                 "--quiet", *extra])


def test_an_output_that_is_a_pipe_or_names_a_folder_is_refused(tmp_path, fasta, capsys):
    os.mkfifo(tmp_path / "pipe")
    assert _embed(fasta, str(tmp_path / "pipe"), "--overwrite") == 2
    assert "is not a regular file (a device or a pipe)" in capsys.readouterr().err
    assert not (tmp_path / "pipe").is_file()  # still the pipe: not renamed over
    assert _embed(fasta, f"{tmp_path / 'newdir'}{os.sep}") == 2
    assert "is a directory; give a file name" in capsys.readouterr().err and not (tmp_path / "newdir").exists()
    assert main(["generate", "--model", "mamba-tiny-1k", "--prompt", "ACGT", "--max-new-tokens", "2", "--quiet",
                 "--out", str(tmp_path / "g.fa.gz")]) == 2
    assert "the output is a plain-text FASTA, not .gz-compressed; name it" in capsys.readouterr().err


def test_an_output_may_not_replace_a_file_of_the_model_being_read(tmp_path, fasta, capsys):
    model = tmp_path / "model"
    build("hyenadna-tiny-1k", task="causal-lm").save_pretrained(model)
    weights = (model / "model.safetensors").read_bytes()
    assert main(["embed", "--model", str(model), "--fasta", str(fasta), "--out", str(model / "model.safetensors"),
                 "--overwrite", "--quiet", "--device", "cpu"]) == 2
    assert "it is inside the input folder" in capsys.readouterr().err
    assert (model / "model.safetensors").read_bytes() == weights
    assert main(["embed", "--model", str(model), "--fasta", str(fasta), "--out", str(model / "embeddings.h5"),
                 "--quiet", "--device", "cpu"]) == 0  # a new file beside the checkpoint destroys nothing


def test_a_file_the_system_refuses_is_one_line_and_exit_2(tmp_path, fasta, capsys):
    long = tmp_path / ("a" * 250 + ".h5")  # the hidden partial file's name is over the 255-byte limit
    assert _embed(fasta, str(long)) == 2
    err = capsys.readouterr().err
    assert err.startswith("genomix embed: error: ") and "File name too long" in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot be opened \(Is a directory\)"):
        (tmp_path / "model.safetensors").mkdir()
        _read_weights_file(tmp_path / "model.safetensors")
    assert main(["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(tmp_path), "--out", str(tmp_path / "x.h5"),
                 "--quiet"]) == 2
    assert "is a folder, not a FASTA file" in capsys.readouterr().err


def test_a_tilde_in_paths_means_home(tmp_path, fasta, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _embed(Path("~") / fasta.name, "~/e.h5") == 0
    assert (tmp_path / "e.h5").is_file() and not Path("~").exists()


def test_sigterm_ends_a_run_as_ctrl_c_does_and_the_handler_is_restored(tmp_path, fasta, monkeypatch, capsys):
    real = embed_module.embed_sequences

    def terminated_midway(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # what a batch scheduler sends to stop a job
        return real(*args, **kwargs)

    monkeypatch.setattr(embed_module, "embed_sequences", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    assert _embed(fasta, str(tmp_path / "t.h5")) == 128 + signal.SIGTERM
    assert "genomix embed: terminated (SIGTERM); " in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before and not (tmp_path / "t.h5").exists()


def test_index_vcf_blames_the_output_it_cannot_write_not_the_vcf(tmp_path, capsys):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nMT\t5\t.\tA\tG\t.\t.\t.\n")
    assert main(["index-vcf", str(vcf), "--out", str(tmp_path / ("a" * 250 + ".vcf.gz"))]) == 2
    err = capsys.readouterr().err
    assert "cannot write it (File name too long); choose another out (--out)" in err and "unreadable VCF" not in err
