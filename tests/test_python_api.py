"""The Python API as a notebook uses it: wrong inputs get one clear genomix error instead of torch's deep inside (or
a silently wrong result), and the documented options of loading, generation, embedding and scoring hold."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import genomix
from genomix.embed import SequenceInput, embed_sequences
from genomix.errors import CheckpointError, ConfigError, InputFormatError
from genomix.models import build
from genomix.models.generation import beam_search, generate
from genomix.models.scoring import token_log_likelihoods
from genomix.variants import Reference, Variant, score_variants

FAMILIES = ["hyenadna-tiny-1k", "mamba-tiny-1k", "caduceus-ps-1k-d118"]


@pytest.fixture(scope="module")
def hyena_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("hyenadna-tiny-1k").eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_ids_that_are_not_an_integer_tensor_are_refused(name):
    """A numpy array or list failed with "'ndarray' object has no attribute 'dim'", float ids inside the
    embedding lookup ("Expected tensor for argument #1 'indices'...")."""
    model = build(name).eval()
    ids = torch.randint(7, 11, (2, 8))
    with torch.no_grad():
        with pytest.raises(InputFormatError, match="torch tensor of token ids, got ndarray"):
            model(ids.numpy())
        with pytest.raises(InputFormatError, match="torch tensor of token ids, got list"):
            model(ids.tolist())
        with pytest.raises(InputFormatError, match="integer ids .* got dtype torch.float32"):
            model(ids.float())
        assert model(ids.int()).logits.shape[:2] == (2, 8)


@pytest.mark.parametrize("name", FAMILIES)
def test_an_attention_mask_of_another_shape_is_refused(name):
    """HyenaDNA ran with a (2, 7) mask for (2, 8) ids without a word; Mamba and Caduceus failed inside."""
    model = build(name).eval()
    ids = torch.randint(7, 11, (2, 8))
    with torch.no_grad(), pytest.raises(InputFormatError, match=r"attention_mask must be .* \(2, 8\).* got \(2, 7\)"):
        model(ids, attention_mask=torch.ones(2, 7))


def test_lm_and_class_labels_that_do_not_fit_are_refused():
    """Labels of the wrong shape or out of range failed inside cross_entropy ("Target 3 is out of bounds")."""
    ids = torch.randint(7, 11, (2, 8))
    for name in ("hyenadna-tiny-1k", "caduceus-ps-1k-d118"):  # the causal and the masked loss
        with pytest.raises(InputFormatError, match=r"labels must have input_ids' shape \(2, 8\)"):
            build(name)(ids, labels=ids[:, :4])
    classifier = build("hyenadna-tiny-1k", task="classification", num_labels=3)
    with pytest.raises(InputFormatError, match=r"class labels must lie in \[0, 3\).* got 3"):
        classifier(ids, labels=torch.tensor([0, 3]))
    with pytest.raises(InputFormatError, match="one class per sequence"):
        classifier(ids, labels=torch.tensor([0, 1, 2]))
    assert classifier(ids, labels=torch.tensor([2, -100])).loss.isfinite()  # -100: ignored, as in transformers


def test_generation_and_scoring_refuse_float_ids_and_bad_allowed_ids(hyena_lm):
    """Float prompts failed in the embedding; ``allowed_ids`` past the vocabulary with an IndexError, empty ones
    with "probability tensor contains either inf, nan or element < 0"."""
    prompt = torch.randint(7, 11, (1, 6))
    with pytest.raises(InputFormatError, match="integer ids"):
        hyena_lm.generate(prompt.float(), max_new_tokens=2)
    with pytest.raises(InputFormatError, match="integer ids"):
        token_log_likelihoods(hyena_lm, prompt.float())
    for bad in ((70,), ()):
        with pytest.raises(ConfigError, match="allowed_ids must be one or more token ids"):
            generate(hyena_lm, prompt, 2, allowed_ids=bad)
        with pytest.raises(ConfigError, match="allowed_ids must be one or more token ids"):
            beam_search(hyena_lm, prompt, 2, num_beams=2, allowed_ids=bad)
    assert set(generate(hyena_lm, prompt, 4, allowed_ids=(7,))[0, 6:].tolist()) == {7}


def test_from_pretrained_checks_dtype_and_takes_a_device(shared_dir):
    """``dtype="bf16"`` failed with "module 'torch' has no attribute 'bf16'" and ``torch.int64`` cast the weights
    to integers; ``device=`` was refused as an unknown config field."""
    path = shared_dir / "fixtures" / "mamba-lm"
    for bad in ("bf16", torch.int64):
        with pytest.raises(ConfigError, match="not a floating-point torch dtype"):
            genomix.from_pretrained(path, dtype=bad)
    model = genomix.from_pretrained(path, dtype="bfloat16", device="cpu")
    assert {(p.dtype, p.device.type) for p in model.parameters()} == {(torch.bfloat16, "cpu")}
    with pytest.raises(ConfigError, match="not a device"):
        genomix.from_pretrained(path, device="gpu0")


def test_a_corrupt_config_json_is_named_as_such(tmp_path, hyena_lm):
    """A config.json that is not JSON was reported as "no known checkpoint layout"."""
    hyena_lm.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        genomix.from_pretrained(tmp_path)


def test_a_family_class_refuses_a_config_asking_for_weights_the_checkpoint_lacks(tmp_path, hyena_lm, monkeypatch):
    """``HyenaModel.from_pretrained`` on a checkpoint whose config asks for a third layer started that layer at
    random, with only transformers' printed load report; a fresh head on a pretrained backbone still loads, and
    only its report is printed (a refused load's came before the refusal, as if it had loaded)."""
    hyena_lm.save_pretrained(tmp_path / "ok")
    shutil.copytree(tmp_path / "ok", tmp_path / "bad")
    config = json.loads((tmp_path / "bad" / "config.json").read_text())
    config["n_layer"] += 1
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    model_class, head_class = type(hyena_lm.backbone), type(build("hyenadna-tiny-1k", task="classification"))
    loader_log, reports = logging.getLogger("transformers.modeling_utils"), []
    reporter = logging.Handler()
    reporter.emit = lambda record: reports.append(record.getMessage()) if "LOAD REPORT" in record.getMessage() else None
    monkeypatch.setattr(loader_log, "handlers", [*loader_log.handlers, reporter])
    for cls in (model_class, type(hyena_lm)):
        with pytest.raises(CheckpointError, match=r"lacks \d+ backbone weight\(s\) that its config.json asks for .*"
                                                  r"re-save or re-download the checkpoint"):
            cls.from_pretrained(tmp_path / "bad")
    with pytest.raises(CheckpointError, match=r"that its config.json asks for"):  # AutoModel passes the folder's
        AutoModelForCausalLM.from_pretrained(tmp_path / "bad")
    mine = type(hyena_lm).config_class.from_pretrained(tmp_path / "bad")
    with pytest.raises(CheckpointError, match=r"that the config passed \(config=\) asks for .*pass the config of "
                                              r"these weights"):
        type(hyena_lm).from_pretrained(tmp_path / "ok", config=mine)
    assert reports == []
    classifier, info = head_class.from_pretrained(tmp_path / "ok", num_labels=2, output_loading_info=True)
    assert info["missing_keys"] and all(key.startswith("score.") for key in info["missing_keys"])
    assert len(reports) == 1 and "score.proj.weight" in reports[0] and loader_log.filters == []


def test_python_made_variants_and_sequences_take_text_as_a_file_would_give_it():
    """A ``Variant`` with lower-case bases was a REF mismatch against the upper-cased reference (read_vcf
    upper-cases, Python callers did not), and ``SequenceInput(id, "ACGT")`` failed in ``pad_batch``."""
    variant = Variant("MT", 10, "v1", "t", "c", 0)
    assert (variant.ref, variant.alt) == ("T", "C")
    assert Variant("1", 5, ".", "A", "<DEL>", 0).alt == "<DEL>"
    item = SequenceInput("s1", "ACGTn")
    np.testing.assert_array_equal(item.ids, [7, 8, 9, 10, 11])


@pytest.mark.parametrize("name", FAMILIES)
def test_narrow_integer_ids_are_refused_and_int32_labels_give_the_int64_loss(name):
    """uint8 and int8 ids failed inside the embedding lookup, or in Caduceus' reverse complement, which read
    uint8 ids as a boolean mask ("too many indices"); int32 labels (numpy's default on some systems) failed inside
    cross_entropy ("expected target dtype to be Long or Byte, but got Int")."""
    model = build(name).eval()
    ids = torch.randint(7, 11, (2, 8))
    with torch.no_grad():
        for dtype in (torch.uint8, torch.int8, torch.int16):
            with pytest.raises(InputFormatError, match=f"integer ids .* got dtype {dtype}; convert with .long"):
                model(ids.to(dtype))
        assert torch.equal(model(ids, labels=ids.int()).loss, model(ids, labels=ids).loss)
    classifier = build(name, task="classification", num_labels=3).eval()
    with torch.no_grad():
        labels = torch.tensor([0, 2])
        assert torch.equal(classifier(ids, labels=labels.int()).loss, classifier(ids, labels=labels).loss)


def test_generate_on_a_masked_lm_or_a_classifier_is_refused_by_name():
    """``model.generate`` on Caduceus (or any model without a causal LM head) was an AttributeError."""
    prompt = torch.randint(7, 11, (1, 6))
    for model in (build("caduceus-ps-1k-d118"), build("hyenadna-tiny-1k", task="classification", num_labels=2)):
        with pytest.raises(ConfigError, match=f"generate needs a causal language model .* {type(model).__name__} is"):
            model.generate(prompt, max_new_tokens=2)


def test_embed_and_score_refuse_text_where_they_take_records(hyena_lm, shared_dir, tmp_path):
    """Strings or tuples given to ``embed_sequences`` failed with "'str' object has no attribute 'ids'", a path
    given to ``score_variants`` as the reference or the variants with an AttributeError deep inside."""
    for bad in (["ACGT"], [("s1", "ACGT")], "ACGT"):
        with pytest.raises(InputFormatError, match="sequences must be SequenceInput items"):
            embed_sequences(hyena_lm, bad, tmp_path / "e.h5", device="cpu", quiet=True, overwrite=True)
    for ids in (np.array([7.0, 8.5, 9.0]), list("ACGT"), np.zeros((2, 3), dtype=np.int64)):  # float ids were cut
        with pytest.raises(InputFormatError, match="SequenceInput 's1': ids must be one row of integer token ids"):
            SequenceInput("s1", ids)
    assert SequenceInput("s1", [7, 8, 9]).ids.tolist() == [7, 8, 9]
    with pytest.raises(ConfigError, match=r"^device= 'cuad' is not a device"):  # named as the argument, not --device
        embed_sequences(hyena_lm, [SequenceInput("s1", "ACGT")], tmp_path / "e.h5", device="cuad", quiet=True)
    fasta = shared_dir / "data" / "genomes" / "human_mtDNA_rCRS.fa"
    reference = Reference(fasta, {"MT": next(iter(Reference(fasta).lengths))})
    variant = Variant("MT", 10, "v1", reference.text(reference.resolve("MT"), 9, 10), "G", 0)
    run = lambda variants, ref: score_variants(hyena_lm, variants, ref, tmp_path / "s.tsv", window=64,  # noqa: E731
                                               device="cpu", quiet=True, overwrite=True)
    with pytest.raises(InputFormatError, match=r"reference must be a genomix.variants.Reference, e.g. Reference\("):
        run([variant], str(fasta))
    with pytest.raises(InputFormatError, match=r"variants must be Variant records, e.g. read_vcf\('calls.vcf'\)"):
        run("calls.vcf", reference)
    with pytest.raises(InputFormatError, match="variants must be Variant records .* got a tuple as item 1"):
        run([variant, ("MT", 10, "T", "G")], reference)
    assert run([variant], reference) == {"scored": 1}


def test_a_variant_position_must_be_a_one_based_int():
    """``Variant("MT", "10", ...)`` (a position read from a table as text) failed inside scoring with a TypeError,
    and ``pos=0`` (a 0-based coordinate) is no VCF position; numpy integers from a data frame are taken."""
    for bad in ("10", 10.0, 0, -3):
        with pytest.raises(InputFormatError, match="pos must be the 1-based position as an int"):
            Variant("MT", bad, "v1", "A", "G", 0)
    variant = Variant("MT", np.int64(10), "v1", "A", "G", 0)
    assert variant.pos == 10 and type(variant.pos) is int
