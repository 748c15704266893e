"""Variant effect scoring: VCF records -> log-likelihood ratios under a causal DNA language model, or masked
marginals under a masked one.

Typical use::

    from genomix.variants import Reference, read_vcf, score_variants
    score_variants(model, read_vcf("calls.vcf.gz"), Reference("genome.h5"), "scores.tsv")

or ``genomix score-variants --model M --vcf calls.vcf.gz --reference genome.h5 --out scores.tsv``.
"""
from __future__ import annotations

from .reference import Reference, parse_contig_map
from .score import COLUMNS, DEFAULT_WINDOW, METHODS, plan_windows, score_variants, scoring_method
from .vcf import Variant, read_vcf

__all__ = ["COLUMNS", "DEFAULT_WINDOW", "METHODS", "Reference", "Variant", "parse_contig_map", "plan_windows",
           "read_vcf", "score_variants", "scoring_method"]
