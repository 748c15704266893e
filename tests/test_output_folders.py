"""Every command that writes refuses an output folder it cannot make in one line, before any work, and writes
nothing (genomix.outputs.make_output_dir); a file in the way is refused before any slow work
(genomix.outputs.check_output_dir), which lets an existing folder (a run to resume) pass."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from genomix.cli import main
from genomix.errors import InputFormatError
from genomix.outputs import check_output_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"

COMMANDS = {
    "finetune": ["finetune", "--model", "hyenadna-tiny-1k", "--task", ".", "--out", "{out}"],
    "icl": ["icl", "--model", "hyenadna-tiny-1k", "--task", ".", "--out", "{out}"],
    "pretrain": ["pretrain", "--max-steps", "1", "--out", "{out}"],
    "embed": ["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(RCRS), "--device", "cpu", "--out", "{out}/e.h5"],
    "generate": ["generate", "--model", "hyenadna-tiny-1k", "--max-new-tokens", "3", "--prompt", "ACGT", "--device",
                 "cpu", "--out", "{out}/g.fa"],
    "score-variants": ["score-variants", "--model", "hyenadna-tiny-1k", "--vcf", "{vcf}", "--reference", str(RCRS),
                       "--device", "cpu", "--out", "{out}/s.tsv"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_folder_under_a_file_is_one_line(tmp_path, capsys, command):
    vcf = tmp_path / "v.vcf"
    contig = RCRS.read_text().split(None, 1)[0][1:]
    vcf.write_text(f"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n{contig}\t3\t.\tT\tC\t.\t.\t.\n")
    outs = tmp_path / "outs"
    outs.mkdir()
    blocker = outs / "afile"
    blocker.write_text("")
    out = blocker / "run"
    assert main([arg.format(out=out, vcf=vcf) for arg in COMMANDS[command]] + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the output folder {out}: {blocker} is a file" in err
    assert "Traceback" not in err
    assert [p.name for p in outs.iterdir()] == ["afile"]


def test_check_output_dir_refuses_only_a_file_in_the_way_and_makes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    run = tmp_path / "run"
    assert check_output_dir("~/run/new") == run / "new" and not run.exists()  # made later, by the first write
    (run / "checkpoints").mkdir(parents=True)
    assert check_output_dir(run) == run  # a run to resume
    (run / "afile").write_text("")
    for out in (run / "afile", run / "afile" / "deeper" / "run"):
        refusal = f"cannot create the output folder {out}: {run / 'afile'} is a file, not a folder; choose another -o"
        with pytest.raises(InputFormatError, match=f"^{re.escape(refusal)}$"):
            check_output_dir(out, "-o")
    assert sorted(p.name for p in run.iterdir()) == ["afile", "checkpoints"]
