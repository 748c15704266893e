"""Variant effect scores from a DNA model, one per ALT allele of a VCF, by one of three methods:

- ``causal``, for causal LMs (HyenaDNA, Mamba, causal M2, Transformer): the log-likelihood ratio
  ``llr = log p(alt window) - log p(ref window)`` of a window of the reference around the variant, with the
  allele substituted, summed over the window's tokens after the first;
- ``masked``, for masked LMs (Caduceus, M2-BERT): the masked marginal. The REF bases are masked in the
  reference window, and ``llr = sum_i log p(alt_i) - log p(ref_i)`` over the masked positions, from one forward.
  It compares bases at the same positions, so it scores substitutions (SNVs, MNVs); insertions and
  deletions get the status ``indel`` under a masked model;
- ``embedding``, for any model: the cosine distance ``1 - cos(e_ref, e_alt)`` between the mean final hidden
  states of the REF and ALT windows (0: the model sees no difference), for SNVs and indels alike.

Log-likelihoods are natural logs. Without a ``method`` the model's head decides: causal or masked.

Windows are ``window`` bases, centred on the variant and shifted inward at contig ends. The ALT window
has the same length: a deletion pulls in reference bases from its right, an insertion pushes them out.
Under a causal model the tokens before the variant score the same in both windows, so ``llr`` measures
how the allele itself and everything after it fit the model. A negative score means the model finds the
ALT sequence less likely.

Every VCF allele gets a row, in file order, with a ``status``: ``scored``; ``ref_mismatch`` (with
``on_ref_mismatch="skip"``; the default stops with an error naming the line); ``symbolic`` (``<DEL>``,
breakends, ``*``, ``.``, and alleles with ``N`` or other IUPAC ambiguity codes such as ``R``: not one concrete
sequence of A, C, G and T to score); ``same_as_ref`` (an ALT equal to its REF, which the VCF specification
does not allow: no change to score, and a "scored" 0 would rank it as a neutral variant); ``too_long`` (an
allele longer than half the window);
``contig_too_short``; ``too_close_to_end`` (an insertion or deletion with fewer than ``|len(ALT) - len(REF)|``
reference bases after it, so that windows of equal length cannot both hold their allele); ``indel`` (masked
method only). The ``ref_log_likelihood`` / ``alt_log_likelihood``
columns hold the two terms of ``llr``: whole windows for the causal method, the masked positions for the
masked one; ``embedding_distance`` is filled by the embedding method. Rows go to a partial file as each
batch finishes; an interrupted run continues from there with ``resume=True`` (its first alleles must be the kept
rows' own), which ``resume`` and ``overwrite`` treat as :mod:`genomix.resume` says (the policy ``embed`` follows
too); the output appears under its name only when complete.

REF is checked against the reference letter for letter, ``N`` on either side matching anything. An ambiguity
code in REF (outside the VCF specification, which allows A, C, G, T and N) is accepted where the reference has
the same code, as a VCF called against a reference with a few such codes has them: the windows carry it, and
the model reads it as ``N``, as the tokenizer maps every ambiguity code. Anywhere else it is a REF mismatch
(a ``ref_mismatch`` row, or the error, which then says that REF holds ambiguity codes): ``R`` is not read as
"A or G", which would score a base the VCF did not name.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import torch
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..errors import ConfigError, GenomixError, InputFormatError, RangeError, UnknownContigError
from ..models.inference_loop import inference_loop
from ..outputs import atomic_write_text, check_output, make_output_dir, refuse_compressed_name
from ..resume import (START_AGAIN, continue_partial, end_interrupted_run, finished_output, partial_path,
                      same_weights_settings, weights_fingerprint)
from ..tokenizer import MASK_ID, encode
from .reference import Reference
from .tabix import Region, index_paths
from .vcf import Variant

log = logging.getLogger(__name__)
COLUMNS = ("chrom", "pos", "id", "ref", "alt", "status", "llr", "ref_log_likelihood", "alt_log_likelihood",
           "embedding_distance",
           "window_contig", "window_start", "window_length")
DEFAULT_WINDOW = 4096
#: How the first line of a scores file starts; the settings of the run that wrote it follow.
HEADER_START = "# genomix score-variants"
ON_REF_MISMATCH = ("error", "skip")
METHODS = ("causal", "masked", "embedding")


@dataclasses.dataclass
class _Row:
    variant: Variant
    status: str
    contig: str = ""
    start: int = -1
    offset: int = -1  # the variant's first base within the window
    ref_seq: str = ""
    alt_seq: str = ""
    ref_ll: float | None = None
    alt_ll: float | None = None
    distance: float | None = None

    def line(self) -> str:
        v = self.variant
        llr = "" if self.ref_ll is None else f"{self.alt_ll - self.ref_ll:.6g}"
        values = ["" if x is None else f"{x:.6g}" for x in (self.ref_ll, self.alt_ll, self.distance)]
        window = [self.contig, str(self.start), str(len(self.ref_seq))] if self.ref_seq else ["", "", ""]
        return "\t".join([v.chrom, str(v.pos), v.id, v.ref, v.alt, self.status, llr, *values, *window]) + "\n"


def _matches(expected: str, found: str) -> bool:
    """REF against the reference text; N in either is a wildcard (soft-masked case was upper-cased), other
    ambiguity codes match only themselves (see the module docstring)."""
    return len(expected) == len(found) and all(a == b or a == "N" or b == "N" for a, b in zip(expected, found))


def _mismatch_hint(ref: str) -> str:
    """Why a REF may not match, for the error: ambiguity codes in it, or else another assembly."""
    codes = sorted(set(ref) - set("ACGTN"))
    if codes:
        return (f"REF holds IUPAC ambiguity codes ({', '.join(codes)}), which must match the reference letter for "
                "letter; write the reference's bases in REF")
    return "check that the VCF was called against this assembly"


class RefMismatchError(InputFormatError):
    """A REF that differs from the reference (``on_ref_mismatch="error"``): its own type, since a run it stops
    can continue on the unchanged VCF with ``on_ref_mismatch="skip"``, which the advice then says."""


def check_within_contig(variant: Variant, reference: Reference, vcf: str | Path) -> str:
    """The reference's name for ``variant``'s contig, after refusing a record outside it, naming the record: an
    unknown contig (UnknownContigError), a sequence allele whose REF runs past the contig's end, or any allele
    whose POS does (RangeError; a symbolic allele has no sequence length, so only its POS is checked). Either is
    the mark of a VCF called against another assembly, which ``genomix score-variants`` checks on every record
    before it loads the model."""
    try:
        contig = reference.resolve(variant.chrom)
    except UnknownContigError as exc:
        raise UnknownContigError(f"{variant.location(vcf)}: {exc}") from None
    length = reference.lengths[contig]
    end = variant.pos - 1 + len(variant.ref) if variant.sequence_allele else variant.pos
    if end > length:
        what = "ends" if variant.sequence_allele else "is"
        raise RangeError(f"{variant.location(vcf)}: {variant.chrom}:{variant.pos} {variant.ref} {what} past the end "
                         f"of {contig} (length {length:,}) in {reference.path}; check that the VCF was called against "
                         "this assembly")
    return contig


def check_region(region: Region, reference: Reference) -> None:
    """Refuse a region (``--region``, ``--regions-bed``; contig by its VCF name) that cannot select a record the
    reference holds: its contig is not in the reference (UnknownContigError, listing the reference's contigs), or
    it starts past that contig's end (RangeError). Either would otherwise give an empty output and exit 0."""
    try:
        contig = reference.resolve(region.chrom)
    except UnknownContigError as exc:
        raise UnknownContigError(f"region {region} (--region, --regions-bed): {exc}") from None
    length = reference.lengths[contig]
    if region.start >= length:
        raise RangeError(f"region {region} (--region, --regions-bed) starts past the end of {contig} (length "
                         f"{length:,}) in {reference.path}; check its coordinates and that the reference is the "
                         "VCF's assembly")


def plan_windows(variant: Variant, reference: Reference, window: int, vcf: str | Path,
                 on_ref_mismatch: str = "error", method: str = "causal") -> _Row:
    """The row for one allele: its reference and ALT windows, or the status saying why it is not scored."""
    contig = check_within_contig(variant, reference, vcf)
    if not variant.sequence_allele:
        return _Row(variant, "symbolic")
    length = reference.lengths[contig]
    p0, n_ref, n_alt = variant.pos - 1, len(variant.ref), len(variant.alt)
    found = reference.text(contig, p0, p0 + n_ref)
    if not _matches(variant.ref, found):
        if on_ref_mismatch == "skip":
            return _Row(variant, "ref_mismatch")
        raise RefMismatchError(
            f"{variant.location(vcf)}: REF {variant.ref} does not match the reference at {contig}:{variant.pos} "
            f"({found}) in {reference.path}; {_mismatch_hint(variant.ref)}; or record such alleles as ref_mismatch "
            "rows and go on with on_ref_mismatch='skip' (--on-ref-mismatch skip)")
    if variant.alt == variant.ref:  # not an alternate allele (VCF requires ALT to differ): an llr of 0 would rank it
        return _Row(variant, "same_as_ref")
    if method == "masked" and n_ref != n_alt:
        return _Row(variant, "indel")
    extra = max(0, n_ref - n_alt)  # reference bases a deletion pulls into the ALT window
    width = min(window, length - extra)
    if width < 2:
        return _Row(variant, "contig_too_short")
    if max(n_ref, n_alt) > width // 2:
        return _Row(variant, "too_long")
    if p0 + n_ref + abs(n_alt - n_ref) > length:
        # Equal windows need |len(ALT) - len(REF)| reference bases after the REF allele: a deletion pulls them
        # into its ALT window, an insertion pushes as many out of its REF window. Too few before the end.
        return _Row(variant, "too_close_to_end")
    # The window holds the whole REF allele, the ALT window the whole ALT allele, and both stay in the contig.
    lowest, highest = max(0, p0 + max(n_ref, n_alt) - width), min(p0, length - width - extra)
    start = min(max(lowest, p0 - width // 2), highest)
    span = reference.text(contig, start, start + width + extra)  # one read serves both windows
    offset = p0 - start
    alt_seq = (span[:offset] + variant.alt + span[offset + n_ref:])[:width]
    return _Row(variant, "scored", contig, start, offset, span[:width], alt_seq)


def scoring_method(model: torch.nn.Module, method: str | None = None) -> str:
    """The method for ``model``: ``method`` if the model supports it, else by its head (``causal`` for
    next-token models, ``masked`` for masked LMs). Any model with hidden states supports ``embedding``."""
    from ..models.tasks import MaskedLMMixin, is_causal_lm

    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown scoring method {method!r}; choose one of {METHODS}")
    if method == "embedding":
        return method
    own = "masked" if isinstance(model, MaskedLMMixin) else "causal" if is_causal_lm(model) else None
    if own is None or method not in (None, own):
        raise ConfigError(f"the {method or 'likelihood'} method needs a {method or 'causal or masked'} language model; "
                          f"{type(model).__name__} is {'a ' + own + ' one' if own else 'neither'} (the embedding "
                          "method works with any model)")
    return own


def _scored_by_width(rows: list[_Row]) -> Iterator[list[_Row]]:
    by_width: dict[int, list[_Row]] = {}
    for row in rows:
        if row.status == "scored":
            by_width.setdefault(len(row.ref_seq), []).append(row)
    yield from by_width.values()


def _score_causal(model: torch.nn.Module, rows: list[_Row], device: torch.device) -> None:
    """Fill ``ref_ll``/``alt_ll`` of scored rows with whole-window log-likelihoods, one forward per group of
    equal window length."""
    from ..models.scoring import token_log_likelihoods

    for group in _scored_by_width(rows):
        ids = torch.from_numpy(encode("".join(r.ref_seq for r in group) + "".join(r.alt_seq for r in group)))
        # Summed in float64: a long window's sum is large and llr is a small difference of two of them.
        sums = token_log_likelihoods(model, ids.view(2 * len(group), -1).to(device)).double().sum(dim=1).cpu()
        for i, row in enumerate(group):
            row.ref_ll, row.alt_ll = float(sums[i]), float(sums[len(group) + i])


@torch.no_grad()
def _score_masked(model: torch.nn.Module, rows: list[_Row], device: torch.device) -> None:
    """Fill ``ref_ll``/``alt_ll`` of scored rows with the REF and ALT bases' log-probabilities at their
    masked positions of the reference window, one forward per group of equal window length."""
    for group in _scored_by_width(rows):
        ref = torch.from_numpy(encode("".join(r.ref_seq for r in group))).view(len(group), -1)
        alt = ref.clone()
        masked = torch.zeros_like(ref, dtype=torch.bool)
        for i, row in enumerate(group):
            span = slice(row.offset, row.offset + len(row.variant.ref))
            alt[i, span] = torch.from_numpy(encode(row.variant.alt))
            masked[i, span] = True
        logits = model(input_ids=ref.masked_fill(masked, MASK_ID).to(device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        pick = lambda ids: (logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * masked).double().sum(1)  # noqa: E731
        ref_ll, alt_ll = pick(ref), pick(alt)
        for i, row in enumerate(group):
            row.ref_ll, row.alt_ll = float(ref_ll[i]), float(alt_ll[i])


@torch.no_grad()
def _score_embedding(model: torch.nn.Module, rows: list[_Row], device: torch.device) -> None:
    """Fill ``distance`` of scored rows: 1 - cosine similarity of the REF and ALT windows' mean final hidden
    states, one forward per group of equal window length."""
    for group in _scored_by_width(rows):
        ids = torch.from_numpy(encode("".join(r.ref_seq for r in group) + "".join(r.alt_seq for r in group)))
        out = model(input_ids=ids.view(2 * len(group), -1).to(device), output_hidden_states=True)
        mean = out.hidden_states[-1].double().mean(dim=1).cpu()
        distance = 1.0 - torch.nn.functional.cosine_similarity(mean[: len(group)], mean[len(group):], dim=-1)
        for i, row in enumerate(group):
            row.distance = float(distance[i])


def _contig_map_setting(reference: Reference) -> dict[str, str]:
    """The reference's contig map as a setting --resume compares (rows placed on other contigs must not mix); none
    for a run without one, as runs recorded before the map was kept."""
    if not reference.contig_map:
        return {}
    return {"contig_map": ",".join(f"{vcf}={ours}" for vcf, ours in sorted(reference.contig_map.items()))}


def _header(settings: dict[str, str]) -> str:
    """The output's first two lines: the settings (``# genomix score-variants key=value ...``), then the columns."""
    return f"{HEADER_START} {' '.join(f'{k}={v}' for k, v in settings.items())}\n" + "\t".join(COLUMNS) + "\n"


def _header_settings(header: str) -> dict[str, str]:
    """The settings that ``header`` (an output's first two lines) records, the columns among them: rows under
    other columns must not mix either."""
    first, _, rest = header.partition("\n")
    columns = rest.split("\n", 1)[0].split()
    return {**dict(item.partition("=")[::2] for item in first.split()[3:]), "columns": ",".join(columns)}


def scores_settings(source: str | os.PathLike | TextIO) -> dict[str, str]:
    """The settings that a scores TSV written by :func:`score_variants` records in its first line (window, method,
    model, weights, ``meta``...) and its columns, for a harness that reports them with its results. ``source`` is
    the file's path, or the file open for reading at its start, which is then left at the first row (so a harness
    reads the file once: ``csv.DictReader(fh, settings["columns"].split(","), delimiter="\t")``)."""
    if not isinstance(source, (str, os.PathLike)):
        return _header_settings(source.readline() + source.readline())
    with open(source) as fh:
        return scores_settings(fh)


def _saved_settings(path: Path, settings: dict[str, str]) -> dict[str, str]:
    """The settings a run recorded in ``path`` (an interrupted run's partial file, or a finished run's output),
    compared with this run's ``settings``. A run with ``on_ref_mismatch=error`` (stopped by a REF mismatch, or
    finished without one) matches one with ``skip``: every row it wrote is the same under both. The model is
    compared by its weights, its path only for a run recorded without them
    (:func:`genomix.resume.same_weights_settings`)."""
    with open(path, errors="replace") as fh:  # any file may stand at an output's path
        first = fh.readline()
        if not first.startswith(HEADER_START):
            raise InputFormatError(f"{path} is not a scores file of genomix score-variants (its first line does not "
                                   f"start with {HEADER_START!r}); {START_AGAIN}, or write elsewhere")
        saved = _header_settings(first + fh.readline())
    if saved.get("on_ref_mismatch") == "error":
        saved["on_ref_mismatch"] = settings["on_ref_mismatch"]
    return same_weights_settings(saved, settings, path)


def _other_alleles(variants: Iterable[Variant], out: Path) -> str:
    """How ``variants`` differ from the alleles whose rows a finished run wrote to ``out`` (the first allele that
    differs, or their numbers); "" when they do not. Reads every allele, scoring none."""
    given = kept = 0
    with open(out) as fh:
        rows = (tuple(line.rstrip("\n").split("\t")[:5]) for line in itertools.islice(fh, 2, None))
        for i, (variant, row) in enumerate(itertools.zip_longest(variants, rows)):
            allele = None if variant is None else _allele(variant, i)
            given, kept = given + (allele is not None), kept + (row is not None)
            if allele is not None and row is not None and allele != row:
                return f"other variants (allele {i + 1} is {' '.join(allele)}, row {i + 1} {' '.join(row)})"
    return f"other variants ({given} alleles given, {kept} rows)" if given != kept else ""


def _status_counts(out: Path) -> dict[str, int]:
    """The rows per status of a finished run's output ``out``, as :func:`score_variants` returns them."""
    with open(out) as fh:
        statuses = [line.rstrip("\n").split("\t")[COLUMNS.index("status")] for line in itertools.islice(fh, 2, None)]
    return dict(collections.Counter(statuses))


def _complete_rows(partial: Path) -> list[str]:
    """The data rows of an interrupted run's partial file whose line was written whole (a last line without its
    newline was cut mid-write, and a file cut inside its two header lines holds no row)."""
    return partial.read_text().split("\n")[2:-1]


def _keep_complete_rows(partial: Path, header: str) -> list[tuple[str, ...]]:
    """Rewrite an interrupted run's partial file under ``header`` with its complete data rows, atomically (a run
    killed while it rewrites them keeps them all); returns each row's allele (chrom, pos, id, ref, alt), which the
    resumed run's first alleles must repeat (:func:`_skip`)."""
    complete = _complete_rows(partial)
    atomic_write_text(partial, header + "".join(line + "\n" for line in complete))
    return [tuple(line.split("\t")[:5]) for line in complete]


def score_variants(
    model: torch.nn.Module, variants: Iterable[Variant], reference: Reference, out: str | Path, *,
    vcf: str | Path = "", window: int | None = None, batch_size: int = 16, on_ref_mismatch: str = "error",
    resume: bool = False, overwrite: bool = False, device: str | torch.device | None = None, quiet: bool = False,
    total: int | None = None, meta: dict[str, str] | None = None, method: str | None = None,
    reuse_filters: bool = True, cuda_graphs: bool = True,
) -> dict[str, int]:
    """Score every allele of ``variants`` into the TSV ``out`` (see the module docstring); returns the number of
    rows per status. ``window``: bases per window (default the smaller of 4096 and the model's
    ``max_seq_len``, which bounds it unless the model reads long inputs through a recurrent state);
    ``batch_size``: alleles per forward (two windows each); ``meta``: settings recorded in the output's first
    line, which a resumed run must match (besides ``weights``, the model's :func:`~genomix.resume.weights_fingerprint`,
    which decides over a ``model`` name or path); ``total``: the number of alleles, for the progress bar; ``method``:
    one of :data:`METHODS` (default: by the model's head); ``reuse_filters``: keep HyenaDNA's and M2's long
    filters' spectra between forwards (faster, one filter's memory per layer); ``cuda_graphs``: replay
    repeated batch shapes from CUDA graphs on a GPU (faster, one graph's activations; both:
    :func:`genomix.models.inference_loop`)."""
    if isinstance(variants, (str, bytes, os.PathLike)):
        raise InputFormatError(f"variants must be Variant records, e.g. read_vcf({str(variants)!r}), not a "
                               f"{type(variants).__name__}")
    if not isinstance(reference, Reference):
        raise InputFormatError(f"reference must be a genomix.variants.Reference, e.g. Reference({str(reference)!r}) "
                               f"for a FASTA or genome store (contig_map= as needed), not a {type(reference).__name__}")
    method = scoring_method(model, method)
    if on_ref_mismatch not in ON_REF_MISMATCH:
        raise ConfigError(f"on_ref_mismatch must be one of {ON_REF_MISMATCH}, got {on_ref_mismatch!r}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    from ..models.scoring import reads_in_pieces

    limit = int(model.config.max_seq_len)
    window = min(DEFAULT_WINDOW, limit) if window is None else window
    if window < 2 or (window > limit and not (method == "causal" and reads_in_pieces(model))):
        raise RangeError(f"window {window} must be between 2 and the model's max_seq_len {limit}")
    out = check_scores_output(out, vcf, [reference.path], overwrite=True)  # an existing output: finished_output
    partial = partial_path(out)
    settings = {"method": method, "window": str(window), "on_ref_mismatch": on_ref_mismatch, **(meta or {}),
                **_contig_map_setting(reference), "weights": weights_fingerprint(model)}
    header = _header(settings)
    current = _header_settings(header)  # read back, as an interrupted run's header is
    if finished_output(out, partial, lambda: _saved_settings(out, current), current,
                       lambda: _other_alleles(variants, out), resume=resume, overwrite=overwrite):
        return _status_counts(out)
    keep = continue_partial(partial, lambda: _saved_settings(partial, current), current, resume=resume,
                            overwrite=overwrite, holds_rows=lambda: bool(_complete_rows(partial)))
    kept_alleles = _keep_complete_rows(partial, header) if keep else []
    done = len(kept_alleles)
    if done:
        log.info("resuming after %d rows of %s", done, partial)
    device = resolve_device(device, "device=")
    model.to(device).eval()
    counts: dict[str, int] = {}
    make_output_dir(out.parent, option="out (--out)")
    with (open(partial, "a") as fh, tqdm(total=total, unit="allele", desc="scoring variants", disable=quiet) as bar,
          inference_loop(model, reuse_filters, cuda_graphs)):
        if done == 0:
            fh.truncate(0)
            fh.write(header)
        try:
            score = {"causal": _score_causal, "masked": _score_masked, "embedding": _score_embedding}[method]
            resumed = _skip(variants, kept_alleles, counts, bar, vcf or "the variants", partial)
            for batch in _batches(resumed, reference, window, vcf, on_ref_mismatch, batch_size, method):
                score(model, batch, device)
                fh.write("".join(row.line() for row in batch))
                fh.flush()
                os.fsync(fh.fileno())
                for row in batch:
                    counts[row.status] = counts.get(row.status, 0) + 1
                bar.update(len(batch))
        except (GenomixError, KeyboardInterrupt) as exc:  # other errors: a bug, whose traceback says more
            kept = done + sum(n for status, n in counts.items() if status != "resumed")
            fh.close()
            # no row kept: the partial file (its header only) is removed, and there is nothing to resume
            end_interrupted_run(exc, kept, [partial], _stopped_advice(exc, kept, partial))
    os.replace(partial, out)
    return counts


def _stopped_advice(exc: BaseException, kept: int, partial: Path) -> str:
    """What to do with the ``kept`` rows in ``partial`` of a run that ``exc`` stopped. After Ctrl-C: resume. After
    an error, whose fix is often in the VCF: start again, since resume refuses a VCF changed since the run began
    (its kept rows are of the old file); a REF mismatch can also be passed on the unchanged VCF by skipping it."""
    kept_where = f"the {kept} rows written so far are kept in {partial}"
    resume = "rerun with resume=True (--resume) to continue after them"
    if isinstance(exc, KeyboardInterrupt):
        return f"{kept_where}; {resume}"
    skip = (" on the unchanged VCF, resume=True with on_ref_mismatch='skip' (--resume --on-ref-mismatch skip) "
            "records it as a ref_mismatch row and goes on;" if isinstance(exc, RefMismatchError) else "")
    return (f"{kept_where}; if the fix is in the VCF, {START_AGAIN}, as the kept rows are of the old file;{skip} "
            f"if the fix is elsewhere, {resume}")


def check_scores_output(out: str | Path, vcf: str | Path, inputs: Iterable[str | Path | None],
                        overwrite: bool) -> Path:
    """``out`` as a path, after :func:`genomix.outputs.check_output` with the VCF, its index (a region query reads
    it: a TSV written over it would destroy it) and the other ``inputs``; a compressed name (``scores.tsv.gz``)
    is refused too, since the rows are written as plain text (appended as they finish, for resuming), which such
    a name would misdescribe."""
    out = check_output(out, (vcf, *(index_paths(vcf) if vcf else ()), *inputs), overwrite)
    refuse_compressed_name(out, "a plain-text TSV")
    return out


#: How :func:`_skip` ends a refused resume, whichever way the variants differ from the kept rows.
_VARIANTS_CHANGED = ("the variants changed since the run stopped; resume with the ones it started on, or pass "
                     "overwrite=True (--overwrite) without resume to start again")


def _skip(variants: Iterable[Variant], kept: list[tuple[str, ...]], counts: dict[str, int], bar, source: str | Path,
          partial: Path) -> Iterator[Variant]:
    """The alleles after those whose rows the partial file keeps (``kept``: each row's chrom, pos, id, ref and alt),
    after checking that the first alleles are those rows' own: a VCF changed since the run stopped (edited,
    re-sorted, another region) would otherwise leave its kept rows beside rows of other alleles."""
    i = -1
    for i, variant in enumerate(variants):
        allele = _allele(variant, i)
        if i < len(kept):
            if allele != kept[i]:
                raise InputFormatError(f"cannot resume: allele {i + 1} of {source} is {' '.join(allele)}, but row "
                                       f"{i + 1} kept in {partial} is {' '.join(kept[i])}: {_VARIANTS_CHANGED}")
            counts["resumed"] = counts.get("resumed", 0) + 1
            bar.update(1)
            continue
        yield variant
    if i + 1 < len(kept):
        raise InputFormatError(f"cannot resume: {source} has {i + 1} allele(s), but {partial} keeps rows for "
                               f"{len(kept)}: {_VARIANTS_CHANGED}")


def _allele(variant: Variant, i: int) -> tuple[str, ...]:
    """The columns that name ``variant``, item ``i`` of the input, in a scores row: chrom, pos, id, ref, alt."""
    if not isinstance(variant, Variant):
        raise InputFormatError(f"variants must be Variant records (e.g. from read_vcf), got a "
                               f"{type(variant).__name__} as item {i}: {variant!r:.60}")
    return (variant.chrom, str(variant.pos), variant.id, variant.ref, variant.alt)


def _batches(variants: Iterable[Variant], reference: Reference, window: int, vcf: str | Path, on_ref_mismatch: str,
             batch_size: int, method: str = "causal") -> Iterator[list[_Row]]:
    """Rows in file order, cut after every ``batch_size`` scorable ones (or a long run of unscorable ones, so
    that rows keep reaching the output). A REF mismatch that stops the run first hands over the rows before it,
    to be scored and kept."""
    batch: list[_Row] = []
    scorable = 0
    for variant in variants:
        try:
            row = plan_windows(variant, reference, window, vcf, on_ref_mismatch, method)
        except RefMismatchError:
            if batch:
                yield batch
            raise
        batch.append(row)
        scorable += row.status == "scored"
        if scorable == batch_size or len(batch) >= 64 * batch_size:
            yield batch
            batch, scorable = [], 0
    if batch:
        yield batch


__all__ = ["COLUMNS", "DEFAULT_WINDOW", "METHODS", "RefMismatchError", "check_region", "check_scores_output",
           "check_within_contig", "plan_windows", "score_variants", "scores_settings", "scoring_method"]
