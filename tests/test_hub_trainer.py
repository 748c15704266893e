"""transformers integration: Auto* classes load a genomix directory and HF Trainer fine-tunes it."""
from __future__ import annotations

import csv
import gzip

import pytest
import torch

import genomix
from genomix.hub import save_native


@pytest.fixture(scope="module")
def native_dir(shared_dir, tmp_path_factory):
    model = genomix.from_pretrained(shared_dir / "fixtures" / "hyenadna-released-layout")
    return save_native(model, tmp_path_factory.mktemp("hub") / "native")


def gue_rows(shared_dir, n: int) -> list[tuple[str, int]]:
    with gzip.open(shared_dir / "data" / "gue" / "tf" / "0" / "dev.csv.gz", "rt") as handle:
        reader = csv.DictReader(handle)
        return [(row["sequence"], int(row["label"])) for _, row in zip(range(n), reader)]


def test_trainer_fine_tunes_a_classifier(native_dir, shared_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(native_dir)
    model = AutoModelForSequenceClassification.from_pretrained(native_dir, num_labels=2)
    assert type(model).__name__ == "HyenaForSequenceClassification"
    rows = gue_rows(shared_dir, 8)
    encoded = tokenizer([s for s, _ in rows], padding=True, return_tensors="pt")
    dataset = [
        {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i], "labels": label}
        for i, (_, label) in enumerate(rows)
    ]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    # forward's **kwargs made Trainer pass num_items_in_batch, which the loss ignored, and skip its division of the
    # loss by the gradient-accumulation steps (each step's gradient came out that many times too large)
    assert trainer.model_accepts_loss_kwargs is False
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    changed = [k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert "score.proj.weight" in changed and any(k.startswith("backbone.layers.0.mixer") for k in changed)


def test_pipelines_call_genomix_models_with_what_they_accept(tmp_path):
    """transformers' pipelines pass the tokenizer's outputs to ``forward`` (which refuses unknown keyword arguments)
    and decode top-k ids of padded logits (which may lie past the vocabulary)."""
    from transformers import pipeline

    torch.manual_seed(0)
    masked = save_native(genomix.models.build("caduceus-ph-1k-d118"), tmp_path / "mlm")
    filled = pipeline("fill-mask", model=str(masked), tokenizer=str(masked), device="cpu")("ACG[MASK]TT", top_k=16)
    assert len(filled) == 16 and all(set(p["sequence"]) <= set("ACGTN") for p in filled)
    classifier = save_native(genomix.models.build("hyenadna-tiny-1k", task="classification", num_labels=2),
                             tmp_path / "clf")
    scores = pipeline("text-classification", model=str(classifier), tokenizer=str(classifier), device="cpu")("ACGTAC")
    assert scores[0]["label"] in ("LABEL_0", "LABEL_1")
