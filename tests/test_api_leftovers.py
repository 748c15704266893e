"""Python API leftovers: ``build`` names what it accepts when handed something else, and a Caduceus masked-LM
checkpoint loads into transformers' base and classification Auto classes without its LM head's complement map
reported as a stray weight."""
from __future__ import annotations

import pytest
import torch
import transformers

import genomix
from genomix.errors import ConfigError
from genomix.models import build


@pytest.mark.parametrize("given", [123, None, ["hyenadna-tiny-1k"], {"model_type": "genomix-hyena"}])
def test_build_refuses_what_is_neither_a_name_a_path_nor_a_config(given):
    accepted = "a size name .*, a YAML config path or a genomix config object"
    with pytest.raises(ConfigError, match=rf"{accepted}, got {type(given).__name__} "):
        build(given)


def test_caduceus_masked_lm_checkpoint_loads_into_headless_auto_classes_without_strays(shared_dir, tmp_path):
    model = genomix.from_pretrained(shared_dir / "fixtures" / "caduceus-ps")  # its head holds a complement_map
    model.save_pretrained(tmp_path)
    cmap = torch.tensor(model.config.complement_map)
    base, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == set() and info["missing_keys"] == set()
    assert torch.equal(base.embeddings.word_embeddings.complement_map, cmap)
    classifier, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=2, output_loading_info=True)
    assert info["unexpected_keys"] == set() and info["missing_keys"] == {"score.weight", "score.bias"}
    # the head keeps a persistent buffer: one transformers built on the meta device would be left uninitialised
    reloaded, info = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == set() and torch.equal(reloaded.lm_head.complement_map, cmap)
    ids = torch.randint(0, 8, (1, 16))
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)
