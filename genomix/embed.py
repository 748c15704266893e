"""Sequence embeddings to HDF5: FASTA records or BED intervals of a genome store -> a model's hidden states.

Inputs longer than the model's ``max_seq_len`` are cut into consecutive chunks of at most that length;
chunks are batched across sequences (sorted by length within a window to limit padding, outputs
written back in input order). The backbone makes padding invisible (see ``HyenaModel.forward``), so a
batched embedding equals the embedding of the sequence alone.

Output file (written to a temporary name, renamed when complete)::

    /ids          (N,)   sequence ids (FASTA record names, or BED names / contig:start-end(strand))
    /lengths      (N,)   sequence lengths in bases
    /embeddings   (N, d) pooled vectors                       (pooling mean|last|first)
    /tokens/<i>   (L_i, d) per-token hidden states of row i   (pooling none)
    attrs: model, weights (the backbone's fingerprint), pooling, d_model (the width d: the backbone's output
           width), max_seq_len, genomix_version, inputs_sha256 (the input sequences' ids and bases, in row
           order), rows and rows_sha256 (N, and the rows' stored values: below), and the caller's ``meta``
           (the CLI: revision, when given)

Pooling over chunks is exact: ``mean`` averages over all bases of the sequence, ``last``/``first``
take the sequence's last/first base (whose chunk saw the context before it within that chunk).

Rows are kept in ``.<out>.partial`` as they finish, committed a window at a time: the attrs ``rows`` (how many) and
``rows_sha256`` (over their stored ids, lengths and values) are written only after the rows themselves reached the
disk, so that a run killed outright (kill -9, the OOM killer, a power cut) at any moment leaves a file whose
committed rows a resumed run checks and continues after, dropping any row beyond them, or refuses in one line where
the kill tore them (:class:`_Writer`). ``resume`` and ``overwrite`` (``--resume``, ``--overwrite``) treat that file
as :mod:`genomix.resume` says (the policy ``score-variants`` follows too). Both attrs stay in the output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from .devices import resolve_device
from .errors import InputFormatError
from .models.heads import POOLING_MODES
from .models.inference_loop import inference_loop
from .outputs import check_output, make_output_dir, temp_sibling
from .resume import (START_AGAIN, continue_partial, end_interrupted_run, finished_output, partial_path,
                     same_weights_settings, weights_fingerprint)
from .tokenizer import BYTE_TO_ID, INVALID, encode, pad_batch

if TYPE_CHECKING:
    from .genome.fasta import FastaReader
    from .genome.store import GenomeStore

log = logging.getLogger(__name__)
EMBED_POOLING = POOLING_MODES + ("none",)
#: A window of sequences, chunked and batched together, also ends once it holds this many batches of chunks, so
#: that rows of long sequences (a chromosome is hundreds of chunks) are kept as each finishes.
WINDOW_BATCHES = 16


@dataclasses.dataclass
class SequenceInput:
    """One input sequence: its id and token ids. Given bases instead (a ``str``, e.g. ``SequenceInput("seq1",
    "ACGTN")``), they are encoded with :func:`genomix.tokenizer.encode`, as a notebook user would expect."""

    id: str
    ids: np.ndarray

    def __post_init__(self) -> None:
        """Encode bases given as text; refuse ids that are not one row of integers (float ids were embedded
        silently, cut to integers; letters in a list failed deep inside the model)."""
        if isinstance(self.ids, (str, bytes)):
            self.ids = encode(self.ids)
            return
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise InputFormatError(f"SequenceInput {self.id!r}: ids must be one row of integer token ids (or the "
                                   f"bases as text, e.g. SequenceInput('seq1', 'ACGT')), got {ids.dtype} of shape "
                                   f"{ids.shape}")
        self.ids = ids


def fasta_sequences(path: str | os.PathLike) -> Iterator[SequenceInput]:
    """Records of a FASTA file (plain or gzip) as token ids, streamed one record at a time. A missing file is
    refused now, not at the first record (which a command reads only after loading its model)."""
    from .genome.fasta import FastaReader

    reader = FastaReader(path)
    reader.require_file()
    return _token_records(reader)


def _token_records(reader: "FastaReader") -> Iterator[SequenceInput]:
    for record in reader:
        ids = BYTE_TO_ID[record.sequence]
        if (ids == INVALID).any():  # pragma: no cover - FastaReader validates characters already
            raise InputFormatError(f"{reader.path}:{record.line}: record {record.name!r} has non-DNA characters")
        yield SequenceInput(record.name, ids.astype(np.int64))


def bed_sequences(intervals: list[tuple[str, int, int, str, str]], store: GenomeStore) -> Iterator[SequenceInput]:
    """Intervals from :func:`read_bed_intervals` (checked against the store's contigs first) fetched from a genome
    store (``genomix.genome.open_store``), strand-aware."""
    for contig, start, end, name, strand in intervals:
        yield SequenceInput(name, store.fetch(contig, start, end, strand=strand))


def _chunks(length: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, length)) for s in range(0, length, size)]


#: The attribute of an embedding file holding the SHA-256 of its input sequences (ids and bases, in row order).
INPUTS_ATTR = "inputs_sha256"
#: The attributes of an embedding file holding how many rows it has committed, and the SHA-256 of their stored values.
ROWS_ATTR, ROWS_DIGEST_ATTR = "rows", "rows_sha256"


class _Writer:
    """Appends rows to the HDF5 layout above, in a new file or after the committed rows of an interrupted run's.

    HDF5 writes its metadata when it chooses, so a process killed outright between two flushes can leave datasets
    resized without their rows, or one dataset ahead of another; and a kill during a flush can tear what it writes.
    So rows count only once committed (:meth:`commit`): written and flushed to the disk (fsync) first, then
    counted in :data:`ROWS_ATTR` with :data:`ROWS_DIGEST_ATTR` over their stored values (and the inputs' digest),
    flushed in turn. Opening a file with committed rows checks them against that digest, refusing a torn file in one
    line, and drops every row after them, so that a resumed run never continues from rows the file does not vouch
    for. ``where`` names the file in those refusals.

    The width ``d`` is the backbone's output width, taken from the first row (``d_model``, or ``2·d_model`` for
    Caduceus with reverse-complement parameter sharing)."""

    def __init__(self, h5: h5py.File, pooling: str, where: Path) -> None:
        self.h5, self.pooling = h5, pooling
        #: SHA-256 over the ids and bases of the rows so far (:func:`_input_digest`), committed with the rows so that a
        #: resumed run can check it reads the same sequences, not only the same ids and lengths
        self.inputs = hashlib.sha256()
        #: SHA-256 over the rows' stored values (:meth:`_hash_row`), committed as :data:`ROWS_DIGEST_ATTR`
        self.rows = hashlib.sha256()
        if "ids" not in h5:
            h5.create_dataset("ids", (0,), maxshape=(None,), dtype=h5py.string_dtype())
            h5.create_dataset("lengths", (0,), maxshape=(None,), dtype="int64")
            if pooling == "none":
                h5.create_group("tokens")
        self.ids, self.lengths = h5["ids"], h5["lengths"]
        self.tokens, self.vectors = h5.get("tokens"), h5.get("embeddings")
        self.width = self.vectors.shape[1] if self.vectors is not None else 0
        self.count = self.committed = int(h5.attrs.get(ROWS_ATTR, 0))
        if self.count:
            self._check_committed(where)
        self._drop_uncommitted()

    def _check_committed(self, where: Path) -> None:
        """Hash the committed rows as stored, refusing a file where they are unreadable or not what was committed."""
        try:
            for start in range(0, self.count, 1024):
                stop = min(start + 1024, self.count)
                ids, lengths = self.ids[start:stop], self.lengths[start:stop]
                vectors = self.vectors[start:stop] if self.pooling != "none" else None
                for row in range(start, stop):
                    seq_id = ids[row - start]
                    value = self.tokens[str(row)][()] if vectors is None else vectors[row - start]
                    self._hash_row(seq_id.decode() if isinstance(seq_id, bytes) else str(seq_id),
                                   int(lengths[row - start]), value)
            self.width = int(value.shape[-1])
            problem = "" if self.h5.attrs[ROWS_DIGEST_ATTR] == self.rows.hexdigest() else "do not match their checksum"
        except (OSError, KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
            problem = f"are unreadable ({exc})"
        if problem:
            raise InputFormatError(f"{where}: the {self.count} rows the interrupted run committed {problem}, as a run "
                                   f"killed while writing them can leave them; {START_AGAIN}")

    def _drop_uncommitted(self) -> None:
        """Remove the rows after the committed ones: those of a window that a stopped run had not committed."""
        for ds in (self.ids, self.lengths):
            ds.resize((self.count,))
        if self.vectors is not None:
            self.vectors.resize((self.count, self.width))
        if self.tokens is not None:
            for name in [name for name in self.tokens if int(name) >= self.count]:
                del self.tokens[name]

    def add(self, item: SequenceInput, value: np.ndarray) -> None:
        i, seq_id, length = self.count, item.id, len(item.ids)
        value = np.asarray(value, dtype=np.float32)
        if not self.width:
            self.width = int(value.shape[-1])
        if self.pooling != "none" and self.vectors is None:
            self.vectors = self.h5.create_dataset("embeddings", (0, self.width), maxshape=(None, self.width),
                                                  dtype="float32", chunks=(1024, self.width))
        for ds in (self.ids, self.lengths):
            ds.resize((i + 1,))
        self.ids[i], self.lengths[i] = seq_id, length
        if self.pooling == "none":
            self.tokens.create_dataset(str(i), data=value)
        else:
            self.vectors.resize((i + 1, self.width))
            self.vectors[i] = value
        self.count += 1
        _input_digest(self.inputs, item)
        self._hash_row(seq_id, length, value)

    def _hash_row(self, seq_id: str, length: int, value: np.ndarray) -> None:
        """Add a row's id, length and value (as the file stores it: float32, its shape too) to :attr:`rows`."""
        self.rows.update(f"{seq_id}\0{length}\0{value.shape}\0".encode())
        self.rows.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())

    def commit(self) -> None:
        """Make the rows added so far the ones a resumed run continues after (see the class docstring). The record
        is flushed but not synced: a power cut may lose it, which leaves the previous commit, as consistent."""
        self._sync()
        self.h5.attrs.update({ROWS_ATTR: self.count, ROWS_DIGEST_ATTR: self.rows.hexdigest(),
                              INPUTS_ATTR: self.inputs.hexdigest()})
        self.h5.flush()
        self.committed = self.count

    def _sync(self) -> None:
        """Write everything HDF5 holds for the file to it, and the file to the disk, before a record counts it."""
        self.h5.flush()
        os.fsync(self.h5.id.get_vfd_handle())


def _input_digest(digest, item: SequenceInput) -> None:
    """Add ``item`` (its id, then its token ids as int64) to ``digest``."""
    digest.update(item.id.encode() + b"\0")
    digest.update(np.ascontiguousarray(item.ids, dtype=np.int64).tobytes())


def _combine(parts: list[tuple[int, int, torch.Tensor]], pooling: str) -> np.ndarray:
    """Per-sequence result from its chunks' outputs (chunk start, chunk length, tensor)."""
    parts.sort(key=lambda p: p[0])
    if pooling == "none":
        return torch.cat([p[2] for p in parts]).numpy()
    if pooling == "mean":
        total = sum(p[1] for p in parts)
        return (sum(p[2] * p[1] for p in parts) / total).numpy()
    return (parts[-1][2] if pooling == "last" else parts[0][2]).numpy()


@torch.no_grad()
def embed_sequences(
    model: torch.nn.Module,
    sequences: Iterable[SequenceInput],
    out: str | os.PathLike,
    pooling: str = "mean",
    batch_size: int = 8,
    device: str | torch.device | None = None,
    quiet: bool = False,
    total: int | None = None,
    window: int = 64,
    model_name: str = "",
    reuse_filters: bool = True,
    cuda_graphs: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    meta: Mapping[str, str] | None = None,
) -> Path:
    """Embed ``sequences`` with ``model`` (a genomix base model or any head) into the HDF5 file ``out``, which
    must not exist unless ``overwrite``.

    Rows go to ``.<out>.partial`` as each window of sequences finishes; if the run stops (an error, Ctrl-C, a kill),
    the rows so far stay there, and ``resume=True`` continues after them (the same inputs and settings, checked),
    while ``overwrite=True`` without ``resume`` starts again without them (:mod:`genomix.resume`). ``meta``:
    further settings (e.g. the model's revision) recorded in the output's attrs, which a resumed run must match.
    The backbone's :func:`~genomix.resume.weights_fingerprint` is recorded as ``weights`` and decides over
    ``model_name`` (:func:`genomix.resume.same_weights_settings`).
    Returns the output path.

    ``window`` sequences are chunked and batched together at a time. ``reuse_filters``: keep HyenaDNA's and
    M2's long filters' spectra between forwards (faster, one filter's memory per layer); ``cuda_graphs``:
    replay repeated batch shapes from CUDA graphs on a GPU (faster, one graph's activations; both:
    :func:`genomix.models.inference_loop`).
    """
    from . import __version__
    from .models.heads import pool

    if isinstance(sequences, (str, bytes)):
        raise InputFormatError("sequences must be SequenceInput items, not one text; wrap it: "
                               "[SequenceInput('seq1', text)]")
    if pooling not in EMBED_POOLING:
        raise InputFormatError(f"pooling must be one of {EMBED_POOLING}, got {pooling!r}")
    if batch_size < 1:
        raise InputFormatError(f"batch size must be >= 1, got {batch_size}")
    backbone = getattr(model, "backbone", model)
    weights = weights_fingerprint(backbone)  # the weights that compute the rows, before they move to a device
    config = backbone.config
    device = resolve_device(device, "device=")
    backbone.to(device).eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    out = check_output(out, overwrite=True)  # an existing output: finished_output below
    tmp = partial_path(out)
    size = int(config.max_seq_len)
    settings = {"model": model_name, "pooling": pooling, "max_seq_len": size, **(meta or {}), "weights": weights}
    if finished_output(out, tmp, lambda: same_weights_settings(_saved_settings(out, _NOT_EMBEDDINGS), settings, out),
                       settings, lambda: _other_inputs(sequences, out), resume=resume, overwrite=overwrite):
        return out
    make_output_dir(out.parent, option="out (--out)")
    progress = tqdm(total=total, unit="seq", desc="embedding", disable=quiet)

    def run_window(items: list[SequenceInput], writer: _Writer) -> None:
        jobs = [(row, s, e) for row, item in enumerate(items) for s, e in _chunks(len(item.ids), size)]
        jobs.sort(key=lambda j: j[2] - j[1])
        parts: list[list[tuple[int, int, torch.Tensor]]] = [[] for _ in items]
        for b in range(0, len(jobs), batch_size):
            batch = jobs[b:b + batch_size]
            ids, mask = pad_batch([items[row].ids[s:e] for row, s, e in batch], side="left")
            ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            padded = mask_t if not mask.all() else None  # without a mask, a repeated shape replays a CUDA graph
            with autocast:
                hidden = backbone(ids_t, attention_mask=padded).last_hidden_state.float()
            for i, (row, s, e) in enumerate(batch):
                if pooling == "none":
                    value = hidden[i, ids.shape[1] - (e - s):].cpu()
                else:
                    value = pool(hidden[i:i + 1], mask_t[i:i + 1], pooling)[0].cpu()
                parts[row].append((s, e - s, value))
        for row, item in enumerate(items):
            writer.add(item, _combine(parts[row], pooling))
        progress.update(len(items))

    keep = continue_partial(tmp, lambda: same_weights_settings(_saved_settings(tmp), settings, tmp), settings,
                            resume=resume, overwrite=overwrite, holds_rows=lambda: _may_hold_rows(tmp))
    writer = None
    # a new file is written under this process's name and becomes ``tmp`` once its first rows are committed: HDF5
    # leaves an unreadable file when killed (kill -9, the OOM killer) before its first flush
    path = tmp if keep else temp_sibling(tmp)
    try:
        with h5py.File(path, "a" if keep else "w") as h5, inference_loop(backbone, reuse_filters, cuda_graphs):
            writer = _Writer(h5, pooling, tmp)
            h5.attrs.update(genomix_version=__version__, **settings)
            for items in _windows(_after_rows(sequences, writer, tmp, progress), window, size, batch_size):
                run_window(items, writer)
                writer.commit()
                path = _renamed(path, tmp)
            if writer.count == 0:
                raise InputFormatError("no sequences to embed: the input is empty")
            h5.attrs["d_model"] = writer.width
        os.replace(path, out)
    except BaseException as exc:
        if writer is None and keep:
            raise  # refused before continuing the interrupted run's rows, which stay as they were
        kept = writer.committed if writer is not None else 0
        if kept:  # stopped between a commit and its rename
            _renamed(path, tmp)
        end_interrupted_run(exc, kept, [path, tmp], f"the {kept} embeddings written so far are kept in {tmp}; rerun "
                            "with resume=True (--resume) to continue after them")
    finally:
        progress.close()
    return out


def _windows(sequences: Iterable[SequenceInput], window: int, chunk: int,
             batch_size: int) -> Iterator[list[SequenceInput]]:
    """``sequences`` in groups that are chunked (``chunk`` bases a chunk), batched and committed together: ``window``
    sequences, or fewer once they make :data:`WINDOW_BATCHES` batches of chunks, so that an interrupted run keeps
    long sequences as they finish. An empty sequence is refused."""
    pending: list[SequenceInput] = []
    chunks = 0
    for item in sequences:
        _require_input(item)
        if len(item.ids) == 0:
            raise InputFormatError(f"sequence {item.id!r} is empty")
        pending.append(item)
        chunks += len(_chunks(len(item.ids), chunk))
        if len(pending) == window or chunks >= WINDOW_BATCHES * batch_size:
            yield pending
            pending, chunks = [], 0
    if pending:
        yield pending


def _require_input(item: object) -> SequenceInput:
    """``item``, after refusing anything but a :class:`SequenceInput`."""
    if not isinstance(item, SequenceInput):
        raise InputFormatError(f"sequences must be SequenceInput items, e.g. SequenceInput('seq1', 'ACGT'); got a "
                               f"{type(item).__name__}: {item!r:.60}")
    return item


def _renamed(path: Path, partial: Path) -> Path:
    """``partial``, after renaming ``path`` (a new file, open or closed) to it where they differ."""
    if path != partial:
        os.replace(path, partial)
    return partial


#: Attributes of an embedding file that are not settings of the run that wrote it.
_NOT_SETTINGS = ("genomix_version", "d_model", INPUTS_ATTR, ROWS_ATTR, ROWS_DIGEST_ATTR)


def _may_hold_rows(tmp: Path) -> bool:
    """Whether the partial file ``tmp`` may hold committed rows (for :func:`genomix.resume.continue_partial`): not if
    it records none (one written before genomix committed rows, whose rows a kill may have left inconsistent, is
    started again), but an unreadable one may, so that it is refused or discarded as asked instead of removed."""
    try:
        with h5py.File(tmp, "r") as h5:
            return bool(h5.attrs.get(ROWS_ATTR, 0))
    except OSError:
        return True


#: How :func:`_saved_settings` refuses a partial file, and an existing output, that it cannot read.
_UNREADABLE_PARTIAL = f"the interrupted run's file is unreadable ({{}}); {START_AGAIN}"
_NOT_EMBEDDINGS = ("it is not a readable embedding file ({}); pass overwrite=True (--overwrite) to replace it, or "
                   "write elsewhere")


def _saved_settings(path: Path, unreadable: str = _UNREADABLE_PARTIAL) -> dict:
    """The settings a run recorded in its file ``path`` (every attribute but :data:`_NOT_SETTINGS`): an interrupted
    run's partial file, or a finished run's output. ``unreadable`` (with ``{}`` for the reason) refuses one that
    HDF5 cannot read."""
    try:
        with h5py.File(path, "r") as h5:
            return {key: value for key, value in h5.attrs.items() if key not in _NOT_SETTINGS}
    except OSError as exc:
        raise InputFormatError(f"{path}: {unreadable.format(exc)}") from None


def _other_inputs(sequences: Iterable[SequenceInput], out: Path) -> str:
    """How ``sequences`` differ from those whose embeddings a finished run wrote to ``out`` (by number, then by the
    digest of their ids and bases in order); "" when they are the same. Reads all of them, embedding none."""
    digest, count = hashlib.sha256(), 0
    for item in sequences:
        _input_digest(digest, _require_input(item))
        count += 1
    with h5py.File(out, "r") as h5:
        rows, recorded = int(h5.attrs.get(ROWS_ATTR, -1)), h5.attrs.get(INPUTS_ATTR)
    if count != rows:
        return f"other inputs ({count} sequences given, {rows} embedded)"
    if recorded != digest.hexdigest():
        return f"other inputs (as many sequences, {count}, but other ids or bases)"
    return ""


def _after_rows(sequences: Iterable[SequenceInput], writer: _Writer, tmp: Path, progress) -> Iterator[SequenceInput]:
    """The inputs after those already in ``writer``'s file (a resumed run), each of which must be the same
    sequence, by id and length, as the interrupted run embedded, and all of them together the same bases (by the
    digest the file keeps)."""
    inputs = iter(sequences)
    for row in range(writer.count):
        item = next(inputs, None)
        if item is None:
            raise InputFormatError(f"{tmp} holds {writer.count} rows but the input has only {row}; resume with the "
                                   f"same input, or {START_AGAIN}")
        _input_digest(writer.inputs, item)
        stored, length = writer.ids[row], int(writer.lengths[row])
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        if (stored, length) != (item.id, len(item.ids)):
            raise InputFormatError(f"{tmp}: row {row} of the interrupted run is {stored!r} ({length} bases) but "
                                   f"the input now gives {item.id!r} ({len(item.ids)} bases); resume with the same "
                                   f"input, or {START_AGAIN}")
        progress.update(1)
    if writer.count:
        _check_input_digest(writer, tmp)
    yield from inputs


def _check_input_digest(writer: _Writer, tmp: Path) -> None:
    """Refuse a resumed run whose first inputs (hashed into ``writer.inputs`` as they were skipped) differ from those
    the interrupted run embedded into ``tmp``."""
    if writer.h5.attrs.get(INPUTS_ATTR) != writer.inputs.hexdigest():
        raise InputFormatError(f"{tmp}: the first {writer.count} input sequences have the same ids and lengths as the "
                               f"interrupted run's but other bases; resume with the same input, or {START_AGAIN}")


def load_embedding_model(name: str, revision: str | None = None) -> torch.nn.Module:
    """A base model for embedding: a checkpoint (local dir / Hub id, any layout) or, for testing, a
    named size with fresh random weights (see :func:`genomix.hub.load_model`)."""
    from .hub import load_model

    return load_model(name, "base", revision)
