"""The shipped YAML (configs/models, configs/pretrain, configs/finetune, configs/icl) and how a mistake in a
user's YAML is reported: every named size builds with the parameter count of the model it names, every
recipe loads, and a misspelt key or a value of the wrong type is refused naming the key and the file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import genomix
from genomix.errors import ConfigError
from genomix.models.registry import available_models, build, load_config
from genomix.tasks.icl import load_icl_recipe
from genomix.tasks.recipe import load_finetune_recipe
from genomix.train.recipe import available_recipes, load_recipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Exact counts of every shipped size (embeddings counted once where tied). The released models' counts are
# checked against their published figures below; the others guard the YAML against accidental edits.
PARAMETERS = {
    "caduceus-ph-131k-d256-16L": 7_725_312, "caduceus-ph-1k-d118": 470_702, "caduceus-ph-1k-d256": 1_934_592,
    "caduceus-ps-131k-d256-16L": 7_725_312, "caduceus-ps-1k-d118": 470_702, "caduceus-ps-1k-d256": 1_934_592,
    "hyenadna-large-1m": 6_550_528, "hyenadna-medium-160k": 6_550_528, "hyenadna-medium-450k": 6_550_528,
    "hyenadna-small-32k": 3_277_568, "hyenadna-tiny-16k-d128": 436_096, "hyenadna-tiny-1k": 436_096,
    "hyenadna-tiny-1k-d256": 1_641_088, "m2-bert-base-32k": 56_461_824, "m2-bert-small-1k": 2_934_272,
    "m2-medium-131k": 3_995_648, "m2-small-32k": 2_000_128, "m2-tiny-1k": 280_704, "mamba-7m-1m": 7_012_608,
    "mamba-small-32k": 3_508_480, "mamba-tiny-1k": 235_392, "transformer-small-32k": 3_163_648,
    "transformer-tiny-1k": 398_848,
}
# Published sizes (HyenaDNA's and Caduceus' papers and model cards), to 2 %.
PUBLISHED = {"hyenadna-tiny-1k": 0.44e6, "hyenadna-small-32k": 3.3e6, "hyenadna-medium-160k": 6.6e6,
             "hyenadna-medium-450k": 6.6e6, "hyenadna-large-1m": 6.6e6, "caduceus-ph-1k-d118": 0.47e6,
             "caduceus-ps-1k-d118": 0.47e6}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_size_is_listed_here():
    assert available_models() == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_named_size_builds_with_its_parameter_count(name):
    with torch.device("meta"):
        model = build(name)
    assert _count(model) == PARAMETERS[name]
    if name in PUBLISHED:
        assert abs(PARAMETERS[name] - PUBLISHED[name]) / PUBLISHED[name] < 0.02


@pytest.mark.parametrize("fixture, name", [("caduceus-ph", "caduceus-ph-1k-d118"), ("caduceus-ps", "caduceus-ps-1k-d118")])
def test_caduceus_sizes_have_the_released_layout(fixture, name, shared_dir):
    """A Hub checkpoint made by the reference code has exactly the parameters of our YAML at its width and depth,
    so the YAML's non-size fields (weight tying, RC sharing) are the released ones."""
    released = genomix.from_pretrained(shared_dir / "fixtures" / fixture)
    with torch.device("meta"):
        ours = build(name, d_model=released.config.d_model, n_layer=released.config.n_layer)
    assert type(ours) is type(released) and _count(ours) == _count(released)


def test_every_recipe_loads_and_names_a_model_it_can_build():
    for name in available_recipes():
        recipe = load_recipe(name)
        assert load_config(recipe.model, **recipe.model_overrides).max_seq_len >= recipe.seq_len, name
    for path in sorted((CONFIGS / "finetune").glob("*.yaml")):
        load_finetune_recipe(path.stem)
    for path in sorted((CONFIGS / "icl").glob("*.yaml")):
        load_icl_recipe(path.stem)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="caduceus-ph-1k-d118"):
        build("no-such-model")
    with pytest.raises(ConfigError, match="hyenadna-hg38"):
        load_recipe("no-such-recipe")
    with pytest.raises(ConfigError, match="genomic-benchmarks"):
        load_finetune_recipe("no-such-recipe")


@pytest.mark.parametrize("name, field, value", [
    ("mamba-tiny-1k", "n_layer", -1), ("hyenadna-tiny-1k", "n_layer", 0),  # built a model with no blocks
    ("transformer-tiny-1k", "d_model", 0),  # built one whose logits were all zero
    ("transformer-tiny-1k", "n_head", 0),  # ZeroDivisionError
    ("caduceus-ph-1k-d118", "vocab_size", 0),  # IndexError in the complement map
    ("m2-tiny-1k", "max_seq_len", 0), ("mamba-tiny-1k", "d_state", 0), ("m2-tiny-1k", "monarch_nblocks", 0),
])
def test_a_size_below_one_is_refused_by_name_when_the_config_is_made(name, field, value):
    with pytest.raises(ConfigError, match=rf"{field} must be a whole number >= 1, got {value}"):
        build(name, **{field: value})
    config = load_config(name)
    with pytest.raises(ConfigError, match=rf"{field} must be a whole number >= 1"):  # a checkpoint's config.json too
        type(config).from_dict({**config.to_dict(), field: value})


def test_model_yaml_value_of_the_wrong_type_names_field_and_file(tmp_path):
    path = _write(tmp_path, "mine.yaml", "model_type: genomix-hyena\nd_model: '128'\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*field d_model must be an integer, got '128'"):
        build(path)
    path = _write(tmp_path, "eps.yaml", "model_type: genomix-mamba\nnorm_epsilon: 1e-5\n")
    with pytest.raises(ConfigError, match=r"eps\.yaml.*field norm_epsilon must be a number.*write 1\.0e-3"):
        build(path)
    with pytest.raises(ConfigError, match=r"config overrides: field n_layer must be an integer"):
        build("hyenadna-tiny-1k", n_layer=2.5)
    # a Sequence[int] | dict field: checked as a list of integers or a mapping, as a checkpoint's JSON is
    path = _write(tmp_path, "cmap.yaml", "model_type: genomix-caduceus\ncomplement_map: [0, A]\n")
    with pytest.raises(ConfigError, match=r"cmap\.yaml.*field complement_map item 2 must be an integer, got 'A'"):
        build(path)


def test_model_yaml_union_fields_take_any_of_their_types(tmp_path):
    for value in ("auto", "8"):
        path = _write(tmp_path, "rank.yaml", f"model_type: genomix-mamba\nd_model: 16\nn_layer: 1\ndt_rank: {value}\n")
        assert load_config(path).dt_rank in ("auto", 8)


def test_model_yaml_unknown_model_type_and_missing_file_name_the_file(tmp_path):
    path = _write(tmp_path, "typo.yaml", "model_type: genomix-hyen\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml.*unknown model_type 'genomix-hyen'.*genomix-hyena"):
        build(path)
    with pytest.raises(ConfigError, match=r"absent\.yaml': no such file \(named sizes: \[.*hyenadna-tiny-1k"):
        build(tmp_path / "absent.yaml")


@pytest.mark.parametrize("loader, text, message", [
    # pretraining: values of the wrong type, so that no string reaches the optimiser or Lightning
    (load_recipe, "optim:\n  lr: 2e-3\n", r"field optim.lr must be a number, got '2e-3' \(YAML reads 1e-3 as text"),
    (load_recipe, "max_steps: '3'\n", "field max_steps must be an integer, got '3'"),
    (load_recipe, "data:\n  rc_aug: 'no'\n", "field data.rc_aug must be true or false, got 'no'"),
    (load_recipe, "seq_len: 1024.5\n", "field seq_len must be an integer, got 1024.5"),
    (load_recipe, "optim:\n  betas: [0.9, x]\n", "field optim.betas item 2 must be a number, got 'x'$"),
    (load_recipe, "data:\n  valid_contigs: chr1\n", "field data.valid_contigs must be a list, got 'chr1'"),
    (load_recipe, "model_overrides: 3\n", "field model_overrides must be a mapping, got 3"),
    # pretraining: unknown nested fields, a section that is not a mapping, a value out of range
    (load_recipe, "optim: {lrr: 1.0}\n", r"unknown field\(s\) \['optim\.lrr'\]; known in optim"),
    (load_recipe, "optim: 3\n", r"field optim must be a mapping"),
    (load_recipe, "max_steps: 0\n", r"recipe field max_steps must be a positive integer"),
    # the hold-out: a fraction of every contig, in range and not combined with another way of splitting
    (load_recipe, "data:\n  holdout_fraction: 0.5\n", r"recipe field data.holdout_fraction must be in \(0, 0.5\)"),
    (load_recipe, "data:\n  holdout_fraction: 0.1\n  valid_contigs: [chr1]\n",
     "recipe field data.holdout_fraction excludes data.bed, data.valid_contigs and data.test_contigs"),
    (load_recipe, "data:\n  bed: splits.bed\n  test_contigs: [chr2]\n",
     "recipe field data.bed excludes data.valid_contigs and data.test_contigs"),
    # pretraining on several genomes: the genome list and the per-source weights
    (load_recipe, "data:\n  genome: 3\n", "field data.genome must be a string or a list, got 3"),
    (load_recipe, "data:\n  genome: []\n", "recipe field data.genome must name a genome, got an empty list"),
    (load_recipe, "data:\n  source_weights: [1, 2]\n", r"field data.source_weights must be a mapping, got \[1, 2\]"),
    (load_recipe, "data:\n  source_weights: {a: x}\n", "field data.source_weights entry 'a' must be a number, got 'x'"),
    (load_recipe, "data:\n  source_weights: {a: -1}\n",
     r"recipe field data.source_weights: the weight of source 'a' must be a finite number >= 0 \(0 leaves it out\), "
     "got -1"),
    (load_recipe, "data:\n  source_weights: {a: .nan}\n", "recipe field data.source_weights: .* got nan"),
    (load_recipe, "data:\n  source_weights: {a: 0, b: 0.0}\n",
     "recipe field data.source_weights: every source weight is 0"),
    # fine-tuning: the same type checks, and values out of range
    (load_finetune_recipe, "max_epochs: one\n", "field max_epochs must be an integer, got 'one'"),
    (load_finetune_recipe, "optim:\n  lr: 1e-3\n", r"field optim.lr must be a number, got '1e-3' \(YAML reads 1e-3 as text"),
    (load_finetune_recipe, "rc_aug: 1\n", "field rc_aug must be true or false"),
    (load_finetune_recipe, "optim:\n  lr: -1.0\n", "recipe field optim.lr must be a positive learning rate"),
    (load_finetune_recipe, "train_rows: 0\n", "recipe field train_rows must be a positive integer"),
    # fine-tuning values that used to be replaced without a word
    (load_finetune_recipe, "eval_batch_size: 0\n", r"recipe field eval_batch_size must be a positive integer"),
    (load_finetune_recipe, "classifier_dropout: 1.5\n", r"recipe field classifier_dropout must be a probability"),
])
def test_recipe_errors_name_the_file_and_the_field(tmp_path, loader, text, message):
    """Every refusal of a pretraining or fine-tuning recipe names the file, then the (nested) field."""
    path = _write(tmp_path, "recipe.yaml", text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        loader(path)
