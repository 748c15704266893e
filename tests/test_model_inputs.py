"""What every model family refuses before it fails inside: empty or 1-D inputs, token ids outside the
vocabulary (the embedding's padding rows included), rows longer than the model reads."""
from __future__ import annotations

import pytest
import torch

from genomix.errors import ConfigError, InputFormatError, RangeError
from genomix.models import build, get_family, load_config

FAMILIES = ["hyenadna-tiny-1k", "mamba-tiny-1k", "caduceus-ps-1k-d118", "m2-tiny-1k", "transformer-tiny-1k"]


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_inputs_get_clear_errors_in_every_family(name):
    torch.manual_seed(0)
    model = build(name).eval()
    ok = torch.randint(7, 11, (2, 16))
    with torch.no_grad():
        assert model(ok).logits.shape[:2] == (2, 16)
        for ids in (torch.zeros(0, 5, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long), ok[0]):
            with pytest.raises(InputFormatError, match=r"\(batch >= 1, length >= 1\)"):
                model(ids)
        # from vocab_size up: the embedding's padding rows, which no tokenizer produces, then past the table
        for bad in (model.config.vocab_size, model.config.padded_vocab_size - 1, model.config.padded_vocab_size, -1):
            if 0 <= bad < model.config.vocab_size:
                continue
            with pytest.raises(InputFormatError, match="token ids must lie in"):
                model(torch.where(ok == 9, bad, ok))
        with pytest.raises(RangeError, match="longer than this model's max_seq_len"):
            model(torch.full((1, model.config.max_seq_len + 1), 7))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_model_cast_to_16_bits_runs_under_autocast_to_that_type(name):
    """``.to(torch.bfloat16)`` / ``.half()`` crashed HyenaDNA, M2 and the Transformer (an fp32 residual stream met
    16-bit weights); cast models now run as an fp32 model does under autocast, close to its fp32 logits."""
    torch.manual_seed(0)
    model = build(name).eval()
    ids = torch.randint(7, 11, (2, 64))
    with torch.no_grad():
        reference = model(ids).logits.float()
        for dtype in (torch.bfloat16, torch.float16):
            logits = model.to(dtype)(ids).logits.float()
            # M2's implicit-filter parameters are sensitive to their own rounding to 16 bits (see README)
            assert (logits - reference).norm() / reference.norm() < (0.25 if name.startswith("m2") else 0.02)
            model.float()


def test_from_pretrained_takes_a_dtype(shared_dir):
    import genomix

    model = genomix.from_pretrained(shared_dir / "fixtures" / "mamba-lm", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(torch.randint(7, 11, (1, 20))).logits.shape == (1, 20, model.config.padded_vocab_size)


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_refuses_keyword_arguments_it_would_ignore(name):
    """A misspelt or unsupported keyword argument was swallowed by ``**kwargs`` and the call ran as if it had not
    been given (``atention_mask=`` ran unmasked); every family's models and heads now name it and the class."""
    torch.manual_seed(0)
    ids = torch.randint(7, 11, (2, 16))
    mask = torch.ones_like(ids)
    for task in get_family(load_config(name).model_type).models:
        model = build(name, task=task).eval()
        cls = type(model).__name__
        with torch.no_grad():
            typo = rf"{cls}\.forward\(\) .*'atention_mask' \(did you mean 'attention_mask'\?\)"
            with pytest.raises(TypeError, match=typo):
                model(ids, atention_mask=mask)
            with pytest.raises(TypeError, match=rf"{cls}\.forward\(\) .*'inputs_embeds', 'position_ids'; it takes"):
                model(ids, inputs_embeds=mask, position_ids=mask)
            with pytest.raises(TypeError, match="'output_attentions'"):  # asks for what no model returns
                model(ids, output_attentions=True)
            # what code written for other transformers models passes to switch features off is accepted
            model(ids, attention_mask=mask, output_hidden_states=False, return_dict=True, output_attentions=False,
                  use_cache=None)
            if task == "base":
                with pytest.raises(TypeError, match=rf"{cls}\.forward\(\) .*'labels'"):  # a base model has no loss
                    model(ids, labels=ids)


@pytest.mark.parametrize("name", FAMILIES)
def test_config_fields_no_family_takes_are_refused(name, tmp_path):
    """A misspelt config field (``pooling_mode: last``, ``d_modle``) was stored on the config, unread, and the model
    built with the default it meant to change; YAML files, build overrides and from_pretrained overrides now name
    it, with the field it most likely meant."""
    import yaml

    from genomix.models.registry import config_dict

    fields = config_dict(name)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**fields, "d_modle": 64}))
    with pytest.raises(ConfigError, match=r"mine\.yaml'.*has no field\(s\) 'd_modle'"):
        build(path)
    with pytest.raises(ConfigError, match=r"config overrides: .* 'pooling_mode' \(did you mean 'pooling'\?\), "
                                          r"'max_seq_length' \(did you mean 'max_seq_len'\?\)"):
        build(name, pooling_mode="last", max_seq_length=64)
    config = load_config(name, num_labels=3, pooling="last", max_seq_len=64)  # real fields still pass
    assert (config.num_labels, config.pooling, config.max_seq_len) == (3, "last", 64)


def test_from_pretrained_refuses_an_override_no_field_takes(shared_dir):
    import genomix

    with pytest.raises(ConfigError, match=r"'num_label' \(did you mean 'num_labels'\?\)"):
        genomix.from_pretrained(shared_dir / "fixtures" / "mamba-lm", task="classification", num_label=3)
    # as model cards write it: accepted, and nothing from the Hub is run
    model = genomix.from_pretrained(shared_dir / "fixtures" / "mamba-lm", trust_remote_code=True)
    assert not hasattr(model.config, "trust_remote_code")
