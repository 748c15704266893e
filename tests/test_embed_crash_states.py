"""`embed`'s partial file in every state a run killed outright (kill -9, the OOM killer, a power cut) can leave it:
rows beyond the committed ones, datasets resized without their rows, no record of committed rows, a record ahead of
the rows or rows torn after their commit. A resumed run either ends with the uninterrupted run's output or refuses
in one line, keeping the file; it never continues from rows the file does not vouch for. Both layouts: pooled
vectors (``/embeddings``) and per-token states (``/tokens/<i>``)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from genomix.embed import ROWS_ATTR, START_AGAIN, embed_sequences, fasta_sequences
from genomix.errors import InputFormatError
from genomix.models import build

WINDOW = 2  # sequences committed together: with the kills below, rows 0-1 are committed and row 2 is not


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k").eval()


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("crash") / "seqs.fa"
    path.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 40 + 7 * i))}\n" for i in range(7)))
    return path


def run(model, fasta: Path, out: Path, pooling: str, **options) -> Path:
    return embed_sequences(model, fasta_sequences(fasta), out, pooling=pooling, window=WINDOW, device="cpu",
                           quiet=True, **options)


def rows(path: Path) -> tuple[dict, list]:
    """Everything an embedding file holds: its attrs and its datasets' values, in row order."""
    with h5py.File(path) as h5:
        values = [h5["ids"][()].tolist(), h5["lengths"][()].tolist()]
        if "embeddings" in h5:
            values.append(h5["embeddings"][()].tolist())
        else:
            values.append(sorted(h5["tokens"], key=int))
            values.extend(h5[f"tokens/{name}"][()].tolist() for name in values[-1])
        return dict(h5.attrs), values


def stop_at_fourth_row(monkeypatch) -> None:
    """Stop the run as it adds row 3: rows 0-1 (the first window) are committed, row 2 is written but not."""
    import genomix.embed as embed_module

    real, added = embed_module._Writer.add, []

    def add(self, item, value):
        added.append(item.id)
        if len(added) == 4:
            raise KeyboardInterrupt
        real(self, item, value)

    monkeypatch.setattr(embed_module._Writer, "add", add)


def as_a_kill_left_it(partial: Path, state: str) -> None:
    """Make the partial file (committed rows 0-1, row 2 written beyond them) look as a kill at another moment left
    it."""
    with h5py.File(partial, "a") as h5:
        if state == "resized_without_rows":  # datasets grown for rows whose values never reached the file
            for name in ("ids", "lengths"):
                h5[name].resize((6,))
            if "embeddings" in h5:
                h5["embeddings"].resize((6, h5["embeddings"].shape[1]))
            else:
                h5["tokens"].create_dataset("3", (0, h5["tokens/0"].shape[1]), dtype="float32")
        elif state == "no_commit_record":  # as a genomix from before rows were committed wrote it
            del h5.attrs[ROWS_ATTR]


@pytest.mark.parametrize("pooling", ["mean", "none"])
@pytest.mark.parametrize("state", ["uncommitted_rows", "resized_without_rows", "no_commit_record"])
def test_a_resumed_run_ends_with_the_uninterrupted_output(model, fasta, tmp_path, monkeypatch, pooling, state):
    whole = run(model, fasta, tmp_path / "whole.h5", pooling)
    out, partial = tmp_path / "cut.h5", tmp_path / ".cut.h5.partial"
    with monkeypatch.context() as patch:
        stop_at_fourth_row(patch)
        with pytest.raises(KeyboardInterrupt, match="the 2 embeddings written so far are kept"):
            run(model, fasta, out, pooling)
    with h5py.File(partial) as h5:  # the stop left a row beyond the committed ones
        assert len(h5["ids"]) == 3 and h5.attrs[ROWS_ATTR] == 2
    as_a_kill_left_it(partial, state)
    assert run(model, fasta, out, pooling, resume=True) == out
    assert rows(out) == rows(whole) and not partial.exists()


@pytest.mark.parametrize("pooling", ["mean", "none"])
def test_a_record_ahead_of_its_rows_or_torn_rows_are_refused_and_kept(model, fasta, tmp_path, monkeypatch, pooling):
    """A commit record vouching for rows the file lacks, or committed rows whose values changed under it (a chunk a
    kill tore), is refused in one line saying how to start again; the file stays until the caller says so."""
    whole = run(model, fasta, tmp_path / "whole.h5", pooling)
    out, partial = tmp_path / "cut.h5", tmp_path / ".cut.h5.partial"
    with monkeypatch.context() as patch:
        stop_at_fourth_row(patch)
        with pytest.raises(KeyboardInterrupt):
            run(model, fasta, out, pooling)
    for damage, problem in [("ahead", "are unreadable"), ("torn", "do not match their checksum")]:
        with h5py.File(partial, "a") as h5:
            if damage == "ahead":
                h5.attrs[ROWS_ATTR] = 5
            else:
                h5.attrs[ROWS_ATTR] = 2
                (h5["embeddings"] if pooling == "mean" else h5["tokens/1"])[1] = 0.0
        kept = partial.read_bytes()
        with pytest.raises(InputFormatError) as refused:
            run(model, fasta, out, pooling, resume=True)
        message = str(refused.value)
        assert message.startswith(f"{partial}: the {5 if damage == 'ahead' else 2} rows the interrupted run "
                                  f"committed {problem}") and message.endswith(START_AGAIN)
        assert "\n" not in message and partial.read_bytes() == kept
    assert run(model, fasta, out, pooling, overwrite=True) == out
    assert rows(out) == rows(whole) and not partial.exists()


KILLED = """
import os, signal, sys, torch
import genomix.embed as embed_module
from genomix.models import build
moment, calls = sys.argv[1], []
real_add, real_sync = embed_module._Writer.add, embed_module._Writer._sync
def add(self, item, value):  # mid-window: row 2 is written, row 3 not yet
    calls.append("add")
    if moment == "mid_window" and calls.count("add") == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    real_add(self, item, value)
def sync(self):  # mid-commit: the second window's rows are on disk, its record not yet
    real_sync(self)
    calls.append("sync")
    if moment == "mid_commit" and calls.count("sync") == 2:
        os.kill(os.getpid(), signal.SIGKILL)
embed_module._Writer.add, embed_module._Writer._sync = add, sync
torch.manual_seed(0)
embed_module.embed_sequences(build("hyenadna-tiny-1k").eval(), embed_module.fasta_sequences(sys.argv[2]), sys.argv[3],
                             pooling=sys.argv[4], window=2, device="cpu", quiet=True)
"""


@pytest.mark.parametrize("pooling", ["mean", "none"])
@pytest.mark.parametrize("moment", ["mid_window", "mid_commit"])
def test_a_run_killed_outright_resumes_to_the_uninterrupted_output(model, fasta, tmp_path, pooling, moment):
    out, partial = tmp_path / "cut.h5", tmp_path / ".cut.h5.partial"
    done = subprocess.run([sys.executable, "-c", KILLED, moment, str(fasta), str(out), pooling], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with h5py.File(partial) as h5:
        assert h5.attrs[ROWS_ATTR] == 2
    assert run(model, fasta, out, pooling, resume=True) == out
    assert rows(out) == rows(run(model, fasta, tmp_path / "whole.h5", pooling)) and not partial.exists()
