"""Downstream tasks: labelled-sequence benchmarks (GUE, GenomicBenchmarks, Nucleotide Transformer, user
tables), their metrics, and fine-tuning.

``finetune("runs/pretrain/model", "GUE/prom/prom_core_all", "runs/prom", load_finetune_recipe("gue"))`` is
what ``genomix finetune`` calls; ``fetch_suite("gue")`` what ``genomix tasks download gue`` calls.
"""
from .finetune import ClassificationModule, FinetuneResult, finetune, load_classifier, predict_logits
from .labelled import LabelledSequences, TaskData, load_task, read_class_folders, read_labelled_fasta, read_table
from .metrics import METRICS, classification_metrics
from .recipe import FinetuneRecipe, load_finetune_recipe
from .suites import BenchmarkSuite, fetch_suite, known_suites

__all__ = [
    "METRICS", "BenchmarkSuite", "ClassificationModule", "FinetuneRecipe", "FinetuneResult", "LabelledSequences", "TaskData",
    "classification_metrics", "fetch_suite", "finetune", "known_suites", "load_classifier", "load_finetune_recipe", "load_task",
    "predict_logits", "read_class_folders", "read_labelled_fasta", "read_table",
]
