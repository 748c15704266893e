"""``--resume`` on an output that a finished run already wrote (``genomix.resume.finished_output``): nothing to do when
the output records this run's settings and inputs, refused naming what differs otherwise, and replaced only with
``--overwrite``. A job script that passes ``--resume`` on every attempt must not fail, nor recompute hours of work,
after its last attempt finished; nor may it keep an output that other settings or inputs would have given."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from genomix.cli import main
from genomix.embed import SequenceInput, embed_sequences
from genomix.errors import InputFormatError
from genomix.generate_fasta import generate_fasta
from genomix.models import build
from genomix.tokenizer import encode
from genomix.variants import Reference, read_vcf, score_variants

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"
SEQUENCES = {"a": "ACGTTGCAACGGATCC", "b": "TTTAAACCCGGGA", "c": "GATTACA"}


def sequences(names: dict[str, str] = SEQUENCES) -> list[SequenceInput]:
    return [SequenceInput(name, encode(seq)) for name, seq in names.items()]


@pytest.fixture(scope="module")
def causal_lm():
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k", task="causal-lm").eval()


def _unchanged(path: Path):
    """A check that ``path`` still has the bytes and modification time it has now (it was not written again)."""
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    return lambda: (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_embed_resumed_on_its_finished_output_does_nothing_and_refuses_other_settings_or_inputs(tmp_path, causal_lm,
                                                                                                caplog):
    backbone = causal_lm.backbone
    run = lambda items, **kw: embed_sequences(backbone, items, tmp_path / "e.h5", quiet=True, **kw)  # noqa: E731
    out = run(sequences())
    unchanged = _unchanged(out)
    with caplog.at_level(logging.WARNING, logger="genomix.resume"):
        assert run(sequences(), resume=True) == out
    assert "e.h5 is already complete for these inputs and settings: nothing to do" in caplog.text and unchanged()
    with pytest.raises(InputFormatError, match=r"e\.h5 exists; pass overwrite=True"):  # without resume, as before
        run(sequences())
    with pytest.raises(InputFormatError, match=r"finished run with other settings \(pooling: mean -> last\); "
                       r"resume=True \(--resume\) continues only an interrupted run: pass overwrite=True"):
        run(sequences(), resume=True, pooling="last")
    with pytest.raises(InputFormatError, match=r"other inputs \(4 sequences given, 3 embedded\)"):
        run(sequences({**SEQUENCES, "d": "ACGT"}), resume=True)
    with pytest.raises(InputFormatError, match=r"other inputs \(as many sequences, 3, but other ids or bases\)"):
        run(sequences({**SEQUENCES, "c": "GATTACC"}), resume=True)
    assert unchanged()
    run(sequences(), resume=True, overwrite=True, pooling="last")  # --overwrite replaces it, --resume or not
    assert not unchanged()
    (tmp_path / "e.h5").write_text("not HDF5\n")
    with pytest.raises(InputFormatError, match=r"e\.h5: it is not a readable embedding file"):
        run(sequences(), resume=True)


def test_embed_cli_resumed_on_its_finished_output_exits_cleanly(tmp_path, capsys):
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in SEQUENCES.items()))
    args = ["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(fasta), "--out", str(tmp_path / "e.h5"),
            "--device", "cpu", "--quiet"]
    assert main(args) == 0
    unchanged = _unchanged(tmp_path / "e.h5")
    assert main(args + ["--resume"]) == 0 and unchanged()
    assert main(args) == 2 and "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main(args + ["--resume", "--pooling", "first"]) == 2
    assert "other settings (pooling: mean -> first)" in capsys.readouterr().err and unchanged()


def test_generate_resumed_on_its_finished_output_does_nothing_and_refuses_what_differs(tmp_path, causal_lm):
    run = lambda items, **kw: generate_fasta(causal_lm, items, tmp_path / "g.fa", 6, num_samples=2,  # noqa: E731
                                             quiet=True, **{"seed": 3, **kw})
    out = run(sequences())
    unchanged = _unchanged(out)
    assert run(sequences(), resume=True) == out and unchanged()
    with pytest.raises(InputFormatError, match=r"other settings \(seed: 3 -> 4\)"):
        run(sequences(), resume=True, seed=4)
    with pytest.raises(InputFormatError, match=r"other prompts \(2 given, 3 generated from\)"):
        run(sequences({"a": "ACGT", "b": "GGCC"}), resume=True)
    with pytest.raises(InputFormatError, match=r"other prompts \(as many, 3, but other ids or bases\)"):
        run(sequences({**SEQUENCES, "a": "ACGA"}), resume=True)
    assert unchanged()
    record = tmp_path / ".g.fa.done.json"
    saved = record.read_bytes()
    record.unlink()  # an output written before genomix kept the record, or by something else
    with pytest.raises(InputFormatError, match=r"g\.fa has no readable record of the run that wrote it"):
        run(sequences(), resume=True)
    record.write_bytes(saved)
    with open(out, "a") as fh:
        fh.write(">edited\nACGT\n")
    with pytest.raises(InputFormatError, match=r"g\.fa was changed after the run that wrote it finished"):
        run(sequences(), resume=True)
    run(sequences(), resume=True, overwrite=True, seed=4)  # replaced, and its record with it
    assert run(sequences(), resume=True, seed=4) == out


def test_score_variants_resumed_on_its_finished_output_does_nothing_and_refuses_what_differs(tmp_path, causal_lm):
    from test_variants import clinvar_rows, write_vcf

    alleles = [(r["chrom"], int(r["pos"]), r["ref"], r["alt"]) for r in clinvar_rows()[:3]]
    vcf = write_vcf(tmp_path / "v.vcf.gz", alleles)
    fewer = write_vcf(tmp_path / "fewer.vcf.gz", alleles[:2])
    chrom, pos, ref, alt = alleles[1]
    moved = write_vcf(tmp_path / "moved.vcf.gz", [alleles[0], (chrom, pos + 1, ref, alt), alleles[2]])
    reference = Reference(RCRS, {"MT": "MT_human"})
    run = lambda source, **kw: score_variants(causal_lm, read_vcf(source), reference, tmp_path / "s.tsv",  # noqa: E731
                                              quiet=True, **{"window": 64, **kw})
    first = run(vcf)
    unchanged = _unchanged(tmp_path / "s.tsv")
    assert run(vcf, resume=True) == first and unchanged()  # the rows per status, read back
    with pytest.raises(InputFormatError, match=r"other settings \(window: 64 -> 32\)"):
        run(vcf, resume=True, window=32)
    with pytest.raises(InputFormatError, match=r"other variants \(2 alleles given, 3 rows\)"):
        run(fewer, resume=True)
    with pytest.raises(InputFormatError, match=rf"other variants \(allele 2 is {chrom} {pos + 1} v1 {ref} {alt}, row 2 "
                       rf"{chrom} {pos} v1 {ref} {alt}\)"):
        run(moved, resume=True)  # judged before any allele is placed on the reference
    assert unchanged()
    (tmp_path / "s.tsv").write_text("chrom\tpos\n")
    with pytest.raises(InputFormatError, match=r"s\.tsv is not a scores file of genomix score-variants"):
        run(vcf, resume=True)
    (tmp_path / "s.tsv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputFormatError, match=r"s\.tsv is not a scores file of genomix score-variants"):
        run(vcf, resume=True)
