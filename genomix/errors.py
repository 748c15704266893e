"""The one exception hierarchy of genomix.

Every error a user can provoke with bad input derives from :class:`GenomixError`, so callers can catch
one type. Messages say what was wrong, where (file, line, contig, position) and what to do about it.
Subclasses also derive from the closest built-in exception, so generic handlers keep working.
"""
from __future__ import annotations


class GenomixError(Exception):
    """Base class of every error genomix raises on purpose."""


class InputFormatError(GenomixError, ValueError):
    """A file (FASTA, BED, VCF, CSV, config) is malformed; the message names file and line."""


class UnknownContigError(GenomixError, KeyError):
    """A contig name that the genome store or reference does not contain."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class RangeError(GenomixError, IndexError):
    """Coordinates outside a contig, or a sequence longer than a model accepts."""


class ChecksumError(GenomixError):
    """A downloaded or cached file does not match its expected checksum or size."""


class DownloadError(GenomixError, OSError):
    """A download failed (network, HTTP status, or offline with nothing cached)."""


class DiskSpaceError(GenomixError, OSError):
    """An output would not fit in the free space of the disk it goes to (found before writing it)."""


class CheckpointError(GenomixError):
    """A checkpoint is corrupt, truncated, of an unknown layout, or does not match its config."""


class ConfigError(GenomixError, ValueError):
    """An unknown model name, or a config with missing/invalid fields."""


class TokenizationError(GenomixError, ValueError):
    """Characters that are not DNA (nor IUPAC ambiguity codes) in an input sequence."""


class TrainingError(GenomixError, RuntimeError):
    """A training run cannot continue (non-finite loss, unusable resume state)."""
