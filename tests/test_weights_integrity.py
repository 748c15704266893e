"""A weights file changed after genomix saved it (a flipped bit, an edit in place) is refused by its recorded
SHA-256 on every load path, instead of loading as other weights; checkpoints without the record load as before."""
from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import genomix
from genomix.errors import CheckpointError
from genomix.hub import integrity, save_native
from genomix.hub.integrity import MANIFEST, check_weights_folder, write_manifest
from genomix.models import build


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_native(build("mamba-tiny-1k"), tmp_path_factory.mktemp("integrity") / "model")


def copy_of(saved: Path, tmp_path: Path) -> Path:
    return shutil.copytree(saved, tmp_path / "model")


def flip_a_bit(path: Path, offset_from_end: int = 100) -> None:
    """One bit of the last tensor's data: the header stays valid, so only the hash can tell."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def test_save_records_the_sha256_of_each_weights_file(saved):
    lines = (saved / MANIFEST).read_text().splitlines()
    assert lines == [f"{hashlib.sha256((saved / 'model.safetensors').read_bytes()).hexdigest()}  model.safetensors"]


@pytest.mark.parametrize("loader", ["genomix", "class"])
def test_a_flipped_bit_is_refused_naming_the_file_and_the_record(saved, tmp_path, loader):
    model = copy_of(saved, tmp_path)
    flip_a_bit(model / "model.safetensors")
    load = genomix.from_pretrained if loader == "genomix" else type(genomix.from_pretrained(saved)).from_pretrained
    with pytest.raises(CheckpointError, match=r"model\.safetensors: its SHA-256 is [0-9a-f]{64}, but .*weights\.sha256 "
                                              r"records [0-9a-f]{64}: the file changed after it was written"):
        load(model)


def test_the_intact_checkpoint_loads_and_without_the_record_an_edit_loads_unchecked(saved, tmp_path):
    model = copy_of(saved, tmp_path)
    reference = genomix.from_pretrained(saved).state_dict()
    assert all(torch.equal(reference[k], v) for k, v in genomix.from_pretrained(model).state_dict().items())
    flip_a_bit(model / "model.safetensors")
    (model / MANIFEST).unlink()
    edited = genomix.from_pretrained(model).state_dict()
    assert any(not torch.equal(reference[k], v) for k, v in edited.items())


def test_each_shard_of_a_sharded_save_is_recorded_and_checked(saved, tmp_path):
    model = genomix.from_pretrained(saved)
    out = tmp_path / "sharded"
    model.save_pretrained(out, max_shard_size="100KB")
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 1
    assert [line.split()[1] for line in (out / MANIFEST).read_text().splitlines()] == shards
    genomix.from_pretrained(out)  # intact
    flip_a_bit(out / shards[-1], offset_from_end=8)
    with pytest.raises(CheckpointError, match=rf"{shards[-1]}: its SHA-256"):
        genomix.from_pretrained(out)


def test_a_retouched_file_with_a_refreshed_record_loads(saved, tmp_path):
    """An edit on purpose: re-recording the hashes (or deleting the record) is what the error asks for."""
    model = copy_of(saved, tmp_path)
    state = load_file(model / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] * 0.5
    save_file(state, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="if you changed the weights on purpose, delete weights.sha256"):
        genomix.from_pretrained(model)
    write_manifest(model)
    check_weights_folder(model)
    loaded = genomix.from_pretrained(model).state_dict()
    assert torch.equal(loaded[name], state[name])


def test_resaving_over_an_earlier_export_replaces_it_record_included(saved, tmp_path):
    model = copy_of(saved, tmp_path)
    torch.manual_seed(1)
    save_native(build("mamba-tiny-1k"), model)
    check_weights_folder(model)
    genomix.from_pretrained(model)


@pytest.mark.parametrize("loader", ["genomix", "class"])
def test_the_hash_runs_beside_the_build_and_a_truncated_file_gets_the_readers_error(saved, tmp_path, monkeypatch,
                                                                                     loader):
    """The recorded files are hashed in a worker thread while the model is built, and the load waits for it; a
    file the reader cannot read is reported as such (truncated), not as a hash mismatch, on both load paths."""
    threads = []
    real = integrity.file_digest
    monkeypatch.setattr(integrity, "file_digest",
                        lambda path: threads.append(threading.current_thread().name) or real(path))
    load = genomix.from_pretrained if loader == "genomix" else type(genomix.from_pretrained(saved)).from_pretrained
    threads.clear()
    load(saved)
    assert len(threads) == 1 and threads[0].startswith("genomix-weights-check")
    model = copy_of(saved, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load(model)
