"""Argument types for numeric options that must be in range, so that a bad value is refused by the parser
(``genomix finetune: error: argument --lr: must be a positive number, got -1``) before any work starts; and the
``--recipe`` option of the commands that take bundled YAML recipes, whose help lists what is bundled."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

_BUNDLED = Path(__file__).resolve().parents[1] / "configs"


def positive_int(text: str) -> int:
    """An integer of 1 or more (row counts, steps, lengths)."""
    return _checked(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer of 0 or more (how many items to list)."""
    return _checked(text, int, lambda v: v >= 0, "0 or a positive integer")


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rates, temperatures); NaN and infinity are refused too."""
    return _checked(text, float, lambda v: 0 < v < math.inf, "a positive finite number")


def _checked(text: str, kind: type, ok, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


#: Seeds numpy (and so Lightning's ``seed_everything``) accepts.
MAX_SEED = 2**32 - 1


def devices_option(text: str) -> int | str:
    """``--devices``: ``auto`` or a positive number of devices, refused by the parser otherwise (Lightning would
    end a run of ``--devices 0`` or ``--devices two`` in a traceback)."""
    if text == "auto":
        return text
    return _checked(text, int, lambda v: v >= 1, "'auto' or a positive integer")


def seed_option(text: str) -> int:
    """``--seed``: an integer that numpy can seed with (0 to 2**32 - 1)."""
    return _checked(text, int, lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")


def add_recipe_option(parser: argparse.ArgumentParser, kind: str, default: str | None,
                      default_text: str | None = None) -> None:
    """``--recipe``: a name of a recipe bundled in ``configs/<kind>`` (listed in the help from the package's own
    files, so a new recipe cannot be missing from it) or a YAML path; ``default_text`` says what the default is
    where it is not ``default`` itself (chosen later)."""
    names = ", ".join(sorted(path.stem for path in (_BUNDLED / kind).glob("*.yaml")))
    parser.add_argument("--recipe", default=default, help=f"recipe name in configs/{kind} ({names}) or a YAML path "
                                                          f"(default: {default_text or default})")
