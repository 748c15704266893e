"""A vocabulary grown the transformers way (``tokenizer.add_tokens``, then ``model.resize_token_embeddings(len(
tokenizer))``) saves and loads back: ``len(tokenizer)`` counted no added token, a resize to a row count the config
pads further (13 of a multiple of 8) saved a model that no loader could rebuild, and Caduceus could not be resized."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

import genomix
from genomix.errors import ConfigError
from genomix.models import build


def test_added_tokens_count_in_the_tokenizers_vocabulary():
    tokenizer = genomix.Tokenizer()
    before = len(tokenizer)
    tokenizer.add_tokens(["[ENH]"], special_tokens=True)
    assert len(tokenizer) == before + 1 and tokenizer.get_vocab()["[ENH]"] == before
    assert tokenizer("AC[ENH]GT")["input_ids"][2] == before


@pytest.mark.parametrize("name, task, auto_class", [("hyenadna-tiny-1k", "causal-lm", AutoModelForCausalLM),
                                                    ("mamba-tiny-1k", "causal-lm", AutoModelForCausalLM),
                                                    ("caduceus-ph-1k-d118", "masked-lm", AutoModelForMaskedLM)])
def test_a_model_resized_for_added_tokens_loads_back(tmp_path, name, task, auto_class):
    tokenizer = genomix.Tokenizer()
    tokenizer.add_tokens(["[ENH]"], special_tokens=True)
    torch.manual_seed(0)
    model = build(name, task=task).eval()
    model.resize_token_embeddings(len(tokenizer))  # 13 tokens: padded to the config's multiple of 8
    ids = torch.tensor([tokenizer("AC[ENH]GT")["input_ids"]])
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path / "resized")
    for loaded in (genomix.from_pretrained(tmp_path / "resized"), auto_class.from_pretrained(tmp_path / "resized")):
        assert loaded.get_input_embeddings().weight.shape[0] == 16
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(ids).logits, expected)


def test_another_multiple_asked_for_is_kept_and_an_rc_equivariant_embedding_is_refused(tmp_path):
    model = build("hyenadna-tiny-1k", task="causal-lm")
    model.resize_token_embeddings(13, pad_to_multiple_of=3)
    model.save_pretrained(tmp_path / "fifteen")
    assert genomix.from_pretrained(tmp_path / "fifteen").get_input_embeddings().weight.shape[0] == 15
    with pytest.raises(ConfigError, match=r"reverse-complement-equivariant \(rcps\) embedding .* cannot be resized"):
        build("caduceus-ps-1k-d118", task="masked-lm").resize_token_embeddings(13)
