"""Random access into a genome store: coordinates, strands, padding, errors, worker safety."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from genomix.errors import InputFormatError, RangeError, UnknownContigError
from genomix.genome import open_store, write_store
from genomix.tokenizer import N_ID, encode, reverse_complement

SEQS = {"chr1": "NNNNacgtACGTRYacgtNNNNGGCCttaa", "chrM": "ACGTTGCA" * 40}


@pytest.fixture()
def store(tmp_path: Path):
    fasta = tmp_path / "toy.fa"
    fasta.write_text("".join(f">{k} test\n" + "\n".join(v[i:i + 7] for i in range(0, len(v), 7)) + "\n"
                             for k, v in SEQS.items()))
    return open_store(write_store(fasta, tmp_path / "toy.h5", chunk_size=16))


def test_fetch_returns_ids_half_open(store):
    assert store.contigs == ["chr1", "chrM"] and store.lengths == {k: len(v) for k, v in SEQS.items()}
    ids = store.fetch("chr1", 4, 14)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, encode(SEQS["chr1"][4:14]))
    assert store.fetch("chr1", 3, 3).size == 0
    # reads across chunk boundaries (chunk size 16 here)
    np.testing.assert_array_equal(store.fetch("chrM", 10, 300), encode(SEQS["chrM"][10:300]))


def test_minus_strand_is_reverse_complement(store):
    plus = store.fetch("chr1", 0, 30)
    minus = store.fetch("chr1", 0, 30, strand="-")
    np.testing.assert_array_equal(minus, reverse_complement(plus))
    np.testing.assert_array_equal(reverse_complement(minus), plus)  # RC of RC is identity
    assert (minus[plus[::-1] == N_ID] == N_ID).all()  # complement of N is N
    text = store.fetch("chr1", 4, 14, strand="-", as_bytes=True).tobytes()
    assert text == b"acgtACGTRY"[::-1].translate(bytes.maketrans(b"ACGTacgtRY", b"TGCAtgcaYR"))


def test_as_bytes_preserves_soft_mask(store):
    assert store.fetch("chr1", 4, 12, as_bytes=True).tobytes() == b"acgtACGT"
    assert store.sequence("chr1") == SEQS["chr1"]


def test_out_of_range_errors_unless_padding(store):
    with pytest.raises(RangeError, match=r"chr1:25-40 is outside the contig \(length 30\).*pad=True"):
        store.fetch("chr1", 25, 40)
    with pytest.raises(RangeError):
        store.fetch("chr1", -1, 5)
    padded = store.fetch("chr1", 26, 34, pad=True)
    np.testing.assert_array_equal(padded, np.r_[encode("ttaa"), [N_ID] * 4])
    left = store.fetch("chr1", -3, 2, pad=True, as_bytes=True)
    assert left.tobytes() == b"NNNNN"


def test_unknown_contig(store):
    with pytest.raises(UnknownContigError, match=r"unknown contig 'chr2' .*chr1, chrM"):
        store.fetch("chr2", 0, 10)


def test_n_index(store):
    np.testing.assert_array_equal(store.n_runs("chr1"), [[0, 4], [12, 14], [18, 22]])
    assert store.n_count("chr1", 2, 20) == 2 + 2 + 2
    assert store.n_fraction("chrM") == 0.0
    assert store.n_fraction("chr1") == pytest.approx(10 / 30)


def test_not_a_store(tmp_path: Path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputFormatError, match="not a genomix genome store"):
        open_store(bad)
    with pytest.raises(InputFormatError, match="no genome store here"):
        open_store(tmp_path / "missing.h5")


class _Fetch(torch.utils.data.Dataset):
    def __init__(self, store):
        self.store = store

    def __len__(self):
        return 8

    def __getitem__(self, i):
        import os

        return torch.from_numpy(self.store.fetch("chrM", i, i + 50)), os.getpid()


def test_store_is_safe_in_dataloader_workers(store):
    store.fetch("chrM", 0, 5)  # the parent opens its handle first
    assert pickle.loads(pickle.dumps(store))._h5 is None  # handles never travel between processes
    loader = torch.utils.data.DataLoader(_Fetch(store), batch_size=2, num_workers=2)
    batches = list(loader)
    pids = {int(p) for _, pid in batches for p in pid}
    assert len(pids) >= 1 and all(pid != __import__("os").getpid() for pid in pids)
    got = torch.cat([x for x, _ in batches])
    want = torch.stack([torch.from_numpy(encode(SEQS["chrM"][i:i + 50])) for i in range(8)])
    assert torch.equal(got, want)
