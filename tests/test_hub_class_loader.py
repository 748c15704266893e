"""Model references that name nothing, and class loaders (``HyenaForCausalLM.from_pretrained``) given a
checkpoint of another family or of another layout of their own family. Small fixtures only: no network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import genomix
from genomix.cli import main
from genomix.errors import CheckpointError
from genomix.hub import save_native
from genomix.models.caduceus import CaduceusForMaskedLM
from genomix.models.hyena import HyenaForCausalLM, HyenaForSequenceClassification
from genomix.models.mamba import MambaForCausalLM

UNKNOWN = "neither a local directory nor a Hub id"


@pytest.fixture(scope="module")
def fixtures(shared_dir):
    return shared_dir / "fixtures"


def first_logits(model, fixture) -> tuple[np.ndarray, np.ndarray]:
    """(``model``'s logits, the expected ones) on the fixture's length-1 input, over the expected vocabulary."""
    expected = np.load(fixture / "expected.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(expected["L1_input_ids"])).logits.numpy()
    return logits[..., :expected["L1_logits"].shape[-1]], expected["L1_logits"]


@pytest.mark.parametrize("name", ["./nonexist", "../nonexist", "~/nonexist-genomix", "./a/b", "owner/.name", "a--b/c"])
def test_missing_paths_and_invalid_hub_ids_are_clear_errors(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=UNKNOWN):
        genomix.from_pretrained(name)


def test_hub_validation_errors_become_the_clear_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError

    def refuse(**kwargs):
        raise HFValidationError(f"Repo id must use alphanumeric chars: {kwargs['repo_id']!r}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(CheckpointError, match=UNKNOWN):
        genomix.from_pretrained("owner/name")


def test_cli_model_path_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.fa").write_text(">s\nACGTACGT\n")
    assert main(["embed", "--model", "./nonexist", "--fasta", "x.fa", "--out", "o.h5"]) == 2
    err = capsys.readouterr().err
    assert "genomix embed: error: './nonexist' is " + UNKNOWN in err
    assert "Traceback" not in err and "HFValidationError" not in err


@pytest.mark.parametrize(
    ("model_class", "fixture", "family"),
    [
        (HyenaForCausalLM, "caduceus-ps", "genomix-caduceus"),
        (HyenaForCausalLM, "mamba-lm", "genomix-mamba"),
        (MambaForCausalLM, "hyenadna-released-layout", "genomix-hyena"),
        (CaduceusForMaskedLM, "mamba-lm", "genomix-mamba"),
        (MambaForCausalLM, "caduceus-ph", "genomix-caduceus"),
    ],
)
def test_class_loader_refuses_another_family(model_class, fixture, family, fixtures):
    expected = model_class.config_class.model_type
    with pytest.raises(CheckpointError, match=rf"a {family} checkpoint \(.* layout\), which {model_class.__name__} "
                                              rf"\({expected}\) cannot load; genomix\.from_pretrained\("):
        model_class.from_pretrained(fixtures / fixture)


def test_class_loader_refuses_another_family_in_the_native_layout(fixtures, tmp_path):
    native = save_native(genomix.from_pretrained(fixtures / "mamba-lm"), tmp_path / "mamba")
    with pytest.raises(CheckpointError, match=r"genomix-mamba checkpoint \(genomix layout\).*HyenaForCausalLM.*"
                                              r"or use MambaForCausalLM\.from_pretrained"):
        HyenaForCausalLM.from_pretrained(native)


@pytest.mark.parametrize(
    ("model_class", "fixture"),
    [
        (HyenaForCausalLM, "hyenadna-released-layout"),
        (MambaForCausalLM, "mamba-lm"),
        (CaduceusForMaskedLM, "caduceus-ps"),
        (CaduceusForMaskedLM, "caduceus-ph"),
    ],
)
def test_class_loader_converts_its_own_family(model_class, fixture, fixtures):
    model = model_class.from_pretrained(fixtures / fixture)
    assert type(model) is model_class and not model.training
    np.testing.assert_allclose(*first_logits(model, fixtures / fixture), rtol=1e-5, atol=1e-5)


def test_class_loader_takes_its_head_and_overrides(fixtures):
    model = HyenaForSequenceClassification.from_pretrained(fixtures / "hyenadna-released-layout", num_labels=3,
                                                           dtype=torch.bfloat16)
    assert type(model) is HyenaForSequenceClassification and model.config.num_labels == 3
    assert next(model.parameters()).dtype == torch.bfloat16


def test_dtype_auto_keeps_the_dtype_a_checkpoint_was_saved_in(tmp_path):
    """As transformers' ``dtype="auto"``: a model saved in bf16 loads in bf16, one saved in fp32 in fp32; without
    ``dtype`` genomix loads fp32 whatever was saved."""
    model = genomix.models.build("hyenadna-tiny-1k")
    save_native(model, tmp_path / "fp32")
    save_native(model.to(torch.bfloat16), tmp_path / "bf16")
    dtypes = [next(genomix.from_pretrained(tmp_path / saved, **asked).parameters()).dtype
              for saved in ("fp32", "bf16") for asked in ({}, {"dtype": "auto"})]
    assert dtypes == [torch.float32, torch.float32, torch.float32, torch.bfloat16]


def test_native_layout_still_loads_through_transformers(fixtures, tmp_path):
    from transformers import AutoModelForCausalLM

    native = save_native(genomix.from_pretrained(fixtures / "mamba-lm"), tmp_path / "mamba")
    for model in (MambaForCausalLM.from_pretrained(native), AutoModelForCausalLM.from_pretrained(native)):
        assert type(model) is MambaForCausalLM
        np.testing.assert_allclose(*first_logits(model, fixtures / "mamba-lm"), rtol=1e-5, atol=1e-5)
