"""Benchmark suites fetched from a local HTTP server that stands in for Google Drive and the Hugging Face
Hub: the shipped suite list, resumed transfers, checksums, archive checks, all-or-nothing task folders,
labelled FASTA, and the `genomix tasks` command. The payloads are real GUE rows from shared/data."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from genomix.cli import main
from genomix.errors import ChecksumError, ConfigError, DiskSpaceError, DownloadError, InputFormatError
from genomix.tasks import fetch_suite, known_suites, load_task, read_labelled_fasta
from genomix.tasks import suites as suites_module

GUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gue"
GUE_TASKS = ("prom/prom_300_tata", "tf/0")
NT = known_suites()["nt"]


class _Host(http.server.BaseHTTPRequestHandler):
    """GET with Range support for ``state['files']``, each with an ETag (its MD5: a download without a checksum
    resumes only with a validator); HEAD answers 302 with ``state['heads']`` headers; the first ``state['cut']``
    GETs (of paths ending in ``state['cut_only']``, if set) drop the connection a third of the way through."""

    state: dict = {}

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.state["log"].append(("HEAD", self.path, None))
        if self.path not in self.state["files"]:
            self.send_error(404)
            return
        self.send_response(302)
        self.send_header("Location", "/cdn" + self.path)
        for key, value in self.state["heads"].get(self.path, {}).items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self):
        self.state["log"].append(("GET", self.path, self.headers.get("Range")))
        body = self.state["files"].get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if self.state["cut"] > 0 and self.path.endswith(self.state.get("cut_only", "")):
            self.state["cut"] -= 1
            self.wfile.write(rest[: len(rest) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(rest)


@pytest.fixture()
def host():
    state = {"files": {}, "heads": {}, "log": [], "cut": 0}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Host,), {"state": state}))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def _gue_csv(task: str, split: str) -> bytes:
    return gzip.decompress((GUE / task / f"{split}.csv.gz").read_bytes())


def _gue_zip(tasks=GUE_TASKS, wrapper: str = "GUE/") -> bytes:
    """A GUE.zip laid out like DNABERT-2's (a top folder, then group/task/split.csv), from real rows."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for task in tasks:
            for split in ("train", "dev", "test"):
                zf.writestr(f"{wrapper}{task}/{split}.csv", _gue_csv(task, split))
    return buffer.getvalue()


@pytest.fixture()
def gue_suite(host, tmp_path, monkeypatch):
    """The shipped suite list with GUE's archive URL pointed at the local host."""
    url, state = host
    entries = yaml.safe_load(suites_module.SUITES_FILE.read_text())
    entries["gue"]["archive"]["url"] = f"{url}/drive/GUE.zip"
    patched = tmp_path / "benchmarks.yaml"
    patched.write_text(yaml.safe_dump(entries))
    monkeypatch.setattr(suites_module, "SUITES_FILE", patched)
    return state


def test_the_shipped_suites_are_complete_and_pinned():
    from genomix.cli.tasks import SUITE_CHOICES

    suites = known_suites()
    assert SUITE_CHOICES == tuple(sorted(suites))  # the command line's literal list
    assert len(suites["gue"].tasks) == 28 and len(set(suites["gue"].tasks)) == 28
    assert len(NT.tasks) == 18 and re.fullmatch(r"[0-9a-f]{40}", NT.revision)
    gb = suites["genomic_benchmarks"]
    assert len(gb.tasks) == 9 and gb.zenodo_record.isdigit() and "{task}" in gb.zip_name
    assert suites["gue"].select(["tf"]) == [f"tf/{i}" for i in range(5)]
    assert suites["gue"].select(["prom/prom_300_tata", "prom"])[0] == "prom/prom_300_tata"
    with pytest.raises(ConfigError, match="no task or group 'tff'"):
        suites["gue"].select(["tff"])


def test_gue_archive_resumes_extracts_checks_and_skips_finished_tasks(gue_suite, tmp_path):
    state = gue_suite
    state["files"]["/drive/GUE.zip"] = _gue_zip()
    state["cut"] = 1  # the first transfer dies a third of the way through
    out = tmp_path / "gue"
    folders = fetch_suite("gue", out=out, tasks=["prom/prom_300_tata", "tf/0"], quiet=True)
    assert [r for _, _, r in state["log"] if r], "the retry did not resume with a Range request"
    for task, folder in folders.items():
        data = load_task(folder)
        for split in ("train", "dev", "test"):
            rows = _gue_csv(task, split).decode().strip().splitlines()
            assert len(data.splits[split]) == len(rows) - 1
        source = json.loads((folder / "SOURCE.json").read_text())
        assert source["suite"] == "gue" and source["examples"]["train"] == len(data.splits["train"])
    assert not any((out / ".staging").rglob("*.csv"))
    requests = len(state["log"])
    fetch_suite("gue", out=out, tasks=["tf/0"], quiet=True)
    assert len(state["log"]) == requests  # finished tasks are not fetched again


def test_an_html_page_instead_of_the_zip_says_to_download_by_hand(gue_suite, tmp_path):
    gue_suite["files"]["/drive/GUE.zip"] = b"<!DOCTYPE html><html>Google Drive - quota exceeded</html>"
    with pytest.raises(DownloadError, match="--archive"):
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], quiet=True)
    assert not (tmp_path / "gue" / "tf" / "0").exists()
    assert not (tmp_path / "gue" / ".downloads" / "GUE.zip").exists()  # the page is not kept as the archive
    gue_suite["files"]["/drive/GUE.zip"] = _gue_zip()  # the quota recovered: the next run fetches the zip
    assert load_task(fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], quiet=True)["tf/0"]).splits


def test_an_archive_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(DownloadError, match="no such file") as info:
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=tmp_path / "nonexist.zip", quiet=True)
    assert "HTML" not in str(info.value)
    assert not (tmp_path / "gue").exists()  # a refused first download leaves no empty --out folder


def test_an_unreachable_host_says_so_and_points_to_archive(gue_suite, tmp_path, monkeypatch):
    import socket

    from genomix.genome import download as download_module

    with socket.socket() as closed:  # a port nobody listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    entries = yaml.safe_load(suites_module.SUITES_FILE.read_text())
    entries["gue"]["archive"]["url"] = f"http://127.0.0.1:{port}/GUE.zip"
    suites_module.SUITES_FILE.write_text(yaml.safe_dump(entries))
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)
    with pytest.raises(DownloadError, match=f"could not reach 127.0.0.1:{port}") as info:
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], quiet=True)
    assert "--archive" in str(info.value) and ".part" not in str(info.value)


def test_a_given_archive_is_crc_checked_and_must_hold_the_tasks(tmp_path):
    good = tmp_path / "GUE.zip"
    good.write_bytes(_gue_zip(wrapper=""))  # no top folder: the marker finds the root anyway
    folders = fetch_suite("gue", out=tmp_path / "a", tasks=["tf/0"], archive=good, quiet=True)
    assert len(load_task(folders["tf/0"]).splits["test"]) > 0
    with pytest.raises(InputFormatError, match="no files of task mouse/0"):
        fetch_suite("gue", out=tmp_path / "b", tasks=["mouse/0"], archive=good, quiet=True)
    stray = tmp_path / "stray.zip"  # a lone copy of one file above the real tree once hid the whole of it
    with zipfile.ZipFile(io.BytesIO(_gue_zip())) as source, zipfile.ZipFile(stray, "w") as zf:
        for member in source.namelist():
            zf.writestr(member, source.read(member))
        zf.writestr("tf/0/train.csv", _gue_csv("tf/0", "train"))
    folders = fetch_suite("gue", out=tmp_path / "d", tasks=["tf/0"], archive=stray, quiet=True)
    assert len(load_task(folders["tf/0"]).splits["dev"]) > 0
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("GUE/prom/prom_300_all/train.csv", "sequence,label\n" + "ACGT" * 50 + ",1\n")
    raw = bytearray(stored.getvalue())
    raw[raw.index(b"ACGTACGT") + 3] ^= 0x04  # flip one stored byte: the CRC-32 no longer matches
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="CRC-32"):
        fetch_suite("gue", out=tmp_path / "c", tasks=["prom/prom_300_all"], archive=bad, quiet=True)


def _fna(task: str, split: str) -> bytes:
    """NT-style labelled FASTA (``>name|label``, sequence wrapped at 60) from real GUE rows."""
    lines = _gue_csv(task, split).decode().strip().splitlines()[1:]
    out = []
    for i, row in enumerate(lines):
        seq, label = row.split(",")
        out.append(f">{task.replace('/', '_')}_{split}_{i}|{label}")
        out.extend(seq[j:j + 60] for j in range(0, len(seq), 60))
    return ("\n".join(out) + "\n").encode()


def _serve_nt(state, url, task, source_task, corrupt: str | None = None):
    for split in ("train", "test"):
        body = _fna(source_task, split)
        path = f"/datasets/{NT.hub_dataset}/resolve/{NT.revision}/{task}/{split}.fna"
        state["files"][path] = body + (b"ACGT\n" if split == corrupt else b"")
        state["heads"][path] = {"X-Linked-Etag": f'"{hashlib.sha256(body).hexdigest()}"',
                                "X-Linked-Size": str(len(body))}


def test_nt_files_are_verified_against_the_hub_checksum_and_read_as_labelled_fasta(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("HF_ENDPOINT", url)
    _serve_nt(state, url, "H3", "tf/0")
    _serve_nt(state, url, "H4", "prom/prom_300_tata", corrupt="test")
    folders = fetch_suite("nt", out=tmp_path / "nt", tasks=["H3"], quiet=True)
    data = load_task(folders["H3"])
    rows = _gue_csv("tf/0", "train").decode().strip().splitlines()[1:]
    assert len(data.splits["train"]) == len(rows) and set(data.splits) == {"train", "test"}
    assert data.splits["train"].labels.tolist() == [int(r.split(",")[1]) for r in rows]
    assert len(data.splits["train"].ids[0]) == len(rows[0].split(",")[0])  # wrapped lines joined
    source = json.loads((folders["H3"] / "SOURCE.json").read_text())
    assert source["revision"] == NT.revision and len(source["files"]["train.fna"]["sha256"]) == 64
    with pytest.raises(ChecksumError):
        fetch_suite("nt", out=tmp_path / "nt", tasks=["H4"], quiet=True)
    assert not (tmp_path / "nt" / "H4").exists() and (tmp_path / "nt" / "H3").is_dir()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_suite("nt", out=tmp_path / "nt", tasks=["enhancers"], quiet=True)


@pytest.mark.parametrize("text, message", [
    (">a|1\nACGT\n>b\nACGT\n", r":3: header '>b' does not end in '\|<label>'"),
    ("ACGT\n>a|1\nACGT\n", ":1: sequence before the first '>' header"),
    (">a|1\nACGT\n>b|0\n\n", ":3: empty sequence"),
    (">a|1\nACGTZZ\n", ":1:"),
])
def test_malformed_labelled_fasta_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "train.fna"
    path.write_text(text)
    with pytest.raises(InputFormatError, match=message):
        read_labelled_fasta(path)


def test_gzipped_labelled_fasta_with_named_labels(tmp_path):
    (tmp_path / "train.fna.gz").write_bytes(gzip.compress(b">x|weak\nACG\nTT\n>y|strong\nGGGA\n"))
    (tmp_path / "test.fna").write_text(">z|strong\nAC\n")
    data = load_task(tmp_path)
    assert data.label_names == ["strong", "weak"]
    assert data.splits["train"].labels.tolist() == [1, 0] and data.splits["test"].labels.tolist() == [0]
    np.testing.assert_array_equal(data.splits["train"].lengths(), [5, 4])


def test_cli_lists_and_downloads(host, tmp_path, monkeypatch, capsys):
    url, state = host
    monkeypatch.setenv("HF_ENDPOINT", url)
    _serve_nt(state, url, "promoter_tata", "prom/prom_300_tata")
    assert main(["tasks", "list", "nt"]) == 0
    assert "promoter_tata" in capsys.readouterr().out
    out = tmp_path / "nt"
    assert main(["tasks", "download", "nt", "--tasks", "promoter_tata", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"promoter_tata\t{out / 'promoter_tata'}"
    assert main(["tasks", "download", "nt", "--tasks", "H5", "--out", str(out)]) == 2
    assert "no task or group 'H5'" in capsys.readouterr().err


GB = known_suites()["genomic_benchmarks"]


def _class_folder_zip(task: str, source_task: str) -> bytes:
    """A GenomicBenchmarks dataset zip (``<task>/<split>/<class>/<id>.txt``) from real GUE rows; GUE's dev
    split is left out, as the suite has train and test only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for split in ("train", "test"):
            for i, row in enumerate(_gue_csv(source_task, split).decode().strip().splitlines()[1:]):
                seq, label = row.split(",")
                zf.writestr(f"{task}/{split}/{('negative', 'positive')[int(label)]}/{i}.txt", seq)
    return buffer.getvalue()


def _serve_zenodo(state, url, zips: dict[str, bytes], md5_of: dict[str, bytes] | None = None):
    """The record listing (Zenodo's API shape) and its files; ``md5_of`` lists other bytes' MD5s."""
    record = GB.zenodo_record
    entries = []
    for key, body in zips.items():
        listed = (md5_of or {}).get(key, body)
        entries.append({"key": key, "size": len(listed), "checksum": f"md5:{hashlib.md5(listed).hexdigest()}",
                        "links": {"self": f"{url}/api/records/{record}/files/{key}/content"}})
        state["files"][f"/api/records/{record}/files/{key}/content"] = body
    state["files"][f"/api/records/{record}"] = json.dumps({"id": record, "files": entries}).encode()


def test_genomic_benchmarks_zips_are_md5_checked_resumed_and_read_as_class_folders(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("ZENODO_ENDPOINT", url)
    _serve_zenodo(state, url, {"human_nontata_promoters_v0.zip": _class_folder_zip("human_nontata_promoters", "tf/0"),
                               "demo_human_or_worm_v0.zip": _class_folder_zip("demo_human_or_worm", "prom/prom_300_tata")})
    out = tmp_path / "gb"
    state["cut"], state["cut_only"] = 1, GB.zenodo_record  # the record listing dies once: a clear error
    with pytest.raises(DownloadError, match="run the same command again"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_nontata_promoters"], quiet=True)
    assert not (out / "human_nontata_promoters").exists()
    state["cut"], state["cut_only"] = 1, "/content"  # then the first zip transfer dies and resumes
    folders = fetch_suite("genomic_benchmarks", out=out, tasks=["human_nontata_promoters", "demo_human_or_worm"],
                          quiet=True)
    assert [r for _, _, r in state["log"] if r], "the retry did not resume with a Range request"
    rows = _gue_csv("tf/0", "train").decode().strip().splitlines()[1:]
    data = load_task(folders["human_nontata_promoters"])
    assert data.label_names == ["negative", "positive"] and set(data.splits) == {"train", "test"}
    assert sorted(data.splits["train"].labels.tolist()) == sorted(int(r.split(",")[1]) for r in rows)
    source = json.loads((folders["human_nontata_promoters"] / "SOURCE.json").read_text())
    assert source["zenodo_record"] == GB.zenodo_record and len(source["md5"]) == 32
    assert not list((out / ".downloads").glob("*.zip"))  # each zip is removed once its task is published
    requests = len(state["log"])
    fetch_suite("genomic_benchmarks", out=out, tasks=["demo_human_or_worm"], quiet=True)
    assert len(state["log"]) == requests  # a finished task is not fetched again


def test_genomic_benchmarks_bad_checksum_missing_file_and_wrong_layout(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("ZENODO_ENDPOINT", url)
    good = _class_folder_zip("human_ocr_ensembl", "tf/0")
    flat = io.BytesIO()
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("human_enhancers_cohn/train.csv", "sequence,label\nACGT,1\n")
    _serve_zenodo(state, url, {"human_ocr_ensembl_v0.zip": good, "human_enhancers_cohn_v0.zip": flat.getvalue()},
                  md5_of={"human_ocr_ensembl_v0.zip": good[:-1] + bytes([good[-1] ^ 1])})
    out = tmp_path / "gb"
    with pytest.raises(ChecksumError, match="md5"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_ocr_ensembl"], quiet=True)
    assert not (out / "human_ocr_ensembl").exists() and not list((out / ".downloads").glob("*.part"))
    with pytest.raises(InputFormatError, match="class folders"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_enhancers_cohn"], quiet=True)
    assert not (out / "human_enhancers_cohn").exists()
    with pytest.raises(DownloadError, match="has no file drosophila_enhancers_stark_v0.zip"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["drosophila_enhancers_stark"], quiet=True)
    with pytest.raises(ConfigError, match="--archive does not apply"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_ocr_ensembl"], archive=tmp_path / "x.zip")


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    """A zip of ``entries`` as named (``..`` and all); ``links`` are added as symbolic-link members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries.items():
            zf.writestr(zipfile.ZipInfo(name), body)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK: what `zip -y` stores for a symlink
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _task_like_files(out: Path) -> list[Path]:
    """What a tool looking for tasks in ``out`` (as pipelines/finetune_gue.py does) would find besides the
    published tasks: split files one or two folders down."""
    return [p for pattern in ("*/train.*", "*/*/train.*", "*/train") for p in out.glob(pattern)
            if not (p.parent / "SOURCE.json").exists()]


def test_a_symlink_member_is_refused_and_nothing_is_published(tmp_path):
    archive = tmp_path / "GUE.zip"
    archive.write_bytes(_zip({"GUE/tf/0/dev.csv": _gue_csv("tf/0", "dev")}, links=("GUE/tf/0/train.csv",)))
    with pytest.raises(InputFormatError, match="symbolic link"):
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=archive, quiet=True)
    assert not (tmp_path / "gue" / "tf").exists() and not list((tmp_path / "gue").rglob("*.csv"))


def test_class_folder_zips_unpack_only_plain_names_inside_the_task(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("ZENODO_ENDPOINT", url)
    rows = [r.split(",") for r in _gue_csv("tf/0", "dev").decode().strip().splitlines()[1:30]]
    entries = {f"../../h/{split}/{('negative', 'positive')[int(y)]}/{i}.txt": s.encode()
               for split in ("train", "test") for i, (s, y) in enumerate(rows)}
    entries["__MACOSX/h/train/positive/._0.txt"] = b"\x00\x05\x16\x07 AppleDouble"  # macOS zip litter: skipped
    entries["/abs/h/train/.DS_Store/1.txt"] = b"ACGT"
    escaping = dict(entries, **{"h/train/positive\\..\\..\\..\\evil/0.txt": b"ACGT"})  # a path on Windows
    twice = dict(entries, **{"other/train/positive/0.txt": b"ACGT"})
    stray = dict(entries, **{"elsewhere/train/positive/stray.txt": b"ACGT"})  # would join the train split
    _serve_zenodo(state, url, {"human_ocr_ensembl_v0.zip": _zip(entries),
                               "human_enhancers_cohn_v0.zip": _zip(escaping),
                               "human_enhancers_ensembl_v0.zip": _zip(twice),
                               "dummy_mouse_enhancers_ensembl_v0.zip": _zip(stray)})
    out = tmp_path / "deep" / "gb"
    data = load_task(fetch_suite("genomic_benchmarks", out=out, tasks=["human_ocr_ensembl"], quiet=True)["human_ocr_ensembl"])
    assert data.label_names == ["negative", "positive"] and len(data.splits["train"]) == len(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"] and sorted(p.name for p in out.iterdir()) == [
        ".downloads", "human_ocr_ensembl"]  # no empty .staging left behind
    with pytest.raises(InputFormatError, match="not a class folder entry"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_enhancers_cohn"], quiet=True)
    with pytest.raises(InputFormatError, match="are both train/positive/0.txt"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["human_enhancers_ensembl"], quiet=True)
    with pytest.raises(InputFormatError, match=r"class folders under more than one top folder \(members "
                                               r"'\.\./\.\./h/train/\w+/0\.txt', 'elsewhere/train/positive/stray"):
        fetch_suite("genomic_benchmarks", out=out, tasks=["dummy_mouse_enhancers_ensembl"], quiet=True)
    assert not list(out.glob("human_enhancers_*")) and not list(out.glob("dummy_*"))
    assert not (out / ".staging").exists()


def test_an_encrypted_member_is_refused_in_one_line(tmp_path):
    """zipfile raises RuntimeError for a member with the encryption flag; that is an unusable archive, said so."""
    body = _zip({"GUE/tf/0/train.csv": _gue_csv("tf/0", "dev"), "GUE/tf/0/dev.csv": _gue_csv("tf/0", "dev"),
                 "GUE/tf/0/test.csv": _gue_csv("tf/0", "dev")})
    flagged = bytearray(body)
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # set bit 0 (encrypted) of every general-purpose flag
        at = flagged.find(header)
        while at >= 0:
            flag = at + (6 if header == b"PK\x03\x04" else 8)
            flagged[flag] |= 1
            at = flagged.find(header, at + 4)
    archive = tmp_path / "GUE.zip"
    archive.write_bytes(bytes(flagged))
    with pytest.raises(InputFormatError, match=r"member GUE/tf/0/\w+\.csv cannot be read \(.*encrypted.*\); "
                                               r"unpack the archive with its password"):
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=archive, quiet=True)


def test_ctrl_c_while_unpacking_leaves_nothing_that_looks_like_a_task(gue_suite, tmp_path, monkeypatch):
    gue_suite["files"]["/drive/GUE.zip"] = _gue_zip()
    real_copy, calls = suites_module.shutil.copyfileobj, []

    def interrupted_copy(src, dst, length=0):
        calls.append(1)
        if len(calls) == 2:  # the second file of the first task: its first file is already written
            dst.write(src.read(100))
            raise KeyboardInterrupt
        real_copy(src, dst, length)

    monkeypatch.setattr(suites_module.shutil, "copyfileobj", interrupted_copy)
    out = tmp_path / "gue"
    with pytest.raises(KeyboardInterrupt):
        fetch_suite("gue", out=out, tasks=["tf/0"], quiet=True)
    assert not (out / "tf").exists() and not list(out.rglob("*.csv")) and not _task_like_files(out)
    monkeypatch.setattr(suites_module.shutil, "copyfileobj", real_copy)
    requests = len(gue_suite["log"])
    assert len(load_task(fetch_suite("gue", out=out, tasks=["tf/0"], quiet=True)["tf/0"]).splits) == 3
    assert len(gue_suite["log"]) == requests  # the downloaded zip was reused


def test_an_interrupted_hub_task_leaves_no_split_file_where_tasks_are_looked_for(host, tmp_path, monkeypatch):
    url, state = host
    monkeypatch.setenv("HF_ENDPOINT", url)
    _serve_nt(state, url, "H3", "tf/0")
    del state["files"][f"/datasets/{NT.hub_dataset}/resolve/{NT.revision}/H3/test.fna"]  # train comes, test fails
    out = tmp_path / "nt"
    with pytest.raises(DownloadError):
        fetch_suite("nt", out=out, tasks=["H3"], quiet=True)
    assert list(out.rglob("train.fna")) and not _task_like_files(out)  # kept for the next run, but out of the way


@pytest.mark.parametrize("damage", ["crc", "deflate", "directory"])
def test_a_corrupt_downloaded_archive_is_removed_and_fetched_again(gue_suite, tmp_path, damage):
    good = _gue_zip(tasks=("tf/0",))
    raw = bytearray(good)
    if damage == "directory":
        raw[raw.index(b"PK\x01\x02") + 2] ^= 0xFF  # the member list's first entry: unreadable
    else:
        start = raw.index(b"GUE/tf/0/train.csv") + len("GUE/tf/0/train.csv")
        raw[start + (50 if damage == "deflate" else 5000): start + 5040] = bytes(5040 - (50 if damage == "deflate" else 5000))
    gue_suite["files"]["/drive/GUE.zip"] = bytes(raw)
    out = tmp_path / "gue"
    with pytest.raises(ChecksumError, match="download was removed"):
        fetch_suite("gue", out=out, tasks=["tf/0"], quiet=True)
    assert not (out / ".downloads" / "GUE.zip").exists() and not (out / "tf").exists()
    gue_suite["files"]["/drive/GUE.zip"] = good
    assert len(load_task(fetch_suite("gue", out=out, tasks=["tf/0"], quiet=True)["tf/0"]).splits) == 3


def test_a_given_corrupt_archive_is_kept_and_named(tmp_path):
    raw = bytearray(_gue_zip(tasks=("tf/0",)))
    start = raw.index(b"GUE/tf/0/train.csv") + len("GUE/tf/0/train.csv")
    raw[start + 50: start + 90] = bytes(40)
    archive = tmp_path / "GUE.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match=r"GUE\.zip: member GUE/tf/0/train\.csv .*download it again"):
        fetch_suite("gue", out=tmp_path / "gue", tasks=["tf/0"], archive=archive, quiet=True)
    assert archive.exists()  # the user's file is not ours to delete


def test_too_little_space_or_a_full_disk_stops_in_one_line_leaving_nothing(tmp_path, monkeypatch):
    import collections
    import errno

    archive = tmp_path / "GUE.zip"
    archive.write_bytes(_gue_zip(tasks=("tf/0",)))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(suites_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskSpaceError, match=r"GUE.zip: its \d+ member\(s\) to unpack need at least [\d,]+ bytes, "
                                             r"but .* has 1,000 free; free some space"):
        fetch_suite("gue", out=tmp_path / "a", tasks=["tf/0"], archive=archive, quiet=True)
    assert not list((tmp_path / "a").rglob("*.csv"))
    monkeypatch.undo()

    def full_disk(src, dst, length=0):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(suites_module.shutil, "copyfileobj", full_disk)
    with pytest.raises(DownloadError, match="No space left on device; free some space"):
        fetch_suite("gue", out=tmp_path / "b", tasks=["tf/0"], archive=archive, quiet=True)
    assert not (tmp_path / "b" / "tf").exists() and not (tmp_path / "b" / ".staging").exists()


def test_an_out_folder_under_a_file_or_a_foreign_task_folder_is_refused(tmp_path, capsys):
    archive = tmp_path / "GUE.zip"
    archive.write_bytes(_gue_zip(tasks=("tf/0",)))
    (tmp_path / "file").write_text("not a folder")
    assert main(["tasks", "download", "gue", "--tasks", "tf/0", "--out", str(tmp_path / "file" / "gue"),
                 "--archive", str(archive), "--quiet"]) == 2
    assert "file is a file, not a folder; choose another --out" in capsys.readouterr().err
    out = tmp_path / "gue"
    (out / "tf" / "0").mkdir(parents=True)  # empty: as good as missing
    (out / "tf" / "1").mkdir()
    (out / "tf" / "1" / "train.csv").write_text("sequence,label\nACGT,0\n")  # half a task unpacked by hand
    assert (fetch_suite("gue", out=out, tasks=["tf/0"], archive=archive, quiet=True)["tf/0"] / "SOURCE.json").exists()
    assert (out / "tf" / "1" / "train.csv").exists()  # another task's folder is not touched
    with pytest.raises(InputFormatError, match="no SOURCE.json"):
        fetch_suite("gue", out=out, tasks=["tf/1"], archive=archive, quiet=True)


def test_the_downloaded_archive_is_kept_until_every_task_is_unpacked(gue_suite, tmp_path):
    entries = yaml.safe_load(suites_module.SUITES_FILE.read_text())
    entries["gue"]["tasks"] = list(GUE_TASKS)  # a two-task suite, so that fetching all of it is quick
    suites_module.SUITES_FILE.write_text(yaml.safe_dump(entries))
    gue_suite["files"]["/drive/GUE.zip"] = _gue_zip()
    out = tmp_path / "gue"
    fetch_suite("gue", out=out, tasks=[GUE_TASKS[0]], quiet=True)
    assert (out / ".downloads" / "GUE.zip").exists()  # the other task will come from it
    requests = len(gue_suite["log"])
    fetch_suite("gue", out=out, quiet=True)
    assert len(gue_suite["log"]) == requests and not (out / ".downloads" / "GUE.zip").exists()


def test_a_task_published_meanwhile_by_another_run_is_kept(tmp_path):
    staging, dest = tmp_path / "staging", tmp_path / "out" / "tf" / "0"
    for folder, label in ((staging, "0"), (dest, "1")):
        folder.mkdir(parents=True)
        (folder / "train.csv").write_text(f"sequence,label\nACGT,0\nACGA,1\nACGG,{label}\n")
    (dest / "SOURCE.json").write_text("{}")
    suites_module._publish(staging, dest, "tf/0", {"suite": "gue"}, ("train.csv",))
    assert (dest / "SOURCE.json").read_text() == "{}"
