"""Downloads against a local HTTP server: resume with Range after an interruption, verification."""
from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest

from genomix.cli import main
from genomix.errors import ChecksumError, DownloadError
from genomix.genome import GenomeSpec, open_store, prepare_genome
from genomix.genome.download import download, md5_from_manifest
from genomix.genome.registry import fetch_genome

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file with Range support; the first ``cut`` requests die half way."""

    server_state: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        state = self.server_state
        state["requests"].append(self.headers.get("Range"))
        if self.path in state.get("extra", {}):
            body = state["extra"][self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path != "/file":
            self.send_error(404)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and state["ranges"]:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state["cut"] > 0:
            state["cut"] -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-transfer
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    state = {"requests": [], "cut": 0, "ranges": True}
    handler = type("H", (_Handler,), {"server_state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_plain_download_verifies(server, tmp_path: Path):
    url, state = server
    out = download(f"{url}/file", tmp_path / "f.bin", sha256=SHA, md5=MD5, size=len(PAYLOAD), quiet=True)
    assert out.read_bytes() == PAYLOAD and state["requests"] == [None]
    download(f"{url}/file", out, sha256=SHA, quiet=True)  # cached: verified, no new request
    assert len(state["requests"]) == 1


def test_interrupted_download_resumes_on_the_next_run(server, tmp_path: Path):
    url, state = server
    state["cut"] = 1
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=r"interrupted after .* run the same command again to resume"):
        download(f"{url}/file", dest, sha256=SHA, retries=0, quiet=True)
    part = tmp_path / "f.bin.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    download(f"{url}/file", dest, sha256=SHA, quiet=True)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert state["requests"] == [None, f"bytes={have}-"]


def test_retries_resume_within_one_call(server, tmp_path: Path):
    url, state = server
    state["cut"] = 2
    dest = download(f"{url}/file", tmp_path / "f.bin", md5=MD5, retries=3, quiet=True)
    assert dest.read_bytes() == PAYLOAD
    assert state["requests"][0] is None and all(r.startswith("bytes=") for r in state["requests"][1:])


def test_server_without_ranges_restarts(server, tmp_path: Path):
    url, state = server
    state["ranges"] = False
    (tmp_path / "f.bin.part").write_bytes(b"garbage that must not be kept")
    dest = download(f"{url}/file", tmp_path / "f.bin", sha256=SHA, quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server, tmp_path: Path):
    url, _ = server
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match=r"sha256 .* does not match the expected 0+"):
        download(f"{url}/file", dest, sha256="0" * 64, quiet=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ChecksumError, match=r"size 1,048,576 bytes, expected 5"):
        download(f"{url}/file", dest, size=5, quiet=True)


def test_http_errors(server, tmp_path: Path):
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing", tmp_path / "m.bin", quiet=True)


def test_md5_manifest_parsing():
    manifest = f"{MD5}  hg38.fa.gz\nffffffffffffffffffffffffffffffff  hg38.2bit\n"
    assert md5_from_manifest(manifest, "hg38.fa.gz") == MD5
    assert md5_from_manifest(manifest, "mm10.fa.gz") is None


def test_named_genome_is_downloaded_verified_against_its_manifest_and_stored(server, tmp_path: Path, monkeypatch):
    import gzip

    url, state = server
    fasta = gzip.compress(b">chrA\nACGTNNacgt\n>chrB\nGGGG\n")
    good = hashlib.md5(fasta).hexdigest()
    state["extra"] = {"/toy.fa.gz": fasta, "/md5sum.txt": f"{good}  toy.fa.gz\n".encode(),
                      "/bad/toy.fa.gz": fasta, "/bad/md5sum.txt": f"{'1' * 32}  toy.fa.gz\n".encode()}
    spec = GenomeSpec(name="toy", url=f"{url}/toy.fa.gz", md5_manifest=f"{url}/md5sum.txt",
                      holdout={"valid": ["chrB"]})
    monkeypatch.setattr("genomix.genome.registry.known_genomes", lambda: {"toy": spec})
    monkeypatch.setattr("genomix.cli.genome.known_genomes", lambda: {"toy": spec})
    assert main(["genome", "download", "--genome", "toy", "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    path = tmp_path / "cache" / "downloads" / "toy" / "toy.fa.gz"
    assert path.read_bytes() == fasta and state["requests"][:2] == [None, None]
    assert fetch_genome(spec, tmp_path / "cache", quiet=True) == path  # cached: no new request
    assert len(state["requests"]) == 2
    store = open_store(prepare_genome("toy", cache=tmp_path / "cache", quiet=True))
    assert store.attrs["source"] == spec.url and store.sequence("chrA") == "ACGTNNacgt"
    assert store.split_intervals("valid") == [("chrB", 0, 4)]
    bad = GenomeSpec(name="bad", url=f"{url}/bad/toy.fa.gz", md5_manifest=f"{url}/bad/md5sum.txt")
    with pytest.raises(ChecksumError, match="md5"):
        fetch_genome(bad, tmp_path / "cache", quiet=True)
    assert not any((tmp_path / "cache" / "downloads" / "bad").iterdir())


def test_an_unreachable_host_is_named_and_leaves_no_part_file(tmp_path: Path, monkeypatch):
    """Nothing downloaded (the connection refused): the message names the host and says where a copy fetched
    elsewhere goes, instead of offering to resume from a part file that does not exist."""
    import socket

    from genomix.genome import download as download_module

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match=f"could not reach 127.0.0.1:{port} .*put it at {dest}"):
        download(f"http://127.0.0.1:{port}/file", dest, retries=1, quiet=True)
    assert list(tmp_path.iterdir()) == []
