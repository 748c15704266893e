"""The library's refusals serve both of its audiences: a Python caller, who has keyword arguments, and the command
line, which has flags. Each piece of advice names the keyword argument first and the flag in parentheses
(``resume=True (--resume)``), so that neither has to translate; and each message is one line saying what was wrong,
where, and what to do (a run stopped with rows kept adds where they are on a line of its own: genomix.resume)."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import torch

from genomix.embed import SequenceInput, embed_sequences
from genomix.errors import InputFormatError, UnknownContigError
from genomix.models import build
from genomix.variants import Reference, parse_contig_map, read_vcf, score_variants
from genomix.variants.indexing import index_vcf

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"
VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
START_AGAIN = re.escape("start again with overwrite=True and resume=False (--overwrite without --resume)")


@pytest.fixture(scope="module")
def causal_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k", task="causal-lm").eval()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def interrupted_after(items: list, n: int):
    yield from items[:n]
    raise KeyboardInterrupt


def test_embed_advice_names_the_keyword_arguments(causal_lm, tmp_path):
    items = [SequenceInput(f"s{i}", "ACGTTGCA" * (i + 2)) for i in range(4)]
    out, partial = tmp_path / "e.h5", tmp_path / ".e.h5.partial"
    run = lambda sequences, **kw: embed_sequences(causal_lm, sequences, out, window=2, device="cpu",  # noqa: E731
                                                  quiet=True, **kw)
    with pytest.raises(KeyboardInterrupt, match=re.escape(f"the 2 embeddings written so far are kept in {partial}; "
                                                          "rerun with resume=True (--resume) to continue after them")):
        run(interrupted_after(items, 3))
    # refused as the inputs are read, so the kept rows' advice follows on a line of its own (genomix.resume)
    with pytest.raises(InputFormatError, match=f"holds 2 rows but the input has only 1; resume with the same input, "
                                               rf"or {START_AGAIN}\n\(.*rerun with resume=True \(--resume\)"):
        run(items[:1], resume=True)
    renamed = [SequenceInput("other", items[0].ids), *items[1:]]
    with pytest.raises(InputFormatError, match=f"row 0 .* resume with the same input, or {START_AGAIN}\n"):
        run(renamed, resume=True)
    partial.write_bytes(b"not HDF5")
    with pytest.raises(InputFormatError, match=f"the interrupted run's file is unreadable .*; {START_AGAIN}$") as bad:
        run(items, resume=True)
    one_line(bad)
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputFormatError, match=r"afile is a file, not a folder; choose another out \(--out\)$"):
        embed_sequences(causal_lm, items, tmp_path / "afile" / "e.h5", device="cpu", quiet=True)


def test_score_variants_advice_names_the_keyword_arguments(causal_lm, tmp_path):
    genome = next(iter(Reference(RCRS).lengths))
    reference = Reference(RCRS, {"MT": genome})
    wrong = "A" if reference.text(genome, 99, 100) != "A" else "C"
    vcf = tmp_path / "v.vcf"
    vcf.write_text(VCF_HEADER + "".join(f"MT\t{pos}\t.\t{reference.text(genome, pos - 1, pos)}\tG\t.\t.\t.\n"
                                        for pos in (10, 20, 30)) + f"MT\t100\t.\t{wrong}\tG\t.\t.\t.\n")
    out, partial = tmp_path / "s.tsv", tmp_path / ".s.tsv.partial"
    run = lambda variants, **kw: score_variants(causal_lm, variants, reference, out, vcf=vcf,  # noqa: E731
                                                window=64, batch_size=1, quiet=True, device="cpu", **kw)
    with pytest.raises(KeyboardInterrupt, match=re.escape(f"the 2 rows written so far are kept in {partial}; rerun "
                                                          "with resume=True (--resume) to continue after them")):
        run(interrupted_after(list(read_vcf(vcf)), 2))
    with pytest.raises(InputFormatError, match=re.escape(f"{vcf}:6: REF {wrong} does not match the reference at "
                                                         f"{genome}:100") + ".*" + re.escape(
                                                             "or record such alleles as ref_mismatch rows and go on "
                                                             "with on_ref_mismatch='skip' (--on-ref-mismatch skip)")):
        run(read_vcf(vcf), resume=True)
    assert run(read_vcf(vcf), resume=True, on_ref_mismatch="skip") == {"resumed": 3, "ref_mismatch": 1}


def test_contig_map_advice_names_the_keyword_argument():
    with pytest.raises(UnknownContigError) as refused:
        Reference(RCRS).resolve("MT")
    assert one_line(refused).endswith("map the VCF's contig to one of those names with contig_map={'MT': NAME} "
                                      "(--contig-map MT=NAME)")
    assert "no contig 'MT' in" in str(refused.value)
    with pytest.raises(UnknownContigError) as refused:
        Reference(RCRS, {"MT": "chrM"})
    assert one_line(refused).startswith("contig_map maps 'MT' to 'chrM' (--contig-map MT=chrM), but there is no "
                                        "contig 'chrM' in")
    assert str(refused.value).endswith("; map it to one of those")
    with pytest.raises(InputFormatError) as refused:
        parse_contig_map(["MT=chrM", "MT"])
    assert one_line(refused) == "contig map pair 'MT' (--contig-map): expected VCF_NAME=REFERENCE_NAME, e.g. 1=chr1"


def test_index_vcf_advice_names_the_keyword_arguments(tmp_path):
    calls = tmp_path / "calls.vcf.gz"
    calls.write_bytes(gzip.compress((VCF_HEADER + "MT\t10\t.\tA\tG\t.\t.\t.\n").encode()))
    with pytest.raises(InputFormatError) as refused:
        index_vcf(calls)
    assert one_line(refused) == (f"{calls} is gzip, not bgzip, so it cannot be indexed in place: give a bgzip copy's "
                                 "name with out=PATH (--out PATH), e.g. calls.bgz.vcf.gz")
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputFormatError, match=r"afile is a file, not a folder; choose another out \(--out\)$"):
        index_vcf(calls, tmp_path / "afile" / "calls.vcf.gz")
    assert index_vcf(calls, tmp_path / "calls.bgz.vcf.gz").is_file()
