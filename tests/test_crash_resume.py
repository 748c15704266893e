"""Runs killed outright (kill -9, the OOM killer, a power cut) at an awkward moment, then run again: final outputs
are complete or absent, what the killed run left is continued or refused clearly, and its temporary files do not
accumulate. Ctrl-C, which a run sees and handles, is tested with each command."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from genomix.embed import SequenceInput
from genomix.errors import InputFormatError
from genomix.generate_fasta import generate_fasta
from genomix.genome import open_store
from genomix.genome.store import write_store
from genomix.models import build
from genomix.outputs import atomic_write_text
from genomix.tokenizer import encode
from genomix.train.checkpoint_io import AtomicCheckpointIO
from genomix.variants import Reference, read_vcf, score_variants
from genomix.variants import indexing
from genomix.variants.indexing import index_vcf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"
LAMBDA = SHARED / "genomes" / "phage_lambda_NC_001416.fa"
VCF_HEADER = "##fileformat=VCFv4.2\n##contig=<ID=MT,length=16569>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
VARIANTS = [(3243, "A", "G"), (3271, "T", "C"), (8344, "A", "G"), (11778, "G", "A")]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def killed_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that is expected to SIGKILL itself."""
    # the timeout only guards against a hang: a loaded machine (parallel test processes) takes minutes
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def test_the_next_write_removes_the_temporary_files_of_killed_runs_only(tmp_path):
    out, gone = tmp_path / "out.txt", dead_pid()
    stale = [tmp_path / f".out.txt.tmp-{gone}", tmp_path / f".out.txt.old-{gone}"]
    stale[0].write_text("half")
    stale[1].mkdir()
    (stale[1] / "weights").write_text("old")
    kept = [tmp_path / f".out.txt.tmp-{os.getppid()}", tmp_path / f".other.txt.tmp-{gone}", tmp_path / "out.txt.tmp-1"]
    for path in kept:
        path.write_text("not ours to remove")
    atomic_write_text(out, "whole")
    assert out.read_text() == "whole" and not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_a_genome_store_killed_mid_write_is_absent_and_its_temporary_file_goes_with_the_next_run(tmp_path):
    out = tmp_path / "lambda.h5"
    killed_python(f"import os, signal\nfrom genomix.genome.store import write_store\n"
                  f"write_store({str(LAMBDA)!r}, {str(out)!r}, chunk_size=4096, "
                  "on_read=lambda n: os.kill(os.getpid(), signal.SIGKILL))")
    assert not out.exists() and len(list(tmp_path.glob(".lambda.h5.tmp-*"))) == 1
    write_store(LAMBDA, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lambda.h5"]
    assert len(open_store(out).sequence(open_store(out).contigs[0])) == 48502


def test_a_checkpoint_save_removes_a_killed_saves_temporary_file(tmp_path):
    last = tmp_path / "last.ckpt"
    (tmp_path / f".last.ckpt.tmp-{dead_pid()}").write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(3)}, last)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert int(AtomicCheckpointIO().load_checkpoint(last)["step"]) == 3


def test_rows_kept_by_score_variants_survive_a_kill_while_a_resume_rewrites_them(tmp_path):
    partial = tmp_path / ".s.tsv.partial"
    rows = [f"row{i}\tscored" for i in range(200)]
    partial.write_text("# genomix score-variants method=causal\ncolumns\n" + "".join(r + "\n" for r in rows) + "cut")
    # the first write to any file kills the process, as a kill -9 during the rewrite would
    killed_python("import os, signal, sys\nfrom pathlib import Path\nfrom genomix.variants.score import "
                  "_keep_complete_rows\n"
                  "sys.setprofile(lambda frame, event, arg: os.kill(os.getpid(), signal.SIGKILL) if event == 'c_call' "
                  "and getattr(arg, '__name__', '') == 'write' else None)\n"
                  f"_keep_complete_rows(Path({str(partial)!r}), '# genomix score-variants method=causal\\ncolumns\\n')")
    assert partial.read_text().split("\n")[2:-1] == rows


@pytest.fixture(scope="module")
def causal_lm():
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k", task="causal-lm").eval()


@pytest.mark.parametrize("left", ["", "# genomix score-variants method=cau"])
def test_score_variants_resumes_a_partial_file_cut_before_its_first_row_as_a_fresh_run(tmp_path, causal_lm, left):
    """A run killed before its header or first row reached the file left nothing to continue or lose: --resume
    starts afresh instead of refusing with every setting listed as changed."""
    vcf = tmp_path / "mt.vcf"
    vcf.write_text(VCF_HEADER + "".join(f"MT\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in VARIANTS))
    reference = Reference(RCRS, {"MT": "MT_human"})

    def run(out: Path, resume: bool) -> str:
        score_variants(causal_lm, read_vcf(vcf), reference, out, vcf=vcf, window=256, quiet=True, resume=resume)
        return out.read_text()

    whole = run(tmp_path / "whole.tsv", False)
    (tmp_path / ".cut.tsv.partial").write_text(left)
    assert run(tmp_path / "cut.tsv", True) == whole and not (tmp_path / ".cut.tsv.partial").exists()


@pytest.fixture(scope="module")
def mamba_lm():
    torch.manual_seed(0)
    return build("mamba-tiny-1k", task="causal-lm").eval()


def _generate(model, out: Path, **options) -> Path:
    prompts = [SequenceInput(name, encode(seq)) for name, seq in (("a", "ACGTTGCAAC"), ("b", "GGATCC"))]
    return generate_fasta(model, prompts, out, 6, num_samples=2, seed=3, quiet=True, **options)


def test_generate_resumes_a_partial_file_killed_before_its_first_prompt_as_a_fresh_run(tmp_path, mamba_lm):
    whole = _generate(mamba_lm, tmp_path / "whole.fa").read_text()
    (tmp_path / ".cut.fa.partial").write_bytes(b">a/1 prompt_len")  # no record of a completed prompt beside it
    assert _generate(mamba_lm, tmp_path / "cut.fa", resume=True).read_text() == whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cut.fa.done.json", ".whole.fa.done.json", "cut.fa",
                                                          "whole.fa"]  # each finished run's record, nothing partial


def test_generate_never_resumes_from_a_record_of_more_bytes_than_the_partial_file_holds(tmp_path, mamba_lm,
                                                                                          monkeypatch):
    """A run killed as it finished, after its rename, leaves its record of completed prompts: resumed beside the
    partial file of a later run killed early, it once extended that file with zero bytes and renamed it as
    complete."""
    unlink = Path.unlink

    def killed_before_the_record_goes(path: Path, missing_ok: bool = False) -> None:
        if path.name.endswith(".partial.json") and not missing_ok:  # the unlink after the rename
            raise SystemExit("killed")
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", killed_before_the_record_goes)
    with pytest.raises(SystemExit):
        _generate(mamba_lm, tmp_path / "out.fa")
    monkeypatch.undo()
    (tmp_path / ".out.fa.partial").write_bytes(b"")
    with pytest.raises(InputFormatError, match="holds fewer than the .* bytes"):
        _generate(mamba_lm, tmp_path / "out.fa", resume=True, overwrite=True)


def test_index_vcf_killed_between_its_two_files_leaves_no_copy_without_its_index(tmp_path, monkeypatch):
    source = tmp_path / "mt.vcf"
    source.write_text(VCF_HEADER + "".join(f"MT\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in VARIANTS))
    out, write_index = tmp_path / "mt.vcf.gz", indexing._write_index

    def killed_after_the_first_file(*args):
        write_index(*args)
        raise SystemExit("killed")

    monkeypatch.setattr(indexing, "_write_index", killed_after_the_first_file)
    with pytest.raises(SystemExit):
        index_vcf(source, out)
    assert not out.exists()
    monkeypatch.undo()
    index_vcf(source, out)  # no --overwrite needed: nothing final was left
    assert out.exists() and (tmp_path / "mt.vcf.gz.tbi").exists()


EMBED_KILLED = """
import os, signal, torch
from genomix.embed import SequenceInput, embed_sequences
from genomix.models import build
torch.manual_seed(0)
def inputs():
    yield SequenceInput("a", "ACGTACGTTG")
    os.kill(os.getpid(), signal.SIGKILL)  # while reading the inputs of the first window
embed_sequences(build("hyenadna-tiny-1k").eval(), inputs(), {out!r}, quiet=True, device="cpu")
"""


def test_embed_killed_before_its_first_rows_reached_the_disk_is_resumed_as_a_fresh_run(tmp_path):
    """HDF5 leaves an unreadable file when killed before its first flush: it must not take the partial file's
    name, where --resume would refuse it."""
    from genomix.embed import embed_sequences

    killed_python(EMBED_KILLED.format(out=str(tmp_path / "cut.h5")))
    torch.manual_seed(0)
    model = build("hyenadna-tiny-1k").eval()
    rows = [SequenceInput("a", "ACGTACGTTG"), SequenceInput("b", "GGGATTACA")]
    embed_sequences(model, rows, tmp_path / "cut.h5", quiet=True, device="cpu", resume=True)
    embed_sequences(model, rows, tmp_path / "whole.h5", quiet=True, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5", "whole.h5"]
    with h5py.File(tmp_path / "cut.h5") as cut, h5py.File(tmp_path / "whole.h5") as whole:
        assert (cut["embeddings"][()] == whole["embeddings"][()]).all()


def test_fine_tuning_removes_the_best_checkpoints_a_killed_run_left_untracked(tmp_path):
    """Killed between saving a new best and removing the one before it (or before its first ``last``), a run
    leaves a ``best-*.ckpt`` that no later run tracks or removes."""
    from types import SimpleNamespace

    from genomix.train.callbacks import EpochCheckpoint

    names = ["best-epoch=0.ckpt", "best-epoch=1.ckpt", "last.ckpt", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    callback = EpochCheckpoint(dirpath=tmp_path, filename="best-{epoch}", monitor="dev/mcc", save_top_k=1,
                               save_last=True)
    callback.best_k_models = {str(tmp_path / "best-epoch=1.ckpt"): torch.tensor(0.5)}  # as a resume restores it
    callback.on_fit_start(SimpleNamespace(is_global_zero=True), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == names[1:]


def test_embed_with_overwrite_leaves_no_partial_file_of_the_discarded_rows(tmp_path):
    from genomix.embed import embed_sequences

    torch.manual_seed(0)
    model, rows = build("hyenadna-tiny-1k").eval(), [SequenceInput("a", "ACGTACGTTG")]
    (tmp_path / ".e.h5.partial").write_bytes(b"rows of an interrupted run")
    embed_sequences(model, rows, tmp_path / "e.h5", quiet=True, device="cpu", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["e.h5"]
