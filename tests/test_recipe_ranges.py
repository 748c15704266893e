"""Recipe and model-config values outside their range are refused when the file is read, naming the field:
torch, Lightning or the optimiser would otherwise refuse them in a traceback once the run has started, or take
them and train wrongly (a negative clip that clips nothing, a weight decay below zero, a masking rate of 0)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genomix.errors import ConfigError
from genomix.models import build
from genomix.models.registry import load_config
from genomix.tasks import load_finetune_recipe
from genomix.train.module import no_decay_names
from genomix.train.recipe import load_recipe, recipe_dirs


def _recipe_with(tmp_path: Path, change: dict, base: str = "demo") -> Path:
    data = yaml.safe_load((recipe_dirs()[-1] / f"{base}.yaml").read_text())
    for dotted, value in change.items():
        *outer, last = dotted.split(".")
        node = data
        for key in outer:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("field, value, message", [
    ("optim.lr", -1.0, "optim.lr must be a positive learning rate"),
    ("optim.lr", 0.0, "optim.lr must be a positive learning rate"),
    ("optim.betas", [1.5, 0.9], r"optim.betas must be two numbers in \[0, 1\), got \[1.5, 0.9\]"),
    ("optim.weight_decay", -0.1, "optim.weight_decay must be >= 0"),
    ("optim.warmup_fraction", 1.5, r"optim.warmup_fraction must be in \[0, 1\]"),
    ("optim.min_lr_ratio", 2.0, r"optim.min_lr_ratio must be in \[0, 1\]"),
    ("precision", "fp16", "precision must be one of"),
    ("gradient_clip", -1.0, "gradient_clip must be a gradient norm >= 0"),
    ("log_every", 0, "log_every must be a positive integer"),
    ("val_windows", 0, "val_windows must be a positive integer"),
    ("schedule_steps", 0, r"schedule_steps must be a positive integer \(or null: max_steps\)"),
    ("data.num_workers", -1, "data.num_workers must be 0"),
    ("data.mlm_probability", 0.0, r"data.mlm_probability must be in \(0, 1\]"),
    ("data.mlm_probability", 1.5, r"data.mlm_probability must be in \(0, 1\]"),
    ("data.max_n_fraction", 1.5, r"data.max_n_fraction must be in \[0, 1\]"),
])
def test_pretraining_recipe_values_out_of_range_are_refused_by_field(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=rf"recipe\.yaml: recipe field {message}"):
        load_recipe(_recipe_with(tmp_path, {field: value}))


def test_finetuning_recipes_share_the_optimiser_checks(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("optim: {lr: 1.0e-3, betas: [1.5, 0.9]}\n")
    with pytest.raises(ConfigError, match=r"ft\.yaml: recipe field optim.betas must be two numbers in \[0, 1\)"):
        load_finetune_recipe(path)


@pytest.mark.parametrize("name, override, message", [
    ("hyenadna-tiny-1k", {"embed_dropout": 1.5}, r"embed_dropout must be a probability in \[0, 1\), got 1.5"),
    ("hyenadna-tiny-1k", {"layer_norm_epsilon": 0.0}, "layer_norm_epsilon must be > 0"),
    ("hyenadna-tiny-1k", {"pad_vocab_size_multiple": 0}, "pad_vocab_size_multiple must be a whole number >= 1"),
    ("hyenadna-tiny-1k", {"num_inner_mlps": -1}, "num_inner_mlps must be >= 0"),
    ("m2-tiny-1k", {"num_inner_mlps": -1}, "num_inner_mlps must be >= 0"),
    ("mamba-tiny-1k", {"norm_epsilon": -1.0}, "norm_epsilon must be > 0"),
    ("mamba-tiny-1k", {"dt_min": 0.0}, "0 < dt_min <= dt_max, got 0.0 and 0.1"),
    ("caduceus-ph-1k-d118", {"dt_min": 0.5}, "0 < dt_min <= dt_max, got 0.5 and 0.1"),
])
def test_model_config_values_out_of_range_are_refused_by_field(name, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(name, **override)


def test_the_mamba_recipe_exempts_from_decay_only_its_1d_parameters_and_A_log():
    """no_decay patterns match names as case-insensitive substrings: the recipe once listed "D", which also exempted
    the embedding and every conv1d and dt_proj weight."""
    recipe = load_recipe("mamba-hg38")
    model = build(recipe.model, task=recipe.task)
    exempt = no_decay_names(model, recipe.optim.no_decay)
    expected = {name for name, param in model.named_parameters() if param.ndim < 2 or name.endswith("A_log")}
    assert exempt == expected and any(name.endswith("A_log") for name in exempt)
