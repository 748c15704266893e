"""Resuming without a validator, the retry from byte 0 of a resumed download that fails its check, and the
trust-on-first-use record of files published without a checksum; against the local HTTP server (the ``server``
fixture, :mod:`download_server`), whose ``etag`` None is a server that sends neither ETag nor Last-Modified."""
from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
from pathlib import Path

import pytest
from download_server import PAYLOAD, SHA

from genomix.errors import ChecksumError, DownloadError, InputFormatError
from genomix.genome import GenomeSpec, open_store, prepare_genome
from genomix.genome import download as download_module
from genomix.genome.download import digest_from_manifest, download
from genomix.genome.registry import download_pinned, fetch_genome

CHANGED = PAYLOAD[::-1]  # the file after it changed on the server: same size, other bytes
CHANGED_SHA = hashlib.sha256(CHANGED).hexdigest()


def _ctrl_c_after_one_block(monkeypatch) -> None:
    """Make the next transfer stop with Ctrl-C after its first block (up to 64 KiB: what had arrived)."""
    real_read = http.client.HTTPResponse.read1
    blocks = []

    def read1(self, amt=-1):
        blocks.append(amt)
        if len(blocks) == 2:
            raise KeyboardInterrupt
        return real_read(self, amt)

    monkeypatch.setattr(download_module, "CHUNK", 1 << 16)
    monkeypatch.setattr(http.client.HTTPResponse, "read1", read1)


def test_without_validator_or_checksum_a_download_starts_over_instead_of_splicing(server, tmp_path: Path,
                                                                                  monkeypatch, caplog):
    """Nothing could tell that the file changed between two requests, so the bytes of an interrupted download
    are not resumed: Ctrl-C says the next run starts from byte 0 and why, and that run fetches the changed file
    whole (with a notice) where appending its tail to the old head would splice two versions."""
    url, state = server
    dest = tmp_path / "f.bin"
    with monkeypatch.context() as patched:
        _ctrl_c_after_one_block(patched)
        with pytest.raises(KeyboardInterrupt, match=r"download it from byte 0 \(the [\d,]+ bytes in .*f.bin.part are "
                                                    r"not resumed: the server names no version of the file"):
            download(f"{url}/file", dest, quiet=True)
    have = (tmp_path / "f.bin.part").stat().st_size
    assert 0 < have < len(PAYLOAD) and (tmp_path / "f.bin.part").read_bytes() == PAYLOAD[:have]
    state["payload"] = CHANGED
    with caplog.at_level("WARNING", logger="genomix.genome.download"):
        assert download(f"{url}/file", dest, quiet=True).read_bytes() == CHANGED
    assert state["requests"] == [None, None]
    assert f"downloading from byte 0 instead of resuming the {have:,} bytes" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    state["cut"] = 1  # within one call too: the retry after a dropped connection starts over
    assert download(f"{url}/file", tmp_path / "g.bin", retries=1, quiet=True).read_bytes() == CHANGED
    assert state["requests"][2:] == [None, None]


def test_with_a_checksum_a_resume_that_spliced_a_changed_file_is_downloaded_again_from_byte_0(server, tmp_path: Path,
                                                                                              caplog):
    """Without a validator but with a checksum the part file is resumed (the check catches a splice): the file
    changed in between, so the joined file fails its check and is fetched once more, whole, which passes."""
    url, state = server
    state["cut"] = 1
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run the same command again to resume from"):
        download(f"{url}/file", dest, sha256=CHANGED_SHA, retries=0, quiet=True)
    have = (tmp_path / "f.bin.part").stat().st_size
    state["payload"] = CHANGED
    with caplog.at_level("WARNING", logger="genomix.genome.download"):
        assert download(f"{url}/file", dest, sha256=CHANGED_SHA, quiet=True).read_bytes() == CHANGED
    assert state["requests"] == [None, f"bytes={have}-", None]
    assert "after resuming an earlier transfer, which may have joined two versions" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_server_that_ignores_if_range_is_caught_by_the_version_it_sends(server, tmp_path: Path, caplog):
    """The file changed, and the server sends the rest of the new version despite If-Range: with no checksum to
    catch the splice, its ETag (not the one the part file was started from) must, and the file is fetched whole."""
    url, state = server
    state.update(cut=1, etag='"v1"')
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run the same command again to resume from"):
        download(f"{url}/file", dest, retries=0, quiet=True)
    have = (tmp_path / "f.bin.part").stat().st_size
    state.update(payload=CHANGED, etag='"v2"', if_range_honoured=False)
    with caplog.at_level("WARNING", logger="genomix.genome.download"):
        assert download(f"{url}/file", dest, quiet=True).read_bytes() == CHANGED
    assert state["requests"] == [None, f"bytes={have}-", None] and state["if_range"][1] == '"v1"'
    assert 'the server sent the rest of another version of the file ("v2", where' in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_check_failed_after_a_resume_and_again_from_byte_0_says_so(server, tmp_path: Path):
    """A download that fails its check from byte 0 is not retried; one that was resumed is retried once, and the
    error then says it failed both ways; nothing is left either way."""
    url, state = server
    with pytest.raises(ChecksumError, match="run the same command again to download it afresh"):
        download(f"{url}/file", tmp_path / "fresh.bin", sha256=CHANGED_SHA, quiet=True)
    assert state["requests"] == [None]
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    with pytest.raises(ChecksumError, match=rf"/file: sha256 {SHA} does not match the expected {CHANGED_SHA}; the "
                                            "download was removed: it failed both after resuming an earlier transfer "
                                            "and when downloaded again from byte 0"):
        download(f"{url}/file", tmp_path / "f.bin", sha256=CHANGED_SHA, quiet=True)
    assert state["requests"][1:] == ["bytes=1000-", None]
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_on_starting_over_keeps_the_part_file_and_its_own_validator(server, tmp_path: Path, monkeypatch):
    """The file changed on the server (If-Range sends it whole) and the disk is full when the old bytes would be
    replaced: the part file keeps the validator of the version it holds, not the new one's, so that the next run
    again fetches the new version whole instead of appending its tail to the old head."""
    url, state = server
    part = tmp_path / "f.bin.part"
    part.write_bytes(PAYLOAD[:1000])
    (tmp_path / "f.bin.part.validator").write_text('"v1"')
    state.update(etag='"v2"', payload=CHANGED)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(download_module, "open", no_space, raising=False)
        with pytest.raises(DownloadError, match="No space left on device"):
            download(f"{url}/file", tmp_path / "f.bin", quiet=True)
    assert part.read_bytes() == PAYLOAD[:1000] and (tmp_path / "f.bin.part.validator").read_text() == '"v1"'
    assert download(f"{url}/file", tmp_path / "f.bin", quiet=True).read_bytes() == CHANGED
    assert state["if_range"] == ['"v1"', '"v1"']


def test_a_file_without_checksum_is_recorded_on_first_use_and_held_to_it(server, tmp_path: Path, caplog):
    """The first download records size and SHA-256 (``sha256sum -c`` style); a later use checks the cached copy
    offline; a tampered copy is refused, kept, with what to do; a new download must match the record too, until
    the record is deleted to trust a changed source."""
    url, state = server
    dest = tmp_path / "f.bin"
    record = tmp_path / "f.bin.sha256"
    with caplog.at_level("INFO", logger="genomix.genome.registry"):
        assert download_pinned(f"{url}/file", dest, quiet=True).read_bytes() == PAYLOAD
    assert f"no checksum is known for {url}/file: recorded the size and SHA-256 of {dest} in {record}" in caplog.text
    assert digest_from_manifest(record.read_text(), "f.bin", "sha256") == SHA
    assert f"# size {len(PAYLOAD)}\n" in record.read_text()
    assert download_pinned(f"{url}/file", dest, quiet=True) == dest and len(state["requests"]) == 1
    dest.write_bytes(PAYLOAD[:-1] + b"\0")
    with pytest.raises(ChecksumError, match=rf"{dest}: sha256 .* the cached file differs from the copy first "
                                            rf"downloaded from {url}/file, recorded in {record} .* Delete {dest} "
                                            rf"and run the same command again .* delete {record} as well to trust"):
        download_pinned(f"{url}/file", dest, quiet=True)
    assert dest.exists() and len(state["requests"]) == 1  # refused offline, the file left for the user to judge
    dest.unlink()
    state["payload"] = CHANGED
    with pytest.raises(ChecksumError, match=rf"does not match the expected {SHA}.* That checksum is the one recorded "
                                            rf"in {record} .* delete {record} and run the same command again"):
        download_pinned(f"{url}/file", dest, quiet=True)
    record.unlink()
    assert download_pinned(f"{url}/file", dest, quiet=True).read_bytes() == CHANGED
    assert digest_from_manifest(record.read_text(), "f.bin", "sha256") == CHANGED_SHA


def test_a_gzip_file_cut_short_by_a_server_that_sends_no_length_is_not_trusted(server, tmp_path: Path):
    """Without a length, a connection closed early ends the body as if it were whole; with no checksum known, the
    first copy would be recorded and then hold every later download to it. The gzip stream must end first: the
    cut copy is refused (no record, nothing under the final name), the next run downloads it whole."""
    url, state = server
    state.update(payload=gzip.compress(PAYLOAD), length=False, cut=1)
    dest = tmp_path / "g.fa.gz"
    with pytest.raises(DownloadError, match=r"sent no length, and the [\d,]+ bytes received end before their gzip "
                                            r"stream does .*run the same command again"):
        download_pinned(f"{url}/file", dest, quiet=True)
    assert not dest.exists() and not (tmp_path / "g.fa.gz.sha256").exists()
    assert gzip.decompress(download_pinned(f"{url}/file", dest, quiet=True).read_bytes()) == PAYLOAD
    state.update(payload=PAYLOAD, cut=0)  # bytes that are not gzip at all under a .gz name: said so
    with pytest.raises(DownloadError, match="1,048,576 bytes that are not gzip data"):
        download_pinned(f"{url}/file", tmp_path / "other.fa.gz", quiet=True)


def test_an_error_page_or_empty_body_is_never_trusted_on_first_use(server, tmp_path: Path):
    """A proxy's HTML page (or an empty 200) saved as the split BED was recorded as its first copy, so every later
    run failed to parse it and no message said both files had to go: it is refused and nothing is kept."""
    url, state = server
    dest, record = tmp_path / "sequences.bed", tmp_path / "sequences.bed.sha256"
    for body, problem in ((b"\n <!DOCTYPE html><html><body>Sign in</body></html>", "is an HTML page"),
                          (b"", "is empty")):
        state["payload"] = body
        with pytest.raises(DownloadError, match=rf"/file: what the server sent {problem}, not the file; nothing was "
                                                r"kept or recorded"):
            download_pinned(f"{url}/file", dest, quiet=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == []
    state["payload"] = PAYLOAD
    assert download_pinned(f"{url}/file", dest, quiet=True).read_bytes() == PAYLOAD and record.is_file()
    dest.write_bytes(b"<html>cached by an older genomix</html>")  # recorded before the check existed
    record.write_text(record.read_text().replace(SHA, hashlib.sha256(dest.read_bytes()).hexdigest())
                      .replace(f"size {len(PAYLOAD)}", f"size {dest.stat().st_size}"))
    with pytest.raises(DownloadError, match=rf"is an HTML page, not the file .*; delete {dest} and {record}"):
        download_pinned(f"{url}/file", dest, quiet=True)
    placed = tmp_path / "hand.bed"
    placed.write_bytes(b"")
    with pytest.raises(DownloadError, match=r"hand.bed is empty, not the file .* nothing was recorded: replace it"):
        download_pinned(f"{url}/file", placed, quiet=True)
    assert placed.exists() and not (tmp_path / "hand.bed.sha256").exists()


def test_a_copy_without_record_is_recorded_and_a_foreign_record_refused(server, tmp_path: Path):
    """A copy put in place by hand (or by a genomix that kept no record) is trusted on its first use, offline; a
    record genomix cannot read is refused rather than replaced, which would trust the file anew."""
    url, state = server
    dest = tmp_path / "f.bin"
    dest.write_bytes(PAYLOAD)
    assert download_pinned(f"{url}/file", dest, quiet=True) == dest and state["requests"] == []
    assert digest_from_manifest((tmp_path / "f.bin.sha256").read_text(), "f.bin", "sha256") == SHA
    (tmp_path / "f.bin.sha256").write_text(f"{SHA}  f.bin\n")
    with pytest.raises(InputFormatError, match=r"f.bin.sha256: not a record of f.bin as genomix writes it"):
        download_pinned(f"{url}/file", dest, quiet=True)


def test_the_split_bed_and_a_genome_without_checksum_are_recorded_and_checked(server, tmp_path: Path, monkeypatch):
    """`prepare_genome` downloads an entry's split BED (no published checksum) through the record, and checks it
    again on reuse, so a BED changed in the cache stops the run instead of silently giving other splits; a FASTA
    whose manifest lists no checksum is recorded the same way, while one with an MD5 keeps its ``.md5`` record,
    replaced when the file is."""
    url, state = server
    fasta = gzip.compress(b">chrA\nACGTNNacgt\n")
    bed = b"chrA\t0\t6\ttrain\nchrA\t6\t10\tvalid\n"
    state["extra"] = {"/toy.fa.gz": fasta, "/splits.bed": bed, "/md5sum.txt": b"",
                      "/md5/md5sum.txt": f"{hashlib.md5(fasta).hexdigest()}  toy.fa.gz\n".encode(),
                      "/md5/toy.fa.gz": fasta}
    spec = GenomeSpec(name="toy", url=f"{url}/toy.fa.gz", md5_manifest=f"{url}/md5sum.txt",
                      splits_bed=f"{url}/splits.bed")
    monkeypatch.setattr("genomix.genome.registry.known_genomes", lambda: {"toy": spec})
    store = open_store(prepare_genome("toy", cache=tmp_path, quiet=True))
    assert store.split_intervals("valid") == [("chrA", 6, 10)]
    folder = tmp_path / "downloads" / "toy"
    assert digest_from_manifest((folder / "splits.bed.sha256").read_text(), "splits.bed", "sha256") \
        == hashlib.sha256(bed).hexdigest()
    assert digest_from_manifest((folder / "toy.fa.gz.sha256").read_text(), "toy.fa.gz", "sha256") \
        == hashlib.sha256(fasta).hexdigest()
    (folder / "splits.bed").write_bytes(bed.replace(b"\t6\t", b"\t5\t"))
    with pytest.raises(ChecksumError, match="splits.bed: sha256 .* the cached file differs from the copy first"):
        prepare_genome("toy", cache=tmp_path, quiet=True)
    with_md5 = GenomeSpec(name="md5", url=f"{url}/md5/toy.fa.gz", md5_manifest=f"{url}/md5/md5sum.txt")
    path = fetch_genome(with_md5, tmp_path, quiet=True)
    path.with_name("toy.fa.gz.md5").write_text(f"{'0' * 32}  toy.fa.gz\n")  # a record of a copy deleted since
    path.unlink()
    fetch_genome(with_md5, tmp_path, quiet=True)
    assert path.with_name("toy.fa.gz.md5").read_text() == f"{hashlib.md5(fasta).hexdigest()}  toy.fa.gz\n"
    assert not path.with_name("toy.fa.gz.sha256").exists()
