"""`genomix tasks download` as a demanding user meets it: an archive missing a task's split, labels that mix
integers with other numbers, an unpacked folder given as --archive, a run killed outright, options that are
silently ignored, published tasks damaged by hand, a file where a group folder goes, and misspelt task names.
Payloads are real GUE rows from shared/data."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from genomix.cli import main
from genomix.errors import DownloadError, InputFormatError
from genomix.tasks import fetch_suite, load_task

import test_task_suites
from test_task_suites import _class_folder_zip, _serve_zenodo

GUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue"
host = test_task_suites.host  # the local stand-in for Zenodo, a fixture


def _gue_csv(task: str, split: str) -> bytes:
    return gzip.decompress((GUE / task / f"{split}.csv.gz").read_bytes())


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return path


def _whole_tf0() -> dict[str, bytes]:
    """GUE's tf/0, every split, as DNABERT-2's GUE.zip holds it."""
    return {f"GUE/tf/0/{s}.csv": _gue_csv("tf/0", s) for s in ("train", "dev", "test")}


def test_a_task_missing_a_split_in_the_archive_is_not_published(tmp_path, capsys):
    """A GUE.zip re-packed without tf/0's train.csv gave a task of dev and test only, which, having its
    SOURCE.json, was then skipped by every later run as complete."""
    archive = _archive(tmp_path / "GUE.zip", {f"GUE/tf/0/{s}.csv": _gue_csv("tf/0", s) for s in ("dev", "test")})
    out = tmp_path / "gue"
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--archive", str(archive), "--out", str(out),
                 "--quiet"]) == 2
    assert "task tf/0 lacks train.csv" in capsys.readouterr().err
    assert not (out / "tf" / "0").exists()


def test_source_json_names_the_archive_by_its_full_path(tmp_path, monkeypatch):
    """A relative --archive was recorded as given, which names nothing once the user is in another folder."""
    _archive(tmp_path / "GUE.zip", _whole_tf0())
    monkeypatch.chdir(tmp_path)
    folder = fetch_suite("gue", out="gue", tasks=["tf/0"], archive="GUE.zip", quiet=True)["tf/0"]
    assert json.loads((folder / "SOURCE.json").read_text())["archive"] == str(tmp_path / "GUE.zip")


@pytest.mark.parametrize("stray, message", [
    ("1.0", "label(s) ['1.0'] are numbers but not plain"), ("+1", "label(s) ['+1'] are numbers but not plain"),
    ("nan", "label 'nan' marks a missing value"), ("NA", "label 'NA' marks a missing value"),
    ("None", "label 'None' marks a missing value")])
def test_integer_labels_mixed_with_other_numbers_or_missing_values_are_refused_at_their_line(tmp_path, stray, message):
    """A label column saved partly as floats, or with NaN/NA/None for a missing value, silently gave '1.0' or
    'NA' a class of its own beside '1'. The error names the stray's line (51: header, 49 rows, then it)."""
    rows = _gue_csv("tf/0", "dev").decode().splitlines()[:50]
    seq = rows[1].split(",")[0]
    (tmp_path / "train.csv").write_text("\n".join(rows + [f"{seq},{stray}", f"{seq},0"]) + "\n")
    with pytest.raises(InputFormatError, match=re.escape(f"train.csv:51: {message}")):
        load_task(tmp_path)


def test_class_names_that_are_not_numbers_still_mix_with_integers(tmp_path):
    (tmp_path / "train.csv").write_text("sequence,label\nACGT,0\nGGCC,1\nTTAA,other\n")
    assert load_task(tmp_path).label_names == ["0", "1", "other"]


def test_an_unpacked_folder_given_as_archive_is_named_a_folder(tmp_path, capsys):
    """--archive pointing at an unpacked GUE folder said "no such file" about a path that exists."""
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--archive", str(GUE), "--out",
                 str(tmp_path / "gue")]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "no such file" not in err and "--task" in err


def test_a_killed_run_leaves_no_staging_for_good(tmp_path):
    """A run killed outright (kill -9) cannot remove its staging folder; the next run removes it."""
    archive = _archive(tmp_path / "GUE.zip", _whole_tf0())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "gue"
    leftover = out / ".staging" / f".run.tmp-{dead.pid}" / "tf" / "0"
    leftover.mkdir(parents=True)
    (leftover / "train.csv").write_bytes(_gue_csv("tf/0", "train")[:1000])
    fetch_suite("gue", out=out, tasks=["tf/0"], archive=archive, quiet=True)
    assert not leftover.parent.parent.exists()
    assert not [p for p in (out / ".staging").rglob("*")]


def test_cache_dir_with_out_is_refused_not_ignored(tmp_path, capsys):
    """With --out, --cache-dir was silently unused (downloads go under --out), while its help called it the
    download cache."""
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--out", str(tmp_path / "gue"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "--cache-dir only chooses the default --out" in capsys.readouterr().err
    assert not (tmp_path / "gue").exists() and not (tmp_path / "cache").exists()


def test_a_given_archive_cut_short_is_called_truncated_not_an_html_page(tmp_path, capsys):
    """A browser download stopped half way was blamed on Google Drive's HTML quota page."""
    whole = _archive(tmp_path / "whole.zip", _whole_tf0())
    cut = tmp_path / "GUE.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--archive", str(cut), "--out", str(tmp_path / "gue"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cut short" in err and "HTML" not in err and "run the same command" not in err


def test_a_bad_row_in_an_archive_is_named_by_the_archive_and_file_not_the_removed_staging_path(tmp_path, capsys):
    """Errors read back from a task pointed into <out>/.staging/..., which is removed before the user reads them."""
    train = _gue_csv("tf/0", "train").decode()
    archive = _archive(tmp_path / "GUE.zip", {"GUE/tf/0/train.csv": train, "GUE/tf/0/test.csv": train,
                                              "GUE/tf/0/dev.csv": train.replace("A", "U", 1)})
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--archive", str(archive), "--out",
                 str(tmp_path / "gue"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{archive}: task tf/0: dev.csv:2: invalid DNA character 'U'" in err and ".staging" not in err


def _published_tf0(tmp_path: Path) -> tuple[Path, Path]:
    """GUE's tf/0 published from an archive: (the archive, the task folder)."""
    archive = _archive(tmp_path / "GUE.zip", _whole_tf0())
    return archive, fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=archive, quiet=True)["tf/0"]


def _damage(folder: Path, how: str) -> str:
    """Damage the published task ``folder`` by hand as ``how`` says; returns what the warning must name."""
    if how == "deleted":
        (folder / "train.csv").unlink()
        return "train.csv is missing"
    if how == "emptied":
        (folder / "dev.csv").write_bytes(b"")
        return "dev.csv is empty"
    if how == "cut short":
        (folder / "test.csv").write_bytes((folder / "test.csv").read_bytes()[:1000])
        return "test.csv has 1,000 bytes, not the"
    (folder / "SOURCE.json").write_text("{\"suite\": \"gue\", ")
    return "SOURCE.json is not the JSON record"


@pytest.mark.parametrize("how", ["deleted", "emptied", "cut short", "record unreadable"])
def test_a_published_task_damaged_by_hand_is_fetched_again(tmp_path, caplog, how):
    """A task folder with its SOURCE.json was skipped as complete after a split file was deleted, emptied or cut
    short by hand: every later run returned the damaged task."""
    archive, folder = _published_tf0(tmp_path)
    named = _damage(folder, how)
    with caplog.at_level("WARNING", logger="genomix.tasks.suites"):
        assert fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=archive, quiet=True)["tf/0"] == folder
    assert named in caplog.text and "fetching it again" in caplog.text
    for split in ("train", "dev", "test"):
        assert (folder / f"{split}.csv").read_bytes() == _gue_csv("tf/0", split)
    assert json.loads((folder / "SOURCE.json").read_text())["sizes"]["test.csv"] == len(_gue_csv("tf/0", "test"))
    assert not [p for p in (tmp_path / "gue").rglob("*") if ".staging" in p.parts and p.is_file()]


def test_a_damaged_task_that_cannot_be_fetched_again_is_named_and_left_as_it_is(tmp_path, capsys):
    archive, folder = _published_tf0(tmp_path)
    (folder / "dev.csv").write_bytes(b"")
    archive.unlink()
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--archive", str(archive), "--out",
                 str(tmp_path / "gue"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and f"damaged task tf/0 ({folder / 'dev.csv'} is empty) was left as it is" in err
    assert (folder / "train.csv").read_bytes() == _gue_csv("tf/0", "train")  # nothing was removed


def test_a_task_published_before_sizes_were_recorded_is_checked_for_missing_and_empty_files(tmp_path):
    archive, folder = _published_tf0(tmp_path)
    record = json.loads((folder / "SOURCE.json").read_text())
    del record["sizes"]
    (folder / "SOURCE.json").write_text(json.dumps(record))
    (folder / "test.csv").write_bytes(_gue_csv("tf/0", "test")[:1000])  # unknown size: cannot be told cut short
    missing = tmp_path / "gone.zip"
    fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=missing, quiet=True)  # trusted: not fetched
    (folder / "test.csv").write_bytes(b"")
    with pytest.raises(DownloadError, match="test.csv is empty"):
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=missing, quiet=True)


def test_a_genomic_benchmarks_task_missing_a_sequence_file_is_fetched_again(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("ZENODO_ENDPOINT", url)
    _serve_zenodo(state, url, {"human_nontata_promoters_v0.zip": _class_folder_zip("human_nontata_promoters", "tf/0")})
    out = tmp_path / "gb"
    folder = fetch_suite("genomic_benchmarks", out=out, tasks=["human_nontata_promoters"], quiet=True)[
        "human_nontata_promoters"]
    files = len(list(folder.rglob("*.txt")))
    (folder / "train" / "positive" / ".DS_Store").write_bytes(b"\0")  # Finder's litter is no damage
    requests = len(state["log"])
    fetch_suite("genomic_benchmarks", out=out, tasks=["human_nontata_promoters"], quiet=True)
    assert len(state["log"]) == requests
    next((folder / "train" / "positive").glob("*.txt")).unlink()
    fetch_suite("genomic_benchmarks", out=out, tasks=["human_nontata_promoters"], quiet=True)
    assert len(state["log"]) > requests and len(list(folder.rglob("*.txt"))) == files


@pytest.mark.parametrize("blocker", ["EMP", "EMP/H3"])
def test_a_file_where_a_group_or_task_folder_goes_is_named_not_blamed_on_disk_space(tmp_path, capsys, blocker):
    """A file named like a group folder (GUE's EMP) made the task's rename fail with "free some space"."""
    archive = _archive(tmp_path / "GUE.zip", {f"GUE/EMP/H3/{s}.csv": _gue_csv("tf/0", s)
                                              for s in ("train", "dev", "test")})
    out = tmp_path / "gue"
    (out / blocker).parent.mkdir(parents=True, exist_ok=True)
    (out / blocker).write_text("notes")
    assert main(["tasks", "download", "gue", "--tasks", "EMP/H3", "--archive", str(archive), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out / blocker} is a file, in the way of the folder {out / 'EMP' / 'H3'}" in err
    assert "space" not in err and (out / blocker).read_text() == "notes"


@pytest.mark.parametrize("name, suggested", [("emp/h3", "'EMP/H3'"), ("EMP/H33", "'EMP/H3'"), ("Prom", "'prom'"),
                                             ("tff", "'tf'"), ("xyz", None)])
def test_a_misspelt_task_name_is_answered_with_the_names_it_may_mean(tmp_path, capsys, name, suggested):
    assert main(["tasks", "download", "gue", "--tasks", name, "--out", str(tmp_path / "gue")]) == 2
    err = capsys.readouterr().err
    assert f"no task or group {name!r}" in err
    assert (f"(did you mean {suggested}" in err) if suggested else "did you mean" not in err
