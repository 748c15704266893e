"""Checkpoint layouts: released original, -hf (made here from the same weights), native; bad files."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import genomix
from genomix.errors import CheckpointError
from genomix.hub import from_pretrained, save_native
from genomix.hub.formats import detect_format, load_checkpoint

@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "hyenadna-released-layout"


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return dict(np.load(fixture_dir / "expected.npz"))


@pytest.fixture(scope="module")
def raw_backbone(fixture_dir):
    """The fixture's weights with the research code's names below ``backbone`` (no ``.layer.``)."""
    sd = torch.load(fixture_dir / "weights.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model.").replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp."): v
            for k, v in sd.items()}


def hf_config(fixture_dir) -> dict:
    original = json.loads((fixture_dir / "config.json").read_text())
    layer = original["layer"]
    return {
        "model_type": "hyenadna", "d_model": original["d_model"], "n_layer": original["n_layer"],
        "d_inner": original["d_inner"], "vocab_size": 12, "max_seq_len": layer["l_max"],
        "emb_dim": layer["emb_dim"], "filter_order": layer["filter_order"], "short_filter_order": 3,
        "hyena_order": 2, "activation_freq": layer["w"], "num_inner_mlps": 2, "train_freq": True,
        "use_bias": True, "pad_vocab_size_multiple": 8, "embed_dropout": 0.1, "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": False, "pad_token_id": 4, "architectures": ["HyenaDNAForCausalLM"],
    }


def logits_of(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits[..., :12].numpy()


def test_layouts_are_detected(fixture_dir, tmp_path):
    assert detect_format(fixture_dir).name == "hyenadna"
    native = save_native(from_pretrained(fixture_dir), tmp_path / "native")
    assert detect_format(native).name == "genomix"
    with pytest.raises(CheckpointError, match="no config.json"):
        detect_format(tmp_path)


def test_original_to_native_to_automodel_same_logits(fixture_dir, expected, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    original = from_pretrained(fixture_dir)
    native = save_native(original, tmp_path / "native")
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in native.iterdir()}
    assert json.loads((native / "config.json").read_text())["model_type"] == "genomix-hyena"
    auto = AutoModelForCausalLM.from_pretrained(native).eval()
    assert type(auto).__name__ == "HyenaForCausalLM"
    ids = expected["L256_input_ids"]
    np.testing.assert_array_equal(logits_of(auto, ids), logits_of(original, ids))
    rel = np.abs(logits_of(auto, ids) - expected["L256_logits"]).max() / np.abs(expected["L256_logits"]).max()
    assert rel <= 1e-5
    tok = AutoTokenizer.from_pretrained(native)
    assert tok("ACGTN", add_special_tokens=False)["input_ids"] == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("variant", ["causal-lm-bin", "base-safetensors", "classification-bin"])
def test_hf_layout_loads_to_the_same_outputs(fixture_dir, expected, raw_backbone, tmp_path, variant):
    config = hf_config(fixture_dir)
    freq = {k: v for k, v in raw_backbone.items() if k.endswith("implicit_filter.1.freq")}
    assert freq  # the -hf files store the shared frequency at every use, like the original
    if variant == "causal-lm-bin":
        weights = {f"hyena.{k}" if k.startswith("backbone.") else k: v for k, v in raw_backbone.items()}
        torch.save(weights, tmp_path / "pytorch_model.bin")
    elif variant == "base-safetensors":
        weights = {k: v.contiguous() for k, v in raw_backbone.items() if k.startswith("backbone.")}
        save_file(weights, tmp_path / "model.safetensors")
    else:
        weights = {f"hyena.{k}": v for k, v in raw_backbone.items() if k.startswith("backbone.")}
        weights["score.weight"] = torch.randn(2, config["d_model"])
        torch.save(weights, tmp_path / "pytorch_model.bin")
        config["architectures"] = ["HyenaDNAForSequenceClassification"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert detect_format(tmp_path).name == "hyenadna-hf"
    model = from_pretrained(tmp_path)
    ids = torch.from_numpy(expected["L17_input_ids"])
    with torch.no_grad():
        if variant == "causal-lm-bin":
            assert type(model).__name__ == "HyenaForCausalLM" and model.config.tie_word_embeddings
            np.testing.assert_allclose(model(ids).logits[..., :12].numpy(), expected["L17_logits"], rtol=1e-5, atol=1e-5)
        elif variant == "base-safetensors":
            assert type(model).__name__ == "HyenaModel"
            hidden = model(ids).last_hidden_state.numpy()
            np.testing.assert_allclose(hidden, expected["L17_hidden"], rtol=1e-5, atol=1e-5)
        else:
            assert type(model).__name__ == "HyenaForSequenceClassification" and model.config.pooling == "last"
            hidden = torch.from_numpy(expected["L17_hidden"])
            torch.testing.assert_close(model(ids).logits, hidden[:, -1] @ weights["score.weight"].T, rtol=1e-5, atol=1e-5)


def test_task_can_be_changed_at_load(fixture_dir, expected):
    base = from_pretrained(fixture_dir, task="base")
    with torch.no_grad():
        hidden = base(torch.from_numpy(expected["L17_input_ids"])).last_hidden_state.numpy()
    np.testing.assert_allclose(hidden, expected["L17_hidden"], rtol=1e-5, atol=1e-5)
    clf = from_pretrained(fixture_dir, task="classification", num_labels=4, pooling="mean")
    assert clf.score.proj.out_features == 4
    torch.testing.assert_close(clf.backbone.ln_f.weight, base.ln_f.weight)


def copy_fixture(fixture_dir: Path, dst: Path) -> Path:
    shutil.copytree(fixture_dir, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    dst.chmod(0o755)
    return dst


def test_truncated_and_corrupt_weights_are_clear_errors(fixture_dir, tmp_path):
    bad = copy_fixture(fixture_dir, tmp_path / "truncated")
    data = (bad / "weights.ckpt").read_bytes()
    (bad / "weights.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(bad)
    native = save_native(from_pretrained(fixture_dir), tmp_path / "native")
    blob = (native / "model.safetensors").read_bytes()
    (native / "model.safetensors").write_bytes(blob[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        from_pretrained(native)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad, format="hyenadna")


def test_config_weights_mismatch_names_the_keys(fixture_dir, tmp_path):
    bad = copy_fixture(fixture_dir, tmp_path / "mismatch")
    config = json.loads((bad / "config.json").read_text())
    config["d_inner"] = 256
    config["n_layer"] = 3
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        from_pretrained(bad)
    message = str(err.value)
    assert "missing key(s): backbone.layers.2." in message
    assert "backbone.layers.0.mlp.fc1.weight: checkpoint (512, 128) vs config (256, 128)" in message


def test_overrides_that_change_shapes_are_clear_errors(fixture_dir):
    with pytest.raises(CheckpointError, match="do not fit the config with overrides.*max_seq_len"):
        from_pretrained(fixture_dir, max_seq_len=2048)


class Foreign:
    """A class a checkpoint may name (like Lightning's OmegaConf hyper-parameters); never constructed."""

    def __reduce__(self):
        return (print, ("foreign code ran",))


def test_foreign_objects_are_inert_and_never_weights(tmp_path, fixture_dir, expected, capsys):
    ok = copy_fixture(fixture_dir, tmp_path / "lightning")
    ckpt = torch.load(fixture_dir / "weights.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] = {"cfg": Foreign(), "path": Path("x")}
    torch.save(ckpt, ok / "weights.ckpt")
    model = from_pretrained(ok)
    assert "foreign code ran" not in capsys.readouterr().out
    np.testing.assert_allclose(logits_of(model, expected["L1_input_ids"]), expected["L1_logits"], rtol=1e-5, atol=1e-6)
    bad = copy_fixture(fixture_dir, tmp_path / "bad")
    torch.save({"state_dict": {"model.x": Foreign()}}, bad / "weights.ckpt")
    with pytest.raises(CheckpointError, match="mapping of parameter names to tensors"):
        from_pretrained(bad)
    assert "foreign code ran" not in capsys.readouterr().out


def test_unknown_reference_is_a_clear_error():
    with pytest.raises(CheckpointError, match="neither a local directory nor a Hub id"):
        genomix.from_pretrained("hyenadna-does-not-exist")
    with pytest.raises(CheckpointError, match="Did you mean 'hyenadna-tiny-1k'"):
        genomix.from_pretrained("hyenadna-tiny-9k")
    with pytest.raises(CheckpointError, match=r"named model size, not a checkpoint: .*build\('mamba-tiny-1k'\)"):
        genomix.from_pretrained("mamba-tiny-1k")


def test_convert_cli(fixture_dir, expected, tmp_path, capsys):
    from genomix.cli import main

    assert main(["convert", str(fixture_dir), str(tmp_path / "out"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    model = from_pretrained(tmp_path / "out")
    np.testing.assert_allclose(logits_of(model, expected["L1_input_ids"]), expected["L1_logits"], rtol=1e-5, atol=1e-6)
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "o2")]) == 2
    assert "genomix convert: error:" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_converted_checkpoints_are_as_readable_as_other_outputs_and_a_file_is_no_target(fixture_dir, tmp_path, capsys):
    """The folder is built privately and renamed; it ends with the permissions the umask gives any new file."""
    from genomix.cli import main

    old = os.umask(0o022)
    try:
        assert main(["convert", str(fixture_dir), str(tmp_path / "out"), "--quiet"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()} == {0o644}
    (tmp_path / "afile").write_text("keep me")
    assert main(["convert", str(fixture_dir), str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "keep me"
