"""`genomix embed`: FASTA and BED inputs, chunking beyond max_seq_len, pooling, HDF5 output, CLI."""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import genomix
from genomix.cli import main
from genomix.embed import EMBED_POOLING, SequenceInput, embed_sequences, fasta_sequences
from genomix.genome.bed import read_bed_intervals
from genomix.errors import InputFormatError
from genomix.genome import read_fasta, write_store
from genomix.tokenizer import encode, reverse_complement


@pytest.fixture(scope="module")
def model(shared_dir):
    return genomix.from_pretrained(shared_dir / "fixtures" / "hyenadna-released-layout", task="base")


@pytest.fixture(scope="module")
def fasta(shared_dir, tmp_path_factory) -> Path:
    """Three real mitochondrial stretches: short, longer than max_seq_len (3 chunks), soft-masked with N."""
    mt = next(iter(read_fasta(shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa").values()))
    records = {"short": mt[:300], "long": mt[1000:3500], "masked": mt[5000:5040].lower() + "NNNN" + mt[5040:5060]}
    path = tmp_path_factory.mktemp("embed") / "input.fa"
    path.write_text("".join(f">{name} test\n{seq}\n" for name, seq in records.items()))
    return path


def hidden(model, seq: str) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(encode(seq))[None]).last_hidden_state[0]


def chunked_reference(model, seq: str) -> torch.Tensor:
    size = model.config.max_seq_len
    return torch.cat([hidden(model, seq[s:s + size]) for s in range(0, len(seq), size)])


def test_pooled_embeddings_match_direct_forwards_and_chunk_exactly(model, fasta, tmp_path):
    out = embed_sequences(model, fasta_sequences(fasta), tmp_path / "emb.h5", pooling="mean", batch_size=3, quiet=True)
    records = read_fasta(fasta)
    with h5py.File(out) as h5:
        assert [i.decode() for i in h5["ids"][()]] == list(records)
        assert list(h5["lengths"][()]) == [300, 2500, 64]
        assert h5["embeddings"].shape == (3, 128) and h5.attrs["pooling"] == "mean"
        for row, seq in enumerate(records.values()):
            np.testing.assert_allclose(h5["embeddings"][row], chunked_reference(model, seq).mean(0).numpy(),
                                       rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*partial"))


def test_filter_reuse_gives_the_same_embeddings(model, fasta, tmp_path):
    kept = embed_sequences(model, fasta_sequences(fasta), tmp_path / "kept.h5", batch_size=2, quiet=True)
    plain = embed_sequences(model, fasta_sequences(fasta), tmp_path / "plain.h5", batch_size=2, quiet=True,
                            reuse_filters=False)
    with h5py.File(kept) as a, h5py.File(plain) as b:
        np.testing.assert_array_equal(a["embeddings"][()], b["embeddings"][()])


def test_per_token_and_last_pooling(model, fasta, tmp_path):
    records = read_fasta(fasta)
    tokens = embed_sequences(model, fasta_sequences(fasta), tmp_path / "tok.h5", pooling="none", batch_size=2, quiet=True)
    last = embed_sequences(model, fasta_sequences(fasta), tmp_path / "last.h5", pooling="last", batch_size=1, quiet=True)
    with h5py.File(tokens) as tok, h5py.File(last) as lst:
        for row, seq in enumerate(records.values()):
            reference = chunked_reference(model, seq).numpy()
            assert tok[f"tokens/{row}"].shape == (len(seq), 128)
            np.testing.assert_allclose(tok[f"tokens/{row}"][()], reference, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(lst["embeddings"][row], reference[-1], rtol=1e-4, atol=1e-5)


def test_bed_intervals_from_a_genome_store(model, shared_dir, tmp_path):
    fasta = shared_dir / "data" / "genomes" / "phage_lambda_NC_001416.fa"
    store_path = write_store(fasta, tmp_path / "lambda.h5")
    contig = genomix.genome.open_store(store_path).contigs[0]
    bed = tmp_path / "regions.bed"
    bed.write_text(f"# regions\n{contig}\t100\t400\tgeneA\t0\t-\n{contig}\t1000\t1200\n")
    assert read_bed_intervals(bed)[1][3] == f"{contig}:1000-1200(+)"
    out = tmp_path / "bed.h5"
    assert main(["embed", "--model", str(shared_dir / "fixtures" / "hyenadna-released-layout"), "--bed", str(bed),
                 "--genome", str(store_path), "--out", str(out), "--quiet"]) == 0
    genome = next(iter(read_fasta(fasta).values()))
    with h5py.File(out) as h5:
        assert [i.decode() for i in h5["ids"][()]] == ["geneA", f"{contig}:1000-1200(+)"]
        minus = reverse_complement(encode(genome[100:400]))
        with torch.no_grad():
            expected = model(torch.from_numpy(minus.copy())[None]).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(h5["embeddings"][0], expected, rtol=1e-4, atol=1e-5)


def test_cli_errors_and_choices(tmp_path, shared_dir, capsys):
    from genomix.cli.embed import POOLING_CHOICES

    assert POOLING_CHOICES == EMBED_POOLING
    assert main(["embed", "--model", "hyenadna-tiny-1k", "--bed", "x.bed", "--out", str(tmp_path / "o.h5")]) == 2
    assert "needs --genome" in capsys.readouterr().err
    assert main(["embed", "--model", "hyenadna-tiny-1k", "--fasta", "x.fa", "--genome", "g.h5", "--out",
                 str(tmp_path / "o.h5")]) == 2
    assert "--genome is the store that --bed intervals are read from, and is not used with --fasta" in \
        capsys.readouterr().err
    assert main(["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(tmp_path / "missing.fa"),
                 "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
    assert "no such FASTA file" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGTJJ\n")
    with pytest.raises(InputFormatError, match="bad.fa:2"):
        list(fasta_sequences(bad))


def test_bed_rows_are_all_checked_before_any_is_embedded_and_gzip_reads(tmp_path, shared_dir, capsys, monkeypatch):
    """An interval past its contig's end, or on an unknown contig, is named by file and line before the model
    runs; a gzip BED reads as a plain one."""
    import gzip

    import genomix.embed

    store_path = write_store(shared_dir / "data" / "genomes" / "phage_lambda_NC_001416.fa", tmp_path / "lambda.h5")
    contig = genomix.genome.open_store(store_path).contigs[0]
    monkeypatch.setattr(genomix.embed, "embed_sequences", lambda *a, **k: pytest.fail("embedded before the check"))
    good = "".join(f"{contig}\t{i * 10}\t{i * 10 + 50}\n" for i in range(300))
    for name, last, message in [("late.bed", f"{contig}\t48000\t49000\n", "late.bed:301: .*outside the contig"),
                                ("other.bed", "chr9\t0\t10\n", "other.bed:301: contig 'chr9' is not in the genome")]:
        (tmp_path / name).write_text(good + last)
        assert main(["embed", "--model", "hyenadna-tiny-1k", "--bed", str(tmp_path / name), "--genome",
                     str(store_path), "--out", str(tmp_path / "o.h5"), "--quiet"]) == 2
        assert re.search(message, capsys.readouterr().err)
    with gzip.open(tmp_path / "r.bed.gz", "wt") as fh:
        fh.write(good)
    assert read_bed_intervals(tmp_path / "r.bed.gz") == read_bed_intervals_text(tmp_path, good)


def read_bed_intervals_text(tmp_path: Path, text: str):
    (tmp_path / "plain.bed").write_text(text)
    return read_bed_intervals(tmp_path / "plain.bed")


def test_an_existing_output_or_an_input_as_output_is_refused(model, fasta, tmp_path, capsys):
    out = embed_sequences(model, fasta_sequences(fasta), tmp_path / "e.h5", quiet=True)
    with pytest.raises(InputFormatError, match=r"exists; pass overwrite=True \(--overwrite\)"):
        embed_sequences(model, fasta_sequences(fasta), out, quiet=True)
    assert embed_sequences(model, fasta_sequences(fasta), out, quiet=True, overwrite=True) == out
    before = fasta.read_bytes()
    assert main(["embed", "--model", "hyenadna-tiny-1k", "--fasta", str(fasta), "--out", str(fasta), "--overwrite",
                 "--quiet"]) == 2
    assert "must not be an input" in capsys.readouterr().err and fasta.read_bytes() == before


def test_the_width_is_the_backbones_output_width(shared_dir, fasta, tmp_path):
    """Caduceus with reverse-complement parameter sharing returns 2·d_model features per base."""
    ps = genomix.from_pretrained(shared_dir / "fixtures" / "caduceus-ps", task="base")
    for pooling in ("mean", "none"):
        out = embed_sequences(ps, fasta_sequences(fasta), tmp_path / f"ps-{pooling}.h5", pooling=pooling, quiet=True)
        with h5py.File(out) as h5:
            width = h5["embeddings"].shape[1] if pooling == "mean" else h5["tokens/0"].shape[1]
            assert width == h5.attrs["d_model"] == 2 * ps.config.d_model


def test_an_interrupted_run_keeps_its_rows_and_resumes_to_the_same_file(model, shared_dir, tmp_path, monkeypatch):
    """Rows are kept window by window; Ctrl-C leaves them in the partial file, --resume continues after them
    (checking the inputs are the same), and the result equals an uninterrupted run's."""
    import genomix.embed as embed_module

    mt = next(iter(read_fasta(shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa").values()))
    fasta = tmp_path / "many.fa"
    fasta.write_text("".join(f">s{i}\n{mt[i * 97:i * 97 + 60 + i]}\n" for i in range(9)))
    run = lambda out, **kw: embed_sequences(model, fasta_sequences(fasta), out, window=2, quiet=True, **kw)  # noqa: E731
    whole = run(tmp_path / "whole.h5")
    real, calls = embed_module._combine, []

    def interrupting(*args):
        calls.append(1)
        if len(calls) == 5:  # inside the third window: two windows (4 rows) are written
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(embed_module, "_combine", interrupting)
    with pytest.raises(KeyboardInterrupt, match="4 embeddings written so far are kept"):
        run(tmp_path / "cut.h5")
    monkeypatch.setattr(embed_module, "_combine", real)
    with pytest.raises(InputFormatError, match=r"resume=True \(--resume\) continues it"):
        run(tmp_path / "cut.h5")
    with pytest.raises(InputFormatError, match="pooling: mean -> last"):
        run(tmp_path / "cut.h5", pooling="last", resume=True)
    assert run(tmp_path / "cut.h5", resume=True) == tmp_path / "cut.h5"
    with h5py.File(whole) as a, h5py.File(tmp_path / "cut.h5") as b:
        assert list(a["ids"][()]) == list(b["ids"][()]) and dict(a.attrs) == dict(b.attrs)
        np.testing.assert_array_equal(a["embeddings"][()], b["embeddings"][()])
    assert not (tmp_path / ".cut.h5.partial").exists()


def test_a_resumed_run_refuses_inputs_with_other_bases_and_long_sequences_are_kept_as_they_finish(model, shared_dir,
                                                                                                   tmp_path,
                                                                                                   monkeypatch):
    """A kept row whose input now has the same id and length but other bases is refused (the file's digest of its
    inputs); and a window closes once it holds WINDOW_BATCHES batches of chunks, so an interrupted run over long
    sequences keeps those finished before the stop."""
    import genomix.embed as embed_module

    mt = next(iter(read_fasta(shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa").values()))
    items = [SequenceInput(f"s{i}", encode(mt[i * 97:i * 97 + 60 + i]).astype(np.int64)) for i in range(6)]
    changed = [SequenceInput(items[0].id, items[0].ids[::-1].copy()), *items[1:]]
    out = tmp_path / "e.h5"

    def cut(sequences, n: int):
        yield from sequences[:n]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="4 embeddings written so far"):
        embed_sequences(model, cut(items, 5), out, window=2, quiet=True)
    with pytest.raises(InputFormatError, match="first 4 input sequences have the same ids and lengths as the "
                                               "interrupted run's but other bases"):
        embed_sequences(model, changed, out, window=2, quiet=True, resume=True)
    with pytest.raises(InputFormatError, match="holds 4 rows but the input has only 3"):
        embed_sequences(model, items[:3], out, window=2, quiet=True, resume=True)
    embed_sequences(model, items, out, window=2, quiet=True, resume=True)
    whole = embed_sequences(model, items, tmp_path / "whole.h5", window=2, quiet=True)
    with h5py.File(whole) as a, h5py.File(out) as b:
        assert a.attrs[embed_module.INPUTS_ATTR] == b.attrs[embed_module.INPUTS_ATTR]

    size = model.config.max_seq_len  # each long sequence is 3 chunks: with 2 batches of 2 a window holds 2 of them
    long_items = [SequenceInput(f"long{i}", encode(mt[i * 7:i * 7 + 2 * size + 5]).astype(np.int64)) for i in range(5)]
    monkeypatch.setattr(embed_module, "WINDOW_BATCHES", 2)
    with pytest.raises(KeyboardInterrupt, match="4 embeddings written so far"):
        embed_sequences(model, cut(long_items, 5), tmp_path / "long.h5", batch_size=2, window=64, quiet=True)


def test_a_partial_file_is_continued_only_with_its_settings_and_discarded_only_by_overwrite(model, shared_dir,
                                                                                             tmp_path, caplog):
    """The policy of ``genomix.resume``: (a) a rerun or ``--resume`` under other settings is refused, naming each
    change; (b) ``--overwrite`` without ``--resume`` discards the kept rows, saying so; (c) ``--resume`` with
    ``--overwrite`` and other settings is refused too, and with the same settings continues."""
    mt = next(iter(read_fasta(shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa").values()))
    items = [SequenceInput(f"s{i}", encode(mt[i * 97:i * 97 + 60 + i]).astype(np.int64)) for i in range(9)]

    def cut(n: int):
        yield from items[:n]
        raise KeyboardInterrupt

    def same_embeddings(a: Path, b: Path) -> None:
        with h5py.File(a) as x, h5py.File(b) as y:
            assert dict(x.attrs) == dict(y.attrs)
            np.testing.assert_array_equal(x["embeddings"][()], y["embeddings"][()])

    out, partial = tmp_path / "e.h5", tmp_path / ".e.h5.partial"
    run = lambda sequences, **kw: embed_sequences(model, sequences, out, window=2, quiet=True, **kw)  # noqa: E731
    whole = {pooling: embed_sequences(model, items, tmp_path / f"{pooling}.h5", pooling=pooling, window=2, quiet=True)
             for pooling in ("mean", "last")}
    with pytest.raises(KeyboardInterrupt, match="4 embeddings written so far"):
        run(cut(5), meta={"revision": "v1"})
    kept = partial.read_bytes()
    with pytest.raises(InputFormatError, match=r"resume=True \(--resume\) continues it, overwrite=True \(--overwrite\) starts again"):
        run(items, meta={"revision": "v1"})
    with pytest.raises(InputFormatError, match=r"interrupted run with other settings \(pooling: mean -> last; "
                                               r"revision: v1 -> -\): overwrite=True \(--overwrite\) starts again"):
        run(items, pooling="last")  # (a) a rerun, for which --resume would not do either
    for overwrite in (False, True):  # (a) and (c)
        # the same weights: the model's name is not compared (see test_the_model_is_compared_by_its_weights)
        with pytest.raises(InputFormatError, match=r"other settings \(revision: v1 -> v2\); resume=True \(--resume\) "
                                                   r"continues it only with those.*\(--overwrite without --resume\)"):
            run(items, model_name="tiny", meta={"revision": "v2"}, resume=True, overwrite=overwrite)
    assert partial.read_bytes() == kept  # nothing discarded, nothing added
    with caplog.at_level("WARNING", logger="genomix.resume"):  # (b)
        run(items, pooling="last", overwrite=True)
    assert f"discarding {partial}" in caplog.text and not partial.exists()
    same_embeddings(whole["last"], out)
    with pytest.raises(KeyboardInterrupt):
        run(cut(5), overwrite=True)
    assert run(items, resume=True, overwrite=True) == out  # (c) with the same settings: continued, output replaced
    same_embeddings(whole["mean"], out)


def test_the_model_is_compared_by_its_weights(model, shared_dir, tmp_path, caplog):
    """The partial file records the backbone's weights fingerprint: other weights under the same model path are
    refused on --resume, naming ``weights``; the same weights under another path resume; and a partial written
    before fingerprints were kept (no ``weights``) still resumes, compared by the model's path."""
    import copy

    mt = next(iter(read_fasta(shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa").values()))
    items = [SequenceInput(f"s{i}", encode(mt[i * 97:i * 97 + 60 + i]).astype(np.int64)) for i in range(9)]

    def cut(n: int):
        yield from items[:n]
        raise KeyboardInterrupt

    out, partial = tmp_path / "e.h5", tmp_path / ".e.h5.partial"
    run = lambda m, sequences, **kw: embed_sequences(m, sequences, out, window=2, quiet=True, **kw)  # noqa: E731
    whole = embed_sequences(model, items, tmp_path / "whole.h5", window=2, quiet=True)
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        run(model, cut(5), model_name="/ckpt")
    with h5py.File(partial) as h5:
        assert re.fullmatch(r"sha256:[0-9a-f]{16}", h5.attrs["weights"])
    with pytest.raises(InputFormatError, match=r"other settings \(weights: sha256:[0-9a-f]{16} -> "  # (1)
                                               r"sha256:[0-9a-f]{16}\); resume=True \(--resume\) continues it only with those"):
        run(other, items, model_name="/ckpt", resume=True)
    assert run(model, items, model_name="/moved", resume=True) == out  # (2) the same weights, moved
    with h5py.File(whole) as a, h5py.File(out) as b:
        assert list(a["ids"][()]) == list(b["ids"][()]) and b.attrs["model"] == "/moved"
        np.testing.assert_array_equal(a["embeddings"][()], b["embeddings"][()])
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        run(model, cut(5), model_name="/ckpt")
    with h5py.File(partial, "a") as h5:  # (3) as an older genomix wrote it: no weights
        del h5.attrs["weights"]
    with pytest.raises(InputFormatError, match=r"other settings \(model: /ckpt -> /moved\)"):
        run(model, items, model_name="/moved", resume=True)  # compared by the path, as it was then
    with caplog.at_level("WARNING", logger="genomix.resume"):
        assert run(model, items, model_name="/ckpt", resume=True) == out
    assert "before genomix kept a fingerprint" in caplog.text
    with h5py.File(whole) as a, h5py.File(out) as b:
        np.testing.assert_array_equal(a["embeddings"][()], b["embeddings"][()])
        assert b.attrs["weights"] == a.attrs["weights"]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["hyenadna-tiny-1k", "mamba-tiny-1k", "caduceus-ps-1k-d118", "m2-bert-small-1k"])
def test_on_a_gpu_graph_replays_and_padding_leave_the_embeddings_as_one_at_a_time(name, tmp_path):
    """On a GPU, repeated unpadded batch shapes replay CUDA graphs without the mask, and padded batches run
    eagerly with it: neither may change a sequence's embedding. Twelve sequences of one length give three
    identical batch shapes (captured, then replayed); odd lengths give padded batches and a chunked one."""
    from genomix.models.registry import build

    torch.manual_seed(0)
    model = build(name, task="base")
    rng = np.random.default_rng(0)
    lengths = [300] * 12 + [57, 433, 1500]
    items = [SequenceInput(f"s{i}", "".join(rng.choice(list("ACGT"), n))) for i, n in enumerate(lengths)]

    def embeddings(tag: str, **options) -> np.ndarray:
        out = embed_sequences(model, items, tmp_path / f"{tag}.h5", device="cuda", quiet=True, **options)
        with h5py.File(out) as h5:
            return h5["embeddings"][()]

    graphs = embeddings("graphs", batch_size=4, cuda_graphs=True)
    eager = embeddings("eager", batch_size=4, cuda_graphs=False)
    alone = embeddings("alone", batch_size=1, cuda_graphs=False)
    np.testing.assert_allclose(graphs, eager, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(graphs, alone, rtol=3e-2, atol=3e-2)  # bf16 autocast: batch size picks other kernels
