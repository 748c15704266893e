"""Sampled continuations of DNA prompts to FASTA (``genomix generate``).

Each prompt (a FASTA record, a BED interval of a genome store, or a sequence given on the command line) is
extended ``num_samples`` times by :func:`genomix.models.generation.generate` (or, with ``num_beams``, by the
``num_samples`` best beams of :func:`genomix.models.generation.beam_search`); the new bases (not the prompt) are
written as records ``<prompt id>/<j>`` (j = 1..num_samples) whose description gives the prompt's length, the
sample's log-likelihood under the model (nats, summed over the new bases given the prompt; to rank samples) and
the sampling settings. Prompt ``i`` (0-based, in input order) samples with a generator seeded ``seed + i``, so a
prompt's samples do not depend on which prompts came before it, or on where an interrupted run stopped.

The records go to ``.<out>.partial``, a prompt's samples at a time, flushed to disk; the settings, the byte
length of the completed prompts' records and a hash of those prompts are kept beside it
(``.<out>.partial.json``, replaced atomically after each prompt). The finished file is renamed to ``out``.
``--resume`` continues an interrupted run after its completed prompts, under the same settings (the FASTA line
width among them, so that a file never mixes two) and weights (:mod:`genomix.resume`'s policy, as ``embed`` and
``score-variants`` follow) and on the same leading prompts, cutting off a prompt whose samples were being written
when it stopped. A finished run leaves its settings and the size of its output beside it
(``.<out>.done.json``), so that ``--resume`` on a complete output finds nothing to do
(:func:`genomix.resume.finished_output`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

import torch
from tqdm.auto import tqdm

from .devices import resolve_device
from .embed import SequenceInput
from .errors import InputFormatError
from .models.generation import beam_search, generate, sliding_window
from .models.tasks import require_causal_lm
from .outputs import check_free_space, check_output, check_output_dir, make_output_dir, refuse_compressed_name
from .resume import (START_AGAIN, continue_partial, end_interrupted_run, finished_output, partial_path,
                     same_weights_settings, weights_fingerprint)
from .tokenizer import decode

log = logging.getLogger(__name__)


def generate_fasta(
    model: torch.nn.Module,
    prompts: Iterable[SequenceInput],
    out: str | os.PathLike,
    max_new_tokens: int,
    num_samples: int = 1,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    quiet: bool = False,
    total: int | None = None,
    model_name: str = "",
    overwrite: bool = False,
    resume: bool = False,
    line_width: int = 80,
    num_beams: int = 1,
    repetition_penalty: float = 1.0,
) -> Path:
    """Write ``num_samples`` continuations of ``max_new_tokens`` bases for each prompt to the FASTA file ``out``
    (which must not exist unless ``overwrite``); returns its path. ``model`` is a causal LM; sampling options
    as :func:`~genomix.models.generation.generate` (``greedy`` needs ``num_samples=1``: its samples would be
    equal). ``num_beams`` > 1: beam search instead of sampling, writing each prompt's ``num_samples`` best beams
    (at most ``num_beams``), best first. ``repetition_penalty``: transformers' (1: none). ``total``: the number
    of prompts, for the progress bar (counted in new bases)."""
    require_causal_lm(model, "generate")
    check_decoding(max_new_tokens, num_samples, greedy, num_beams, temperature, top_k, top_p)
    settings = {"model": model_name, "weights": weights_fingerprint(model), "max_new_tokens": max_new_tokens,
                "num_samples": num_samples, "greedy": greedy, "temperature": temperature, "top_k": top_k,
                "top_p": top_p, "seed": seed, "num_beams": num_beams, "repetition_penalty": repetition_penalty,
                "line_width": line_width}
    device = resolve_device(device, "device=")
    model.to(device).eval()
    out = check_output(out, overwrite=True)  # an existing output: finished_output below
    refuse_compressed_name(out, "a plain-text FASTA")
    check_output_dir(out.parent)
    partial, progress_file, record = partial_path(out), _progress_path(out), _finished_path(out)
    finished = functools.cache(lambda: _finished(record, out))  # read once, if finished_output asks
    if finished_output(out, partial, lambda: same_weights_settings(finished()["settings"], settings, out), settings,
                       lambda: _other_prompts(prompts, finished()["done"]), resume=resume, overwrite=overwrite):
        return out
    keep = continue_partial(
        partial, lambda: same_weights_settings(_recorded(progress_file, partial)["settings"], settings, partial),
        settings, resume=resume, overwrite=overwrite, holds_rows=progress_file.exists)
    if not keep:  # the record of rows not continued (or, beside no partial file, of a run killed as it finished)
        progress_file.unlink(missing_ok=True)
    done = _recorded(progress_file, partial)["done"] if keep else {"prompts": 0, "bytes": 0, "inputs": ""}
    _check_space(partial, 1 if total is None else total - done["prompts"], num_samples, max_new_tokens, line_width)
    make_output_dir(out.parent)  # after the checks, so a refused run leaves no empty folder
    record.unlink(missing_ok=True)  # the record of the output this run replaces
    inputs = hashlib.sha256()  # the prompts so far, to check that a resumed run reads the same ones
    progress = tqdm(total=None if total is None else total * num_samples * max_new_tokens, unit="base",
                    desc="generating", disable=quiet)
    index, windowed = -1, False
    try:
        with open(partial, "r+b" if keep else "wb") as fasta:
            fasta.truncate(done["bytes"])  # a prompt whose records were being written when the run stopped
            fasta.seek(done["bytes"])
            for index, prompt in enumerate(prompts):
                _add_prompt(inputs, prompt)
                if index < done["prompts"]:
                    if index + 1 == done["prompts"] and inputs.hexdigest() != done["inputs"]:
                        raise InputFormatError(f"the first {index + 1} prompts differ from those of the interrupted "
                                               f"run in {partial}: resume with its inputs, or {START_AGAIN}")
                    continue
                if len(prompt.ids) == 0:
                    raise InputFormatError(f"prompt {prompt.id!r} is empty")
                window = sliding_window(model, len(prompt.ids) + max_new_tokens - 1)
                if window is not None and not windowed:
                    windowed = True
                    log.warning("prompt %r (%d bases) and its new bases exceed the model's context: each new base "
                                "is sampled given the last %d bases only (a sliding window); later prompts like "
                                "it are not named", prompt.id, len(prompt.ids), window)
                ids = torch.from_numpy(prompt.ids).to(device)[None]
                if num_beams > 1:
                    new, log_likelihood = beam_search(model, ids, max_new_tokens, num_beams,
                                                      repetition_penalty=repetition_penalty,
                                                      on_token=lambda: progress.update(num_samples))
                    new, log_likelihood = new[:num_samples], log_likelihood[:num_samples]
                else:
                    new, log_likelihood = generate(
                        model, ids.repeat(num_samples, 1), max_new_tokens, greedy=greedy, temperature=temperature,
                        top_k=top_k, top_p=top_p, generator=_generator(device, seed + index),
                        on_token=lambda: progress.update(num_samples), return_log_likelihood=True,
                        repetition_penalty=repetition_penalty)
                described = _describe(settings, seed + index)
                for j, (row, ll) in enumerate(zip(new[:, len(prompt.ids):].cpu().numpy(), log_likelihood.tolist()),
                                              start=1):
                    fasta.write(_record(f"{prompt.id}/{j}",
                                        f"prompt_length={len(prompt.ids)} log_likelihood={ll:.4f} {described}",
                                        decode(row), line_width))
                fasta.flush()
                os.fsync(fasta.fileno())
                done = {"prompts": index + 1, "bytes": fasta.tell(), "inputs": inputs.hexdigest()}
                _write_json(progress_file, {"settings": settings, "done": done})
        if index < 0:
            raise InputFormatError("no prompts: the input is empty")
        if index + 1 < done["prompts"]:
            raise InputFormatError(f"the input has {index + 1} prompts, fewer than the {done['prompts']} the "
                                   f"interrupted run in {partial} completed: resume with its inputs")
        _write_json(record, {"settings": settings, "done": done})
        os.replace(partial, out)
        progress_file.unlink()
    except BaseException as exc:
        end_interrupted_run(exc, done["prompts"], [partial, progress_file], f"the samples of the first "
                            f"{done['prompts']} prompts are kept in {partial}; rerun with resume=True (--resume) "
                            "to continue after them")
    finally:
        progress.close()
    return out


def check_decoding(max_new_tokens: int, num_samples: int, greedy: bool, num_beams: int = 1, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None) -> None:
    """Refuse counts and option mixes :func:`generate_fasta` cannot honour (the CLI asks before it loads a
    model): beam search and greedy decoding take no sampling options, which they would otherwise ignore."""
    if max_new_tokens < 1 or num_samples < 1 or num_beams < 1:
        raise InputFormatError(f"max_new_tokens, num_samples and num_beams must be >= 1, got {max_new_tokens}, "
                               f"{num_samples} and {num_beams}")
    sampling = [name for name, value, default in (("temperature", temperature, 1.0), ("top_k", top_k, None),
                                                  ("top_p", top_p, None)) if value != default]
    if num_beams > 1:
        given = (["greedy"] if greedy else []) + sampling
        if given:
            raise InputFormatError(f"beam search is deterministic and takes no {', '.join(given)}: pass num_beams or "
                                   "sampling options, not both")
        if num_samples > num_beams:
            raise InputFormatError(f"beam search keeps {num_beams} beams per prompt: num_samples "
                                   f"(--num-samples) {num_samples} must be at most num_beams (--num-beams)")
    elif greedy and num_samples > 1:
        raise InputFormatError("greedy decoding gives one continuation per prompt: use num_samples=1, or sample")
    elif greedy and sampling:
        raise InputFormatError(f"greedy decoding takes the most likely base at every step and takes no "
                               f"{', '.join(sampling)}: pass greedy or sampling options, not both")


def _check_space(partial: Path, prompts: int, num_samples: int, max_new_tokens: int, line_width: int) -> None:
    """Refuse a run whose records cannot fit the free space beside ``partial`` before sampling anything: the bases
    and line ends of ``num_samples`` records of ``max_new_tokens`` bases for each of the ``prompts`` still to do (one
    when their number is unknown), headers not counted. A long run would otherwise stop with a full disk hours in."""
    per_record = max_new_tokens + -(-max_new_tokens // line_width)
    check_free_space(partial.parent, max(prompts, 0) * num_samples * per_record,
                     f"the records of {max(prompts, 0)} prompt(s) x {num_samples} sample(s) of "
                     f"max_new_tokens={max_new_tokens} bases", "ask for fewer new tokens or samples, or write the "
                     "output elsewhere")


def _generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` modulo 2**64: torch's 64-bit seed, which it already takes a
    negative seed to mean, so that any integer ``--seed`` (and the prompt index added to it) samples."""
    return torch.Generator(device).manual_seed(seed % 2**64)


def _describe(settings: Mapping, seed: int) -> str:
    """How a prompt's records were made, for their FASTA descriptions: the decoding and its non-default options,
    with ``seed`` the one its sampling used (the run's seed plus the prompt's index) and, for several samples,
    ``num_samples`` (a prompt's samples are drawn together), so that one record is reproduced alone by passing that
    seed and that number of samples for its prompt."""
    if settings["num_beams"] > 1:
        parts = [f"num_beams={settings['num_beams']}"]
    elif settings["greedy"]:
        parts = ["greedy"]
    else:
        parts = [f"{key}={settings[key]}" for key in ("temperature", "top_k", "top_p") if settings[key] is not None]
        parts.append(f"seed={seed}")
        if settings["num_samples"] > 1:
            parts.append(f"num_samples={settings['num_samples']}")
    if settings["repetition_penalty"] != 1.0:
        parts.append(f"repetition_penalty={settings['repetition_penalty']}")
    return " ".join(parts)


def _record(name: str, description: str, sequence: str, width: int) -> bytes:
    lines = [f">{name} {description}"] + [sequence[i:i + width] for i in range(0, len(sequence), width)]
    return ("\n".join(lines) + "\n").encode("ascii")


def _recorded(progress_file: Path, partial: Path) -> Mapping:
    """What an interrupted run recorded beside its partial output: ``settings``, and ``done`` (the prompts
    completed and the bytes their records take), after checking that ``partial`` still holds those bytes (a
    shorter file would be extended with zero bytes and renamed as if complete)."""
    recorded, kept = _read_record(progress_file)
    if recorded is None:
        raise InputFormatError(f"{partial} has no readable record of its run ({progress_file}); {START_AGAIN}")
    if partial.stat().st_size < kept:
        raise InputFormatError(f"{partial} holds fewer than the {kept} bytes that {progress_file} records: it was "
                               f"cut short; {START_AGAIN}")
    return recorded


def _read_record(path: Path) -> tuple[Mapping | None, int]:
    """A run's record (:func:`_write_json`'s ``settings`` and ``done``) and the bytes of records it counts, or
    ``(None, 0)`` when ``path`` is missing or unreadable, or lacks them."""
    try:
        recorded = json.loads(path.read_text())
        if isinstance(recorded, dict) and "settings" in recorded:
            return recorded, int(recorded["done"]["bytes"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None, 0


def _progress_path(out: Path) -> Path:
    """Where a run writing ``out`` records its settings and completed prompts while it runs."""
    return out.with_name(f".{out.name}.partial.json")


def _finished_path(out: Path) -> Path:
    """Where a finished run records the settings, prompts and size of its output ``out``."""
    return out.with_name(f".{out.name}.done.json")


def _add_prompt(digest, prompt: SequenceInput) -> None:
    """Add ``prompt`` (its id, length and token ids) to ``digest``, the hash by which a run knows its prompts."""
    digest.update(f"{prompt.id}\0{len(prompt.ids)}\0".encode() + prompt.ids.tobytes())


def _finished(record: Path, out: Path) -> Mapping:
    """What the run that wrote ``out`` recorded in ``record`` when it finished (``settings`` and ``done``, as
    :func:`_recorded`), after checking that ``out`` still has the size it had then."""
    advice = "pass overwrite=True (--overwrite) to replace it, or write elsewhere"
    recorded, size = _read_record(record)
    if recorded is None:
        raise InputFormatError(f"{out} has no readable record of the run that wrote it ({record}), so it cannot be "
                               f"told whether it is this run's output; {advice}")
    if out.stat().st_size != size:
        raise InputFormatError(f"{out} was changed after the run that wrote it finished ({size} bytes then, "
                               f"{out.stat().st_size} now); {advice}")
    return recorded


def _other_prompts(prompts: Iterable[SequenceInput], done: Mapping) -> str:
    """How ``prompts`` differ from those a finished run completed (``done``, its record); "" when they do not."""
    digest, count = hashlib.sha256(), 0
    for count, prompt in enumerate(prompts, start=1):
        _add_prompt(digest, prompt)
    if count != done["prompts"]:
        return f"other prompts ({count} given, {done['prompts']} generated from)"
    if digest.hexdigest() != done["inputs"]:
        return f"other prompts (as many, {count}, but other ids or bases)"
    return ""


def _write_json(path: Path, value: Mapping) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
