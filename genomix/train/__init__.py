"""Pretraining with Lightning: recipes, the LM module, the genome DataModule, warm-up and callbacks.

``pretrain(load_recipe("demo"), "runs/demo")`` is what ``genomix pretrain`` calls.
"""
from .callbacks import SamplerProgress, ThroughputMonitor
from .checkpoint_io import AtomicCheckpointIO
from .data import GenomeDataModule, resolve_store
from .flops import flops_per_token
from .module import LanguageModelingModule
from .recipe import DataConfig, OptimConfig, Recipe, WarmupConfig, available_recipes, load_recipe
from .run import RunResult, build_model, pretrain, resolve_resume
from .sampler import ResumableDataLoader, ResumableSampler
from .warmup import Stage, plan_warmup, stage_at

__all__ = [
    "AtomicCheckpointIO", "DataConfig", "GenomeDataModule", "LanguageModelingModule", "OptimConfig", "Recipe",
    "ResumableDataLoader", "ResumableSampler", "RunResult", "SamplerProgress", "Stage", "ThroughputMonitor",
    "WarmupConfig", "available_recipes", "build_model", "flops_per_token", "load_recipe", "plan_warmup",
    "pretrain", "resolve_resume", "resolve_store", "stage_at",
]
