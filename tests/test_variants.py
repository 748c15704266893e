"""Variant scoring end to end on real data: the 63 labelled ClinVar variants of the human mitochondrial
genome (shared/data/variants), written as a real bgzipped VCF, against the rCRS reference FASTA."""
from __future__ import annotations

import csv
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from genomix.cli import main as cli_main
from genomix.errors import ConfigError, InputFormatError, RangeError, UnknownContigError
from genomix.genome import read_fasta
from genomix.models.registry import build
from genomix.models.scoring import token_log_likelihoods
from genomix.tokenizer import encode
from genomix.variants import COLUMNS, Reference, Region, read_vcf, score_variants
from genomix.variants import score as score_module
from scoring_interrupts import interrupt_causal_scoring

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"
CLINVAR = SHARED / "variants" / "clinvar_chrMT_labeled_GRCh38_rCRS.tsv"
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def bgzf(data: bytes) -> bytes:
    """``data`` as BGZF (what bgzip writes): gzip members of <= 64 KiB carrying their size in a 'BC' extra
    field, then the empty end-of-file member."""
    out = bytearray()
    for i in range(0, len(data), 0xFF00):
        chunk = data[i:i + 0xFF00]
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = deflate.compress(chunk) + deflate.flush()
        size = 18 + len(body) + 8
        out += struct.pack("<4BI2BH2BHH", 0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1)
        out += body + struct.pack("<II", zlib.crc32(chunk), len(chunk))
    return bytes(out + BGZF_EOF)


def clinvar_rows() -> list[dict]:
    with open(CLINVAR) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def write_vcf(path: Path, records: list[tuple[str, int, str, str]], compress: bool = True) -> Path:
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=MT,length=16569>",
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{c}\t{p}\tv{i}\t{r}\t{a}\t.\tPASS\t." for i, (c, p, r, a) in enumerate(records)]
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(bgzf(text) if compress else text)
    return path


@pytest.fixture(scope="module")
def clinvar_vcf(tmp_path_factory) -> Path:
    rows = clinvar_rows()
    return write_vcf(tmp_path_factory.mktemp("vcf") / "clinvar_mt.vcf.gz",
                     [(r["chrom"], int(r["pos"]), r["ref"], r["alt"]) for r in rows])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k", task="causal-lm").eval()


def read_tsv(path: Path) -> list[dict]:
    with open(path) as fh:
        lines = [line for line in fh if not line.startswith("#")]
    assert tuple(lines[0].rstrip("\n").split("\t")) == COLUMNS
    return list(csv.DictReader(lines, delimiter="\t"))


def test_bgzipped_vcf_reads_back_every_clinvar_record(clinvar_vcf):
    assert clinvar_vcf.read_bytes()[12:14] == b"BC"  # a BGZF block, not plain gzip
    variants = list(read_vcf(clinvar_vcf))
    rows = clinvar_rows()
    assert [(v.chrom, v.pos, v.ref, v.alt) for v in variants] == [(r["chrom"], int(r["pos"]), r["ref"], r["alt"]) for r in rows]
    assert variants[0].line == 4


def test_scores_match_a_direct_computation(tmp_path, clinvar_vcf, model):
    reference = Reference(RCRS, {"MT": "MT_human"})
    counts = score_variants(model, read_vcf(clinvar_vcf), reference, tmp_path / "s.tsv", vcf=clinvar_vcf, window=128,
                            batch_size=7, quiet=True)
    rows = read_tsv(tmp_path / "s.tsv")
    assert counts == {"scored": 63} and len(rows) == 63
    genome = read_fasta(RCRS)["MT_human"].upper()
    for row in rows[::9] + [r for r in rows if len(r["ref"]) != len(r["alt"])][:4]:  # SNVs and indels
        start, width, p0 = int(row["window_start"]), int(row["window_length"]), int(row["pos"]) - 1
        ref_seq = genome[start:start + width]
        alt_seq = (genome[start:p0] + row["alt"] + genome[p0 + len(row["ref"]):])[:width]
        assert start <= p0 < start + width and width == 128
        ids = torch.from_numpy(np.stack([encode(ref_seq), encode(alt_seq)]))
        ref_ll, alt_ll = token_log_likelihoods(model, ids).sum(dim=1).tolist()
        assert float(row["llr"]) == pytest.approx(alt_ll - ref_ll, rel=1e-4, abs=1e-4)
        assert float(row["ref_log_likelihood"]) == pytest.approx(ref_ll, rel=1e-5)


def test_swapping_reference_and_alternate_negates_an_snv_score(tmp_path, model):
    genome = read_fasta(RCRS)["MT_human"]
    pos, ref = 3243, genome[3242].upper()
    alt = "G" if ref != "G" else "A"
    (tmp_path / "ref.fa").write_text(f">MT\n{genome}\n")
    (tmp_path / "alt.fa").write_text(f">MT\n{genome[:pos - 1]}{alt}{genome[pos:]}\n")
    scores = []
    for fasta, (a, b) in (("ref.fa", (ref, alt)), ("alt.fa", (alt, ref))):
        vcf = write_vcf(tmp_path / f"{fasta}.vcf", [("MT", pos, a, b)], compress=False)
        score_variants(model, read_vcf(vcf), Reference(tmp_path / fasta), tmp_path / f"{fasta}.tsv", window=96, quiet=True)
        scores.append(float(read_tsv(tmp_path / f"{fasta}.tsv")[0]["llr"]))
    assert scores[0] != 0 and scores[1] == pytest.approx(-scores[0], rel=1e-4)


def test_cli_scores_the_clinvar_vcf(tmp_path, clinvar_vcf, capsys):
    out = tmp_path / "cli.tsv"
    code = cli_main(["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(clinvar_vcf), "--reference", str(RCRS),
                     "--contig-map", "MT=MT_human", "--out", str(out), "--window", "64", "--quiet", "--device", "cpu"])
    assert code == 0
    rows = read_tsv(out)
    assert len(rows) == 63 and all(r["status"] == "scored" and math.isfinite(float(r["llr"])) for r in rows)
    assert "scored=63" in capsys.readouterr().err
    assert out.read_text().startswith("# genomix score-variants method=causal window=64 on_ref_mismatch=error "
                                     "model=hyenadna-tiny-1k")
    again = ["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(clinvar_vcf), "--reference", str(RCRS),
             "--quiet", "--window", "64"]
    assert cli_main(again + ["--out", str(out), "--contig-map", "MT=MT_human"]) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert cli_main(again + ["--out", str(tmp_path / "other.tsv")]) == 2  # MT is not the FASTA's name
    assert "--contig-map MT=NAME" in capsys.readouterr().err
    assert cli_main(again + ["--out", str(tmp_path / "x.tsv"), "--contig-map", "MT"]) == 2
    assert "expected VCF_NAME=REFERENCE_NAME" in capsys.readouterr().err


def test_filter_reuse_changes_no_score_and_can_be_turned_off(tmp_path, clinvar_vcf, monkeypatch):
    """Scoring keeps the long filters' spectra between forwards unless --no-filter-reuse; the rows are equal."""
    from genomix.models.hyena import HyenaOperator

    builds = []
    original = HyenaOperator._prepared_filters
    monkeypatch.setattr(HyenaOperator, "_prepared_filters", lambda self, *a: builds.append(1) or original(self, *a))
    common = ["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(clinvar_vcf), "--reference", str(RCRS),
              "--contig-map", "MT=MT_human", "--window", "64", "--batch-size", "16", "--quiet", "--device", "cpu"]
    torch.manual_seed(0)
    assert cli_main(common + ["--out", str(tmp_path / "plain.tsv"), "--no-filter-reuse"]) == 0
    assert not builds
    torch.manual_seed(0)
    assert cli_main(common + ["--out", str(tmp_path / "reused.tsv")]) == 0
    # 63 alleles in batches of 16 (2 windows each): two batch shapes, each prepared once per layer
    assert len(builds) == 2 * 2
    assert read_tsv(tmp_path / "reused.tsv") == read_tsv(tmp_path / "plain.tsv")


def test_every_allele_gets_a_row_with_its_status(tmp_path, model):
    genome = read_fasta(RCRS)["MT_human"].upper()
    records = [("MT", 100, genome[99], "A,<DEL>"), ("MT", 200, "T" if genome[199] != "T" else "C", "G"),
               ("MT", 300, genome[299:399], genome[299]), ("MT", 400, genome[399], "*")]
    vcf = write_vcf(tmp_path / "mixed.vcf", records, compress=False)
    counts = score_variants(model, read_vcf(vcf), Reference(RCRS, {"MT": "MT_human"}), tmp_path / "m.tsv", vcf=vcf,
                            window=128, on_ref_mismatch="skip", quiet=True)
    statuses = [(r["pos"], r["alt"], r["status"]) for r in read_tsv(tmp_path / "m.tsv")]
    assert statuses == [("100", "A", "scored"), ("100", "<DEL>", "symbolic"),
                        ("200", "G", "ref_mismatch"), ("300", genome[299], "too_long"), ("400", "*", "symbolic")]
    assert counts == {"scored": 1, "symbolic": 2, "ref_mismatch": 1, "too_long": 1}


def test_alt_alleles_with_ambiguity_codes_are_symbolic_not_scored(tmp_path, model):
    """An ALT written with N or another IUPAC code (any case, alone or among bases) names no one allele: it gets
    the status ``symbolic`` under every method, beside its record's concrete alleles, which are scored."""
    genome = read_fasta(RCRS)["MT_human"].upper()
    other = lambda base: "C" if base != "C" else "G"  # noqa: E731
    records = [("MT", 100, genome[99], "N"), ("MT", 110, genome[109], "n"), ("MT", 120, genome[119], "R"),
               ("MT", 130, genome[129], "y," + other(genome[129]).lower()), ("MT", 140, genome[139], "AKT"),
               ("MT", 150, genome[149:151], "NN")]
    vcf = write_vcf(tmp_path / "iupac.vcf", records, compress=False)
    assert [v.sequence_allele for v in read_vcf(vcf)] == [False, False, False, False, True, False, False]
    reference = Reference(RCRS, {"MT": "MT_human"})
    expected = [("100", "N", "symbolic"), ("110", "N", "symbolic"), ("120", "R", "symbolic"),
                ("130", "Y", "symbolic"), ("130", other(genome[129]), "scored"), ("140", "AKT", "symbolic"),
                ("150", "NN", "symbolic")]
    for method, m in [("causal", model), ("embedding", model),
                      ("masked", build("caduceus-ph-1k-d118", task="masked-lm").eval())]:
        counts = score_variants(m, read_vcf(vcf), reference, tmp_path / f"{method}.tsv", vcf=vcf, window=64,
                                quiet=True, method=method)
        rows = read_tsv(tmp_path / f"{method}.tsv")
        assert [(r["pos"], r["alt"], r["status"]) for r in rows] == expected, method
        assert counts == {"symbolic": 6, "scored": 1}
        assert all(r["llr"] == r["embedding_distance"] == "" for r in rows if r["status"] == "symbolic")


def test_an_ambiguity_code_in_ref_must_be_the_references_own(tmp_path, model):
    """REF with an IUPAC code (outside the VCF specification) is scored where the reference has that code, and
    is a REF mismatch elsewhere: a ``ref_mismatch`` row with ``skip``, else an error that names the codes."""
    fasta = tmp_path / "g.fa"
    fasta.write_text(">MT\n" + "ACGTTGCA" * 4 + "M" + "ACGTTGCA" * 4 + "\n")  # position 33 is M (A or C)
    vcf = write_vcf(tmp_path / "ref.vcf", [("MT", 33, "m", "A"), ("MT", 10, "R", "A"), ("MT", 11, "Y", "A")],
                    compress=False)
    reference = Reference(fasta)
    counts = score_variants(model, read_vcf(vcf), reference, tmp_path / "s.tsv", vcf=vcf, window=16,
                            on_ref_mismatch="skip", quiet=True)
    rows = read_tsv(tmp_path / "s.tsv")
    assert [(r["pos"], r["ref"], r["status"]) for r in rows] == [("33", "M", "scored"), ("10", "R", "ref_mismatch"),
                                                                 ("11", "Y", "ref_mismatch")]
    assert counts == {"scored": 1, "ref_mismatch": 2} and math.isfinite(float(rows[0]["llr"]))
    with pytest.raises(InputFormatError, match=r"ref.vcf:5: REF R does not match the reference at MT:10 \(C\).*"
                                               r"REF holds IUPAC ambiguity codes \(R\)"):
        score_variants(model, read_vcf(vcf), reference, tmp_path / "e.tsv", vcf=vcf, window=16, quiet=True)


def test_ref_mismatch_stops_with_the_line_and_keeps_the_rows_before(tmp_path, model):
    genome = read_fasta(RCRS)["MT_human"].upper()
    records = [("MT", 50, genome[49], "C" if genome[49] != "C" else "G"), ("MT", 60, "T" if genome[59] != "T" else "C", "A")]
    vcf = write_vcf(tmp_path / "bad.vcf", records, compress=False)
    with pytest.raises(InputFormatError, match=r"bad.vcf:5: REF .* does not match the reference at MT_human:60") as err:
        score_variants(model, read_vcf(vcf), Reference(RCRS, {"MT": "MT_human"}), tmp_path / "b.tsv", vcf=vcf,
                       window=64, batch_size=1, quiet=True)
    assert "--resume" in str(err.value)
    kept = (tmp_path / ".b.tsv.partial").read_text().splitlines()
    assert len(kept) == 3 and kept[2].startswith("MT\t50\t") and not (tmp_path / "b.tsv").exists()


def _interrupt_third_batch(monkeypatch):
    """Make the third batch of causal scoring raise KeyboardInterrupt, as Ctrl-C would; returns the real function,
    for the caller to put back."""
    real = score_module._score_causal
    interrupt_causal_scoring(monkeypatch, 3)
    return real


def test_interrupted_run_resumes_to_the_same_output(tmp_path, clinvar_vcf, model, monkeypatch):
    reference = Reference(RCRS, {"MT": "MT_human"})
    run = lambda out, **kw: score_variants(model, read_vcf(clinvar_vcf), reference, out, window=64, batch_size=10,  # noqa: E731
                                           quiet=True, **kw)
    run(tmp_path / "whole.tsv")
    real = _interrupt_third_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt, match=r"the 20 rows written so far are kept in .*cut\.tsv\.partial; rerun "
                       r"with resume=True \(--resume\) to continue"):  # what the CLI prints, and what a caller passes
        run(tmp_path / "cut.tsv")
    monkeypatch.setattr(score_module, "_score_causal", real)
    partial = tmp_path / ".cut.tsv.partial"
    with open(partial, "a") as fh:
        fh.write("MT\t99")  # a row cut mid-write
    with pytest.raises(InputFormatError, match="--resume"):
        run(tmp_path / "cut.tsv")
    counts = run(tmp_path / "cut.tsv", resume=True)
    assert counts["resumed"] == 20 and counts["scored"] == 43
    assert (tmp_path / "cut.tsv").read_text() == (tmp_path / "whole.tsv").read_text() and not partial.exists()
    with pytest.raises(InputFormatError, match="exists"):
        run(tmp_path / "cut.tsv")


def test_a_resume_on_changed_variants_is_refused_and_keeps_the_rows(tmp_path, clinvar_vcf, model, monkeypatch):
    """The first alleles of a resumed run must be those whose rows the partial file keeps: a VCF edited, re-sorted
    or cut since the run stopped is refused by the first allele that differs, and the kept rows stay."""
    reference = Reference(RCRS, {"MT": "MT_human"})
    run = lambda variants, **kw: score_variants(model, variants, reference, tmp_path / "cut.tsv", window=64,  # noqa: E731
                                                batch_size=10, quiet=True, vcf=clinvar_vcf, **kw)
    real = _interrupt_third_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(read_vcf(clinvar_vcf))
    monkeypatch.setattr(score_module, "_score_causal", real)
    partial = tmp_path / ".cut.tsv.partial"
    kept = partial.read_text()
    variants = list(read_vcf(clinvar_vcf))
    reordered = [variants[1], variants[0], *variants[2:]]
    with pytest.raises(InputFormatError, match=rf"allele 1 of .* is MT {variants[1].pos} .* but row 1 kept in "
                                               r".*partial is MT \d+ .*the variants changed since the run stopped"):
        run(reordered, resume=True)
    with pytest.raises(InputFormatError, match=r"has 15 allele\(s\), but .*partial keeps rows for 20"):
        run(variants[:15], resume=True)
    assert partial.read_text() == kept
    assert run(variants, resume=True)["resumed"] == 20


def test_a_resume_under_another_contig_map_is_refused(tmp_path, clinvar_vcf, model, monkeypatch):
    """Rows placed on one reference contig must not be continued on another: the contig map is a setting."""
    run = lambda mapping, **kw: score_variants(model, read_vcf(clinvar_vcf), Reference(RCRS, mapping),  # noqa: E731
                                               tmp_path / "cut.tsv", window=64, batch_size=10, quiet=True, **kw)
    real = _interrupt_third_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run({"MT": "MT_human"})
    monkeypatch.setattr(score_module, "_score_causal", real)
    with pytest.raises(InputFormatError, match="contig_map: MT=MT_human -> MT=MT_human,chrM=MT_human"):
        run({"MT": "MT_human", "chrM": "MT_human"}, resume=True)
    assert run({"MT": "MT_human"}, resume=True)["resumed"] == 20


def test_indels_at_the_contig_end_keep_their_alleles_in_both_windows(tmp_path, model):
    """Windows of equal length need |len(ALT) - len(REF)| reference bases after an indel: with fewer, the row
    says so instead of scoring two identical windows; with enough, both alleles are whole in their windows."""
    genome = read_fasta(RCRS)["MT_human"].upper()
    n = len(genome)
    reference = Reference(RCRS, {"MT": "MT_human"})
    plan = lambda pos, ref, alt: score_module.plan_windows(  # noqa: E731
        read_vcf_record(tmp_path, pos, ref, alt), reference, 64, "v.vcf")
    for pos, ref, alt in [(n, genome[-1], genome[-1] + "CCCC"), (n - 1, genome[-2:], genome[-2]),
                          (n - 4, genome[-5:], genome[-5]), (n - 9, genome[-10], genome[-10] + "A" * 20)]:
        assert plan(pos, ref, alt).status == "too_close_to_end", (pos, ref, alt)
    insertion = plan(n - 9, genome[-10], genome[-10] + "A" * 8)  # 9 bases after it: room for 8 more
    assert insertion.status == "scored" and insertion.alt_seq.endswith(genome[-10] + "A" * 8 + genome[-9])
    deletion = plan(n - 2, genome[-3:-1], genome[-3])  # drops 1 base; the contig's last base is pulled in
    assert deletion.status == "scored" and deletion.ref_seq.endswith(genome[-3:-1])
    assert deletion.alt_seq.endswith(genome[-3] + genome[-1]) and len(deletion.alt_seq) == len(deletion.ref_seq) == 64
    assert insertion.ref_seq != insertion.alt_seq and deletion.ref_seq != deletion.alt_seq


def test_an_alt_equal_to_its_ref_is_not_scored_as_a_neutral_variant(tmp_path):
    """ALT = REF (outside the VCF specification, e.g. from a faulty normalisation) changes nothing: its row says
    so instead of a "scored" llr of 0 that would rank it among real variants; its REF is still checked."""
    genome = read_fasta(RCRS)["MT_human"].upper()
    reference = Reference(RCRS, {"MT": "MT_human"})
    for method in ("causal", "masked", "embedding"):
        for pos, length in [(100, 1), (2000, 3)]:
            allele = genome[pos - 1:pos - 1 + length]
            row = score_module.plan_windows(read_vcf_record(tmp_path, pos, allele, allele), reference, 64, "v.vcf",
                                            method=method)
            assert row.status == "same_as_ref", (method, pos)
    other = "A" if genome[99] != "A" else "C"
    with pytest.raises(score_module.RefMismatchError):
        score_module.plan_windows(read_vcf_record(tmp_path, 100, other, other), reference, 64, "v.vcf")


def read_vcf_record(tmp_path: Path, pos: int, ref: str, alt: str):
    (variant,) = read_vcf(write_vcf(tmp_path / "one.vcf", [("MT", pos, ref, alt)], compress=False))
    return variant


def test_stale_partials_say_what_changed_and_overwrite_discards_them(tmp_path, model):
    """After a REF-mismatch stop, --resume with ``skip`` continues; other changed settings are named, and
    --overwrite starts again without the interrupted run's rows."""
    genome = read_fasta(RCRS)["MT_human"].upper()
    records = [("MT", 50, genome[49], "C" if genome[49] != "C" else "G"), ("MT", 60, "T" if genome[59] != "T" else "C", "A")]
    vcf = write_vcf(tmp_path / "bad.vcf", records, compress=False)
    reference, out = Reference(RCRS, {"MT": "MT_human"}), tmp_path / "b.tsv"
    run = lambda **kw: score_variants(model, read_vcf(vcf), reference, out, vcf=vcf, batch_size=1,  # noqa: E731
                                      quiet=True, **{"window": 64, **kw})
    with pytest.raises(InputFormatError, match="does not match"):
        run()
    with pytest.raises(InputFormatError, match=r"window: 64 -> 32.*--overwrite"):
        run(window=32, on_ref_mismatch="skip", resume=True)
    with pytest.raises(InputFormatError, match=r"overwrite=True \(--overwrite\) starts again"):
        run(on_ref_mismatch="skip")
    assert run(on_ref_mismatch="skip", resume=True) == {"resumed": 1, "ref_mismatch": 1}
    out.unlink()
    with pytest.raises(InputFormatError):
        run()
    assert run(window=32, on_ref_mismatch="skip", overwrite=True) == {"scored": 1, "ref_mismatch": 1}
    assert "window=32" in out.read_text().splitlines()[0]


def test_a_partial_file_is_continued_only_with_its_settings_and_discarded_only_by_overwrite(tmp_path, clinvar_vcf,
                                                                                             model, caplog):
    """The policy of ``genomix.resume``, as ``embed`` follows it: (a) a rerun or ``--resume`` under other settings
    is refused, naming each change; (b) ``--overwrite`` without ``--resume`` discards the kept rows, saying so;
    (c) ``--resume`` with ``--overwrite`` and other settings is refused too, and with the same settings continues."""
    reference, out, partial = Reference(RCRS, {"MT": "MT_human"}), tmp_path / "s.tsv", tmp_path / ".s.tsv.partial"

    def cut(n: int):
        yield from list(read_vcf(clinvar_vcf))[:n]
        raise KeyboardInterrupt

    run = lambda variants, **kw: score_variants(model, variants, reference, out, batch_size=10,  # noqa: E731
                                                quiet=True, **{"window": 64, **kw})
    whole = {}
    for window in (64, 32):
        score_variants(model, read_vcf(clinvar_vcf), reference, tmp_path / f"{window}.tsv", window=window,
                       batch_size=10, quiet=True)
        whole[window] = (tmp_path / f"{window}.tsv").read_text()
    with pytest.raises(KeyboardInterrupt):
        run(cut(25), meta={"model": "m"})
    kept = partial.read_text()
    assert len(kept.splitlines()) == 2 + 20
    with pytest.raises(InputFormatError, match=r"resume=True \(--resume\) continues it, overwrite=True \(--overwrite\) starts again"):
        run(read_vcf(clinvar_vcf), meta={"model": "m"})
    # the same weights: the model's name is not compared (see test_the_model_is_compared_by_its_weights)
    with pytest.raises(InputFormatError, match=r"interrupted run with other settings \(window: 64 -> 32\): "
                                               r"overwrite=True \(--overwrite\) starts again"):
        run(read_vcf(clinvar_vcf), window=32)  # (a) a rerun, for which --resume would not do either
    for overwrite in (False, True):  # (a) and (c)
        with pytest.raises(InputFormatError, match=r"other settings \(revision: - -> v2\); resume=True \(--resume\) continues it only "
                                                   r"with those.*--overwrite without --resume"):
            run(read_vcf(clinvar_vcf), meta={"model": "m", "revision": "v2"}, resume=True, overwrite=overwrite)
    assert partial.read_text() == kept  # nothing discarded, nothing added
    with caplog.at_level("WARNING", logger="genomix.resume"):  # (b)
        assert run(read_vcf(clinvar_vcf), window=32, overwrite=True) == {"scored": 63}
    assert f"discarding {partial}" in caplog.text and not partial.exists() and out.read_text() == whole[32]
    with pytest.raises(KeyboardInterrupt):
        run(cut(25), overwrite=True)
    counts = run(read_vcf(clinvar_vcf), resume=True, overwrite=True)  # (c) with the same settings: continued
    assert counts == {"resumed": 20, "scored": 43} and out.read_text() == whole[64]


def test_the_model_is_compared_by_its_weights(tmp_path, clinvar_vcf, model, monkeypatch, capsys, caplog):
    """The header records the loaded model's weights fingerprint: other weights saved at the same path are
    refused on --resume, naming ``weights``; the same weights at another path resume; and a partial file written
    before fingerprints were kept (no ``weights``) still resumes, compared by the model's path."""
    import shutil

    checkpoint, moved = tmp_path / "ckpt", tmp_path / "moved"
    model.save_pretrained(checkpoint)
    common = ["score-variants", "--vcf", str(clinvar_vcf), "--reference", str(RCRS), "--contig-map", "MT=MT_human",
              "--window", "64", "--batch-size", "10", "--quiet", "--device", "cpu"]
    out, partial = tmp_path / "cut.tsv", tmp_path / ".cut.tsv.partial"
    assert cli_main(common + ["--model", str(checkpoint), "--out", str(tmp_path / "whole.tsv")]) == 0
    whole = read_tsv(tmp_path / "whole.tsv")

    def interrupt():
        real = _interrupt_third_batch(monkeypatch)
        assert cli_main(common + ["--model", str(checkpoint), "--out", str(out)]) == 130
        assert re.search(r"interrupted; the 20 rows written so far are kept in .*\.cut\.tsv\.partial; rerun with "
                         r"resume=True \(--resume\)", capsys.readouterr().err)
        monkeypatch.setattr(score_module, "_score_causal", real)
        assert re.search(r" weights=sha256:[0-9a-f]{16}( |$)", partial.read_text().splitlines()[0])

    interrupt()  # (1) other weights at the same path: refused, naming the change
    torch.manual_seed(1)
    build("hyenadna-tiny-1k", task="causal-lm").save_pretrained(checkpoint)
    capsys.readouterr()
    assert cli_main(common + ["--model", str(checkpoint), "--out", str(out), "--resume"]) == 2
    assert re.search(r"other settings \(weights: sha256:[0-9a-f]{16} -> sha256:[0-9a-f]{16}\)", capsys.readouterr().err)
    model.save_pretrained(checkpoint)
    shutil.copytree(checkpoint, moved)  # (2) the same weights at another path: resumed, as if never cut
    assert cli_main(common + ["--model", str(moved), "--out", str(out), "--resume"]) == 0
    assert "resumed=20 scored=43" in capsys.readouterr().err
    assert read_tsv(out) == whole and f"model={moved} " in out.read_text().splitlines()[0] and not partial.exists()
    out.unlink()
    interrupt()  # (3) a partial without weights (an older genomix): compared by the model's path, still resumed
    first, rest = partial.read_text().split("\n", 1)
    partial.write_text(re.sub(r" weights=\S+", "", first) + "\n" + rest)
    with caplog.at_level("WARNING", logger="genomix.resume"):
        assert cli_main(common + ["--model", str(checkpoint), "--out", str(out), "--resume"]) == 0
    assert "before genomix kept a fingerprint" in caplog.text and read_tsv(out) == whole
    assert " weights=sha256:" in out.read_text().splitlines()[0]


def test_an_output_that_is_an_input_or_a_directory_is_refused(tmp_path, clinvar_vcf, model):
    reference = Reference(RCRS, {"MT": "MT_human"})
    for out in (clinvar_vcf, RCRS, tmp_path):
        with pytest.raises(InputFormatError, match="must not be an input|is a directory"):
            score_variants(model, read_vcf(clinvar_vcf), reference, out, vcf=clinvar_vcf, overwrite=True, quiet=True)


def test_bad_inputs_get_clear_errors(tmp_path, model):
    bad_pos = tmp_path / "bad_pos.vcf"
    bad_pos.write_text("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nMT\tx\t.\tA\tG\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match=r"bad_pos.vcf:2: POS 'x' is not an integer"):
        list(read_vcf(bad_pos))
    no_header = tmp_path / "no_header.vcf"
    no_header.write_text("MT\t10\t.\tA\tG\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match="no_header.vcf:1: the #CHROM header line is missing"):
        list(read_vcf(no_header))
    truncated = tmp_path / "cut.vcf.gz"
    whole = bgzf(b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + b"MT\t10\t.\tA\tG\t.\t.\t.\n" * 5000)
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputFormatError, match="truncated"):
        list(read_vcf(truncated))
    with pytest.raises(UnknownContigError, match="--contig-map MT=NAME"):
        Reference(RCRS).resolve("MT")
    with pytest.raises(ConfigError, match="causal or masked language model"):
        score_variants(build("caduceus-ph-1k-d118", task="classification"), [], Reference(RCRS), tmp_path / "x.tsv")


@pytest.mark.parametrize("text, where", [
    ("##fileformat=VCFv4.2\n##contig=<ID=MT>\nMT\t10\t.\tA\tG\t.\t.\t.\n", ":3"),
    ("MT\t10\t.\tA\tG\t.\t.\t.\n", ":1"),
    ("##fileformat=VCFv4.2\n", ""),
    ("", ""),
], ids=["meta-then-records", "records-only", "meta-only", "empty"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "bgzip"])
def test_a_vcf_without_its_chrom_line_is_refused_by_reader_and_indexer_alike(tmp_path, capsys, text, where, compress):
    """A text VCF must name its columns in the #CHROM line: the reader (score-variants, indexed regions too)
    and index-vcf (a plain copy or a bgzip file in place) stop with the same message naming the file and the
    missing line, and index-vcf leaves nothing behind."""
    from genomix.variants.indexing import index_vcf

    vcf = tmp_path / ("calls.vcf.gz" if compress else "calls.vcf")
    vcf.write_bytes(bgzf(text.encode()) if compress else text.encode())
    message = re.escape(f"{vcf}{where}: the #CHROM header line is missing")
    with pytest.raises(InputFormatError, match=message) as read_error:
        list(read_vcf(vcf))
    if compress:
        with pytest.raises(InputFormatError, match=message):
            list(read_vcf(vcf, [Region("MT", 0, 100)]))
    with pytest.raises(InputFormatError, match=message) as index_error:
        index_vcf(vcf)
    assert str(index_error.value) == str(read_error.value)
    assert cli_main(["index-vcf", str(vcf)]) == 2
    assert "genomix index-vcf: error: " + str(read_error.value) in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [vcf.name]  # no copy, no index, no temporary file


def test_index_vcf_checks_the_chrom_line_as_the_reader_does(tmp_path):
    """A malformed #CHROM line, or one after the first record, is refused by index-vcf with the reader's
    message; a proper one may follow meta lines with non-ASCII text, which index-vcf does not decode."""
    from genomix.variants.indexing import index_vcf

    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    record = "MT\t10\t.\tA\tG\t.\t.\t.\n"
    for name, text in [("bad.vcf", "#CHROM POS ID REF ALT QUAL FILTER INFO\n" + record),
                       ("late.vcf", record + columns + record)]:
        vcf = tmp_path / name
        vcf.write_text(text)
        with pytest.raises(InputFormatError) as read_error:
            list(read_vcf(vcf))
        with pytest.raises(InputFormatError) as index_error:
            index_vcf(vcf)
        assert str(index_error.value) == str(read_error.value) and f"{vcf}:1: " in str(read_error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.vcf", "late.vcf"]
    good = tmp_path / "good.vcf"
    good.write_bytes("##source=café\n".encode() + columns.encode() + record.encode())
    assert index_vcf(good) == tmp_path / "good.vcf.gz" and (tmp_path / "good.vcf.gz.tbi").is_file()


def test_a_named_size_has_the_same_random_weights_every_time():
    """``--model hyenadna-tiny-1k`` (testing) draws its weights from a fixed seed, so a resumed run continues with
    the same model; the global generator is left as it was."""
    from genomix.hub import load_model

    torch.manual_seed(1)
    state = torch.get_rng_state()
    first, second = (load_model("hyenadna-tiny-1k", "lm").state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first) and torch.equal(torch.get_rng_state(), state)


def test_contig_aliases(tmp_path):
    (tmp_path / "g.fa").write_text(">chrM\nACGTACGTAC\n>chr2\nGGGGCCCC\n")
    reference = Reference(tmp_path / "g.fa")
    assert reference.resolve("MT") == "chrM" and reference.resolve("M") == "chrM" and reference.resolve("2") == "chr2"
    assert reference.text("chrM", 2, 6) == "GTAC"


def test_recurrent_model_scores_past_its_max_seq_len(tmp_path, clinvar_vcf):
    torch.manual_seed(0)
    mamba = build("mamba-tiny-1k", task="causal-lm", max_seq_len=64).eval()
    variants = list(read_vcf(clinvar_vcf))[:2]
    counts = score_variants(mamba, variants, Reference(RCRS, {"MT": "MT_human"}), tmp_path / "m.tsv", window=150,
                            quiet=True)
    assert counts == {"scored": 2}
    assert all(r["window_length"] == "150" for r in read_tsv(tmp_path / "m.tsv"))
    with pytest.raises(RangeError, match="max_seq_len 1026"):
        score_variants(build("hyenadna-tiny-1k", task="causal-lm"), variants, Reference(RCRS, {"MT": "MT_human"}),
                       tmp_path / "h.tsv", window=2000)


def _eval_pipeline():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "pipelines" / "eval_variant_scoring.py"
    spec = importlib.util.spec_from_file_location("eval_variant_scoring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auroc_against_hand_counts():
    auroc = _eval_pipeline().auroc
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert auroc([1, 2, 3], [1, 0, 0]) == 0.0 and auroc([1, 2, 3], [0, 0, 1]) == 1.0
    assert auroc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5  # ties count one half
    assert math.isnan(auroc([1, 2], [1, 1]))


def test_clinvar_evaluation_pipeline_runs_end_to_end(tmp_path, capsys):
    import json

    code = _eval_pipeline().main(["--model", "hyenadna-tiny-1k", "--variants", str(CLINVAR), "--reference", str(RCRS),
                                  "--contig-map", "MT=MT_human", "--window", "64", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "eval_variant_scoring.json").read_text())
    table = {row["variants"]: row for row in result["table"]}
    labels = [int(r["label"]) for r in clinvar_rows()]
    assert table["all"]["n"] == 63 and table["all"]["pathogenic"] == sum(labels) == 14
    assert table["SNVs"]["n"] + table["indels"]["n"] == 63 and 0.0 <= table["all"]["auroc"] <= 1.0
    assert "(score: -llr)" in capsys.readouterr().out
    code = _eval_pipeline().main(["--model", "caduceus-ph-1k-d118", "--variants", str(CLINVAR), "--reference", str(RCRS),
                                  "--contig-map", "MT=MT_human", "--window", "64", "--device", "cpu", "--method",
                                  "embedding", "--out", str(tmp_path / "emb")])
    assert code == 0
    result = json.loads((tmp_path / "emb" / "eval_variant_scoring.json").read_text())
    assert result["score"] == "+1 embedding_distance" and result["table"][0]["n"] == 63
    assert "(score: embedding_distance)" in capsys.readouterr().out


def test_masked_models_score_substitutions_by_masked_marginals(tmp_path, clinvar_vcf):
    torch.manual_seed(0)
    caduceus = build("caduceus-ps-1k-d118", task="masked-lm").eval()
    counts = score_variants(caduceus, read_vcf(clinvar_vcf), Reference(RCRS, {"MT": "MT_human"}), tmp_path / "m.tsv",
                            window=96, batch_size=5, quiet=True)
    rows = read_tsv(tmp_path / "m.tsv")
    indels = [r for r in rows if len(r["ref"]) != len(r["alt"])]
    assert indels and all(r["status"] == "indel" and r["llr"] == "" for r in indels)
    assert counts == {"scored": 63 - len(indels), "indel": len(indels)}
    assert (tmp_path / "m.tsv").read_text().startswith("# genomix score-variants method=masked window=96")
    genome = read_fasta(RCRS)["MT_human"].upper()
    for row in [r for r in rows if r["status"] == "scored"][::7]:
        start, width, p0 = int(row["window_start"]), int(row["window_length"]), int(row["pos"]) - 1
        ids = torch.from_numpy(encode(genome[start:start + width]))[None]
        span = slice(p0 - start, p0 - start + len(row["ref"]))
        ids[0, span] = 3  # [MASK]
        with torch.no_grad():
            logp = torch.log_softmax(caduceus(input_ids=ids).logits[0].double(), -1)
        positions = range(span.start, span.stop)
        ref_ll = sum(float(logp[p, int(encode(b)[0])]) for p, b in zip(positions, row["ref"]))
        alt_ll = sum(float(logp[p, int(encode(b)[0])]) for p, b in zip(positions, row["alt"]))
        assert float(row["ref_log_likelihood"]) == pytest.approx(ref_ll, rel=1e-4, abs=1e-5)
        assert float(row["llr"]) == pytest.approx(alt_ll - ref_ll, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("fixture, expected", [("caduceus-ps", "masked-lm"), ("mamba-lm", "causal-lm"),
                                               ("hyenadna-released-layout", "causal-lm")])
def test_the_cli_loads_each_checkpoint_with_its_language_model_head(fixture, expected):
    from genomix.hub import load_model
    from genomix.models.tasks import CausalLMMixin, MaskedLMMixin

    model = load_model(str(SHARED.parent / "fixtures" / fixture), "lm")
    assert isinstance(model, {"masked-lm": MaskedLMMixin, "causal-lm": CausalLMMixin}[expected])
    assert score_module.scoring_method(model) == expected.split("-")[0]


def test_the_embedding_method_scores_every_sequence_allele_of_any_model(tmp_path, clinvar_vcf):
    out = tmp_path / "e.tsv"
    torch.manual_seed(0)  # the CLI builds the named size with fresh weights from this seed
    code = cli_main(["score-variants", "--model", "caduceus-ph-1k-d118", "--vcf", str(clinvar_vcf), "--reference",
                     str(RCRS), "--contig-map", "MT=MT_human", "--out", str(out), "--window", "80", "--method",
                     "embedding", "--quiet", "--device", "cpu"])
    assert code == 0
    rows = read_tsv(out)
    assert all(r["status"] == "scored" and r["llr"] == "" for r in rows)  # indels too
    distances = np.array([float(r["embedding_distance"]) for r in rows])
    assert (distances >= 0).all() and (distances > 0).any()
    genome = read_fasta(RCRS)["MT_human"].upper()
    row = next(r for r in rows if len(r["ref"]) != len(r["alt"]))
    start, width, p0 = int(row["window_start"]), int(row["window_length"]), int(row["pos"]) - 1
    windows = [genome[start:start + width], (genome[start:p0] + row["alt"] + genome[p0 + len(row["ref"]):])[:width]]
    torch.manual_seed(0)
    model = build("caduceus-ph-1k-d118", task="masked-lm").eval()  # the CLI's weights
    with torch.no_grad():
        hidden = model(input_ids=torch.from_numpy(np.stack([encode(w) for w in windows])),
                       output_hidden_states=True).hidden_states[-1].double().mean(1)
    expected = 1 - torch.nn.functional.cosine_similarity(hidden[:1], hidden[1:]).item()
    assert float(row["embedding_distance"]) == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_a_method_the_model_cannot_compute_is_refused(tmp_path):
    causal = build("hyenadna-tiny-1k", task="causal-lm")
    with pytest.raises(ConfigError, match="masked method needs a masked language model"):
        score_variants(causal, [], Reference(RCRS), tmp_path / "x.tsv", method="masked")
    with pytest.raises(ConfigError, match="unknown scoring method"):
        score_variants(causal, [], Reference(RCRS), tmp_path / "x.tsv", method="pll")
    with pytest.raises(RangeError, match="max_seq_len"):
        score_variants(build("caduceus-ph-1k-d118", task="masked-lm"), [], Reference(RCRS), tmp_path / "x.tsv",
                       window=4096)


def test_cli_refuses_a_changed_reference_on_resume_window_zero_and_a_missing_gpu(tmp_path, clinvar_vcf, capsys,
                                                                                  monkeypatch):
    """The reference is a setting like the VCF (path, size, modification time), so rows kept under one genome are
    not continued under another at the same path; --window 0 or 1 is out of range, not the default; a CUDA device
    this machine lacks is one line of error before the model loads."""
    import os

    reference = tmp_path / "ref.fa"
    reference.write_bytes(RCRS.read_bytes())
    common = ["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", str(clinvar_vcf), "--reference",
              str(reference), "--contig-map", "MT=MT_human", "--window", "64", "--batch-size", "4", "--quiet",
              "--device", "cpu", "--out", str(tmp_path / "s.tsv")]
    real = _interrupt_third_batch(monkeypatch)
    assert cli_main(common) == 130
    assert "kept in" in capsys.readouterr().err
    monkeypatch.setattr(score_module, "_score_causal", real)
    stat = reference.stat()
    os.utime(reference, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the genome replaced at the same path
    assert cli_main(common + ["--resume"]) == 2
    assert "reference_mtime_ns:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # refused as it is parsed, before the VCF is read or the model loads
        cli_main(common[:-2] + ["--out", str(tmp_path / "w.tsv"), "--window", "0"])
    assert stop.value.code == 2 and "--window: must be a positive integer, got 0" in capsys.readouterr().err
    assert cli_main(common[:-2] + ["--out", str(tmp_path / "w.tsv"), "--window", "1"]) == 2
    assert "window 1 must be between 2" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli_main(common[:-2] + ["--out", str(tmp_path / "c.tsv"), "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device is available on this machine" in capsys.readouterr().err
