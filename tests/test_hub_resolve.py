"""Hub resolution through huggingface_hub's cache, seeded by the test: no network is ever used."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import genomix
from genomix.errors import DownloadError
from genomix.hub import push_to_hub, save_native

REPO = "LongSafari/hyenadna-tiny-1k-seqlen"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def seed_cache(cache: Path, repo: str, commit: str, source: Path, branch: str | None = "main") -> Path:
    """Lay out ``source``'s files as huggingface_hub's cache does for ``repo`` at ``commit``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copyfile(f, snapshot / f.name)
    if branch:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_offline_resolution_from_seeded_cache(shared_dir, tmp_path, offline):
    fixture = shared_dir / "fixtures" / "hyenadna-released-layout"
    seed_cache(tmp_path, REPO, COMMIT_A, fixture)
    model = genomix.from_pretrained(REPO, cache_dir=tmp_path)
    expected = np.load(fixture / "expected.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(expected["L17_input_ids"])).logits[..., :12].numpy()
    np.testing.assert_allclose(logits, expected["L17_logits"], rtol=1e-5, atol=1e-6)


def test_revision_pinning_picks_the_snapshot(shared_dir, tmp_path, offline):
    fixture = shared_dir / "fixtures" / "hyenadna-released-layout"
    seed_cache(tmp_path, REPO, COMMIT_A, fixture)
    other = genomix.from_pretrained(fixture, task="classification", num_labels=2)
    save_native(other, tmp_path / "native")
    seed_cache(tmp_path, REPO, COMMIT_B, tmp_path / "native", branch=None)
    assert type(genomix.from_pretrained(REPO, cache_dir=tmp_path)).__name__ == "HyenaForCausalLM"
    pinned = genomix.from_pretrained(REPO, revision=COMMIT_B, cache_dir=tmp_path)
    assert type(pinned).__name__ == "HyenaForSequenceClassification"


def test_offline_and_not_cached_is_a_download_error(tmp_path, offline):
    with pytest.raises(DownloadError, match="not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        genomix.from_pretrained("LongSafari/hyenadna-small-32k-seqlen", cache_dir=tmp_path)
    with pytest.raises(DownloadError, match="revision v9"):
        genomix.from_pretrained(REPO, revision="v9", cache_dir=tmp_path)


def test_push_to_hub_uploads_the_native_layout(shared_dir, monkeypatch):
    from huggingface_hub import HfApi

    uploaded = {}

    def fake_create_repo(self, repo_id, **kwargs):
        uploaded["repo"] = repo_id

    def fake_upload_folder(self, repo_id, folder_path, **kwargs):
        uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        uploaded["folder"] = folder_path
        return "https://hub.example/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    model = genomix.from_pretrained(shared_dir / "fixtures" / "hyenadna-released-layout")
    assert push_to_hub(model, "me/my-hyena") == "https://hub.example/commit/1"
    assert uploaded["repo"] == "me/my-hyena"
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(uploaded["files"])


@pytest.mark.parametrize("published, fetches_pickle", [
    (["config.json", "model.safetensors", "pytorch_model.bin"], False),
    (["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"], False),
    (["config.json", "pytorch_model.bin"], True),
    (None, True),  # no listing (no network, a private repository): every pattern, the download reports it
])
def test_a_repository_with_safetensors_is_not_also_fetched_as_pickles(monkeypatch, tmp_path, published,
                                                                      fetches_pickle):
    import huggingface_hub

    from genomix.hub import resolve

    def listing(self, repo_id, revision=None, token=None, timeout=None):
        if published is None:
            raise OSError("no network")
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=name) for name in published])

    asked = {}

    def snapshot(**kwargs):
        asked.update(kwargs)
        return str(tmp_path)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", listing)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert resolve(REPO, cache_dir=tmp_path) == tmp_path
    assert "model.safetensors" in asked["allow_patterns"] and "weights.ckpt" in asked["allow_patterns"]
    assert ("pytorch_model.bin" in asked["allow_patterns"]) is fetches_pickle
