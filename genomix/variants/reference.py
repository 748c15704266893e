"""Reference sequence for variant scoring: a FASTA file (read into memory: fine for organelles, microbes
and single chromosomes) or a genome store (``genomix genome prepare``; random access from disk, for whole
genomes). VCF contig names are matched exactly, through an explicit map, or through the usual aliases
(``1`` / ``chr1``, ``M`` / ``MT`` / ``chrM``) when exactly one contig answers to them."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputFormatError, UnknownContigError


def contig_aliases(name: str) -> list[str]:
    """Other spellings of a contig name: with or without ``chr``; M, MT, chrM and chrMT for each other."""
    bare = name[3:] if name.lower().startswith("chr") else name
    names = [bare, f"chr{bare}"]
    if bare.upper() in ("M", "MT"):
        names += ["M", "MT", "chrM", "chrMT"]
    return [n for n in dict.fromkeys(names) if n != name]


def parse_contig_map(pairs: list[str]) -> dict[str, str]:
    """``["1=chr1", ...]`` (``VCF=REF`` pairs, as ``--contig-map`` takes them) as a dict, the ``contig_map`` of
    :class:`Reference`."""
    mapping = {}
    for pair in pairs:
        vcf_name, sep, ref_name = pair.partition("=")
        if not sep or not vcf_name or not ref_name:
            raise InputFormatError(f"contig map pair {pair!r} (--contig-map): expected VCF_NAME=REFERENCE_NAME, e.g. "
                                   "1=chr1")
        mapping[vcf_name] = ref_name
    return mapping


class Reference:
    """Upper-case text of contig regions by VCF contig name (see the module docstring)."""

    def __init__(self, path: str | Path, contig_map: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._store = None
        if self.path.suffix in (".h5", ".hdf5"):
            from ..genome import open_store

            self._store = open_store(self.path)
            self.lengths = dict(self._store.lengths)
        else:
            from ..genome import read_fasta

            self._sequences = read_fasta(self.path)
            self.lengths = {name: len(seq) for name, seq in self._sequences.items()}
        self.contig_map = dict(contig_map or {})
        for vcf_name, ours in self.contig_map.items():
            if ours not in self.lengths:
                raise UnknownContigError(f"contig_map maps {vcf_name!r} to {ours!r} (--contig-map {vcf_name}={ours}), "
                                         f"but there is {self._unknown(ours)}; map it to one of those")

    def _unknown(self, name: str) -> str:
        shown = ", ".join(list(self.lengths)[:8]) + (", ..." if len(self.lengths) > 8 else "")
        return f"no contig {name!r} in {self.path} (it has {len(self.lengths)}: {shown})"

    def resolve(self, chrom: str) -> str:
        """The reference's name for the VCF contig ``chrom``."""
        if chrom in self.contig_map:
            return self.contig_map[chrom]
        if chrom in self.lengths:
            return chrom
        matches = [name for name in contig_aliases(chrom) if name in self.lengths]
        if len(matches) == 1:
            return matches[0]
        found = (f"{chrom!r} could be any of {', '.join(matches)} in {self.path}" if matches
                 else self._unknown(chrom))
        raise UnknownContigError(f"{found}; map the VCF's contig to one of those names with "
                                 f"contig_map={{{chrom!r}: NAME}} (--contig-map {chrom}=NAME)")

    def text(self, contig: str, start: int, end: int) -> str:
        """Upper-case ``contig[start:end]`` (0-based, half-open, inside the contig)."""
        if self._store is not None:
            return self._store.sequence(contig, start, end).upper()
        return self._sequences[contig][start:end].upper()


__all__ = ["Reference", "contig_aliases", "parse_contig_map"]
