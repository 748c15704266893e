"""Variant effect scoring: VCF records -> log-likelihood ratios under a causal DNA language model, or masked
marginals under a masked one.

Typical use::

    from genomix.variants import Reference, read_vcf, score_variants
    score_variants(model, read_vcf("calls.vcf.gz"), Reference("genome.h5"), "scores.tsv")

or ``genomix score-variants --model M --vcf calls.vcf.gz --reference genome.h5 --out scores.tsv``; an indexed
(bgzip + tabix/CSI) VCF can be read at regions only: ``read_vcf(path, [parse_region("chr17:43,044,295-43,125,483")])``.
"""
from __future__ import annotations

from .reference import Reference, parse_contig_map
from .score import COLUMNS, DEFAULT_WINDOW, METHODS, plan_windows, score_variants, scoring_method
from .tabix import Region, parse_region
from .vcf import Variant, read_vcf

__all__ = ["COLUMNS", "DEFAULT_WINDOW", "METHODS", "Reference", "Region", "Variant", "parse_contig_map",
           "parse_region", "plan_windows", "read_vcf", "score_variants", "scoring_method"]
