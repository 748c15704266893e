"""Downloads against a local HTTP server: resume with Range after an interruption, verification."""
from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
from download_server import MD5, PAYLOAD, SHA

from genomix.cli import main
from genomix.errors import ChecksumError, DownloadError
from genomix.genome import GenomeSpec, open_store, prepare_genome
from genomix.genome.download import digest_from_manifest, download, fetch_text
from genomix.genome.registry import fetch_genome



def test_a_file_changed_on_the_server_between_runs_is_fetched_whole_not_spliced(server, tmp_path: Path):
    """The resume asks for the rest only of the version it began (If-Range with its ETag): after the file changed,
    the server sends all of the new one, which verifies, where appending its tail to the old head would not."""
    url, state = server
    state.update(etag='"v1"', cut=1)
    with pytest.raises(DownloadError, match="resume"):
        download(f"{url}/file", tmp_path / "f.bin", retries=0, quiet=True)
    assert 0 < (tmp_path / "f.bin.part").stat().st_size < len(PAYLOAD)
    changed = PAYLOAD[::-1]
    state.update(etag='"v2"', payload=changed)
    out = download(f"{url}/file", tmp_path / "f.bin", sha256=hashlib.sha256(changed).hexdigest(), quiet=True)
    assert out.read_bytes() == changed and state["if_range"][-1] == '"v1"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no part file, no validator left


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
    """The error names the URL, the expected and the actual digest, and says the download is gone (a corrupt part
    file cannot be repaired by resuming it), not to delete a file that no longer exists."""
    url, _ = server
    dest = tmp_path / "f.bin"
    with pytest.raises(ChecksumError, match=rf"^{url}/file: sha256 {SHA} does not match the expected 0+; the "
                                            "download was removed: run the same command again"):
        download(f"{url}/file", dest, sha256="0" * 64, quiet=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ChecksumError, match=r"size 1,048,576 bytes, expected 5"):
        download(f"{url}/file", dest, size=5, quiet=True)


def test_http_errors(server, tmp_path: Path):
    url, state = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing", tmp_path / "m.bin", quiet=True)
    # a manifest that is not there is a wrong address, not a network problem; a server error is worth a retry
    with pytest.raises(DownloadError, match=r"missing/md5sum.txt: HTTP 404 Not Found; the server has nothing at "
                                            r"that address: check the URL \(it may have moved\), or run the same"):
        fetch_text(f"{url}/missing/md5sum.txt")
    state["fail"] = 1
    with pytest.raises(DownloadError, match=r"HTTP 500 .*; the server had a problem: try again later, or run"):
        fetch_text(f"{url}/file")


def test_md5_manifest_parsing():
    manifest = f"{MD5}  hg38.fa.gz\nffffffffffffffffffffffffffffffff  hg38.2bit\n"
    assert digest_from_manifest(manifest, "hg38.fa.gz") == MD5
    assert digest_from_manifest(manifest, "mm10.fa.gz") is None


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


def test_a_cached_or_hand_placed_genome_is_checked_against_its_md5(server, tmp_path: Path, caplog):
    """The MD5 a download was verified against is kept beside it and checks the cached file again without the
    network; a file put in place by hand is checked against the manifest, or used with a warning when the
    manifest cannot be fetched."""
    import gzip

    url, state = server
    fasta = gzip.compress(b">chrA\nACGT\n")
    state["extra"] = {"/toy.fa.gz": fasta, "/md5sum.txt": f"{hashlib.md5(fasta).hexdigest()}  toy.fa.gz\n".encode()}
    spec = GenomeSpec(name="toy", url=f"{url}/toy.fa.gz", md5_manifest=f"{url}/md5sum.txt")
    path = fetch_genome(spec, tmp_path, quiet=True)
    assert (tmp_path / "downloads" / "toy" / "toy.fa.gz.md5").read_text().split()[0] == hashlib.md5(fasta).hexdigest()
    requests = len(state["requests"])
    path.write_bytes(fasta[:-1] + b"\1")  # corrupted in the cache (gzip ends in a zero byte here)
    with pytest.raises(ChecksumError, match="md5"):
        fetch_genome(spec, tmp_path, quiet=True)
    assert len(state["requests"]) == requests  # checked against the kept MD5, offline
    hand = GenomeSpec(name="hand", url=f"{url}/toy.fa.gz", md5_manifest=f"{url}/md5sum.txt")
    placed = tmp_path / "downloads" / "hand" / "toy.fa.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(fasta + b"more")
    with pytest.raises(ChecksumError, match="md5"):
        fetch_genome(hand, tmp_path, quiet=True)
    offline = GenomeSpec(name="hand", url=f"{url}/toy.fa.gz", md5_manifest=f"{url}/missing/md5sum.txt")
    with caplog.at_level("WARNING"):
        assert fetch_genome(offline, tmp_path, quiet=True) == placed
    assert "was not downloaded by genomix and cannot be verified now" in caplog.text


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


def test_a_416_finishes_a_complete_part_and_restarts_a_longer_one(server, tmp_path: Path):
    """A server answers 416 to a range past the file's end: a part file of exactly the file's size (an earlier
    run stopped while verifying) is finished without a transfer; a longer one (resumable by its validator) is not
    a prefix of the file and, with no checksum to catch it, must not become the download."""
    url, state = server
    (tmp_path / "done.bin.part").write_bytes(PAYLOAD)
    assert download(f"{url}/file", tmp_path / "done.bin", sha256=SHA, quiet=True).read_bytes() == PAYLOAD
    assert state["requests"] == [f"bytes={len(PAYLOAD)}-"]
    state["etag"] = '"v1"'
    (tmp_path / "long.bin.part").write_bytes(PAYLOAD + b"stale tail")
    (tmp_path / "long.bin.part.validator").write_text('"v1"')
    assert download(f"{url}/file", tmp_path / "long.bin", quiet=True).read_bytes() == PAYLOAD
    assert state["requests"][1:] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_redirects_are_followed_with_the_range(server, tmp_path: Path):
    url, state = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    assert download(f"{url}/moved", tmp_path / "f.bin", sha256=SHA, quiet=True).read_bytes() == PAYLOAD
    assert state["requests"] == ["bytes=1000-", "bytes=1000-"]


def test_server_errors_are_retried_then_named_as_such(server, tmp_path: Path, monkeypatch):
    """HTTP 500 is retried; when it persists the error says the server failed (it was reached), not that the
    host could not be reached, and a part file already there is kept for the next run."""
    from genomix.genome import download as download_module

    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)
    url, state = server
    state["fail"] = 1
    assert download(f"{url}/file", tmp_path / "a.bin", md5=MD5, retries=1, quiet=True).read_bytes() == PAYLOAD
    state["fail"] = 2
    (tmp_path / "b.bin.part").write_bytes(PAYLOAD[:10])
    with pytest.raises(DownloadError, match=r"/file: HTTP 500 Internal Server Error; try again later, then run the "
                                            r"same command again to resume from .*b.bin.part \(10 bytes kept\)"):
        download(f"{url}/file", tmp_path / "b.bin", md5=MD5, retries=1, quiet=True)
    assert (tmp_path / "b.bin.part").read_bytes() == PAYLOAD[:10] and not (tmp_path / "b.bin").exists()


def test_ctrl_c_keeps_the_part_file_and_says_how_to_resume(server, tmp_path: Path, monkeypatch, capsys):
    """Ctrl-C mid-transfer: the bytes so far stay in the part file, nothing is under the final name, the command
    says so (not 'nothing partial was kept') and the next run resumes from there."""
    import http.client

    url, state = server
    spec = GenomeSpec(name="toy", url=f"{url}/file", sha256=SHA)
    monkeypatch.setattr("genomix.cli.genome.known_genomes", lambda: {"toy": spec})
    real_read = http.client.HTTPResponse.read1

    def interrupted_read(self, amt=-1):
        if self.status in (200, 206) and self.length is not None and self.length < len(PAYLOAD) // 2:
            raise KeyboardInterrupt
        return real_read(self, amt)

    monkeypatch.setattr(http.client.HTTPResponse, "read1", interrupted_read)
    monkeypatch.setattr("genomix.genome.download.CHUNK", 1 << 16)
    cache = tmp_path / "cache"
    assert main(["genome", "download", "--genome", "toy", "--cache-dir", str(cache), "--quiet"]) == 130
    part = cache / "downloads" / "toy" / "file.part"
    have = part.stat().st_size
    assert 0 < have < len(PAYLOAD) and not (cache / "downloads" / "toy" / "file").exists()
    assert capsys.readouterr().err.strip() == (f"genomix genome: interrupted; {url}/file: run the same command again "
                                               f"to resume from {part} ({have:,} bytes kept)")
    monkeypatch.setattr(http.client.HTTPResponse, "read1", real_read)
    assert main(["genome", "download", "--genome", "toy", "--cache-dir", str(cache), "--quiet"]) == 0
    assert (cache / "downloads" / "toy" / "file").read_bytes() == PAYLOAD and state["requests"][-1] == f"bytes={have}-"


def test_a_folder_in_the_way_is_refused_in_one_line(server, tmp_path: Path, monkeypatch, capsys):
    """A folder where the file goes is not returned as 'the download'; a cache path that is a file is refused
    with the path and the reason instead of an OS traceback."""
    url, state = server
    (tmp_path / "f.bin").mkdir()
    with pytest.raises(DownloadError, match="f.bin is a folder, not a file"):
        download(f"{url}/file", tmp_path / "f.bin", quiet=True)
    (tmp_path / "cache").write_text("not a folder")
    spec = GenomeSpec(name="toy", url=f"{url}/file")
    monkeypatch.setattr("genomix.cli.genome.known_genomes", lambda: {"toy": spec})
    assert main(["genome", "download", "--genome", "toy", "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'cache'} is a file, not a folder" in err and "Traceback" not in err
    assert state["requests"] == []


def test_a_local_write_error_is_named_and_not_retried(server, tmp_path: Path, monkeypatch):
    """A full disk is no network failure: no retries, no 'could not reach', and the message names the file."""
    import errno

    from genomix.genome import download as download_module

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "open", no_space, raising=False)
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)
    url, state = server
    with pytest.raises(DownloadError, match=r"cannot write .*f.bin.part: No space left on device; free some space"):
        download(f"{url}/file", tmp_path / "f.bin", retries=2, quiet=True)
    assert len(state["requests"]) == 1


def test_a_download_without_checksum_says_it_cannot_be_verified(server, tmp_path: Path, caplog):
    url, _ = server
    with caplog.at_level("WARNING", logger="genomix.genome.download"):
        download(f"{url}/file", tmp_path / "f.bin", quiet=True)
    assert f"no checksum is known for {url}/file: the download cannot be verified" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomix.genome.download"):
        download(f"{url}/file", tmp_path / "g.bin", md5=MD5, quiet=True)
    assert caplog.text == ""


def test_a_reusable_store_needs_no_download(server, tmp_path: Path, monkeypatch):
    """`genome prepare` with the store already built reuses it without fetching the FASTA again (deleted from the
    cache to save space, say): only the manifest-less, checksum-pinned FASTA of a build is downloaded."""
    import gzip

    url, state = server
    fasta = gzip.compress(b">chrA\nACGTNNacgt\n")
    state["extra"] = {"/toy.fa.gz": fasta}
    spec = GenomeSpec(name="toy", url=f"{url}/toy.fa.gz", md5=hashlib.md5(fasta).hexdigest())
    monkeypatch.setattr("genomix.genome.registry.known_genomes", lambda: {"toy": spec})
    store = prepare_genome("toy", cache=tmp_path, quiet=True)
    (tmp_path / "downloads" / "toy" / "toy.fa.gz").unlink()
    assert prepare_genome("toy", cache=tmp_path, quiet=True) == store
    assert len(state["requests"]) == 1


@pytest.mark.parametrize("compress", ["gzip", "bgzip"])
def test_real_genomes_served_over_http_are_stored(tmp_path: Path, compress: str, monkeypatch):
    """A real gzip FASTA (and its bgzip copy) from a plain static server (no Range support) downloads, verifies
    against an md5sum.txt manifest and becomes a store with the original's sequence."""
    import functools
    import gzip

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes" / "genome_celegans_1pct.fa.gz"
    if not source.is_file():
        pytest.skip(f"{source} is not here")
    www = tmp_path / "www"
    www.mkdir()
    served = www / "ce.fa.gz"
    if compress == "gzip":
        served.write_bytes(source.read_bytes())
    else:
        pysam = pytest.importorskip("pysam")
        (tmp_path / "ce.fa").write_bytes(gzip.decompress(source.read_bytes()))
        pysam.tabix_compress(str(tmp_path / "ce.fa"), str(served))
    (www / "md5sum.txt").write_text(f"{hashlib.md5(served.read_bytes()).hexdigest()}  ce.fa.gz\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    monkeypatch.setattr(httpd.RequestHandlerClass, "log_message", lambda *args: None, raising=False)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        spec = GenomeSpec(name="ce", url=f"{base}/ce.fa.gz", md5_manifest=f"{base}/md5sum.txt")
        monkeypatch.setattr("genomix.genome.registry.known_genomes", lambda: {"ce": spec})
        store = open_store(prepare_genome("ce", cache=tmp_path / "cache", quiet=True))
    finally:
        httpd.shutdown()
        httpd.server_close()
    records = {}
    for chunk in gzip.decompress(source.read_bytes()).decode().split(">")[1:]:
        header, _, sequence = chunk.partition("\n")
        records[header.split()[0]] = sequence.replace("\n", "")
    assert dict(store.lengths) == {name: len(sequence) for name, sequence in records.items()}
    name = next(iter(records))
    assert store.sequence(name) == records[name]


def test_processes_downloading_one_file_take_turns(server, tmp_path: Path):
    """Two downloads of one file at once (the ranks of a multi-GPU run preparing one genome): one transfers, the
    other waits and then finds the verified file, instead of both appending to one part file."""
    url, state = server
    state["delay"] = 0.3
    results = []
    threads = [threading.Thread(target=lambda: results.append(download(f"{url}/file", tmp_path / "f.bin", sha256=SHA,
                                                                        quiet=True))) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "f.bin"] * 2 and results[0].read_bytes() == PAYLOAD
    assert state["requests"] == [None]
