"""The change lists every resume check shares (``genomix.resume``): one ``key: old -> new`` format, a stable
order, unset values shown alike, nested settings named by their path."""
from __future__ import annotations

import numpy as np

from genomix.resume import UNSET, changed_settings, flat_settings


def test_changes_are_listed_by_key_with_unset_values_shown_alike():
    old = {"window": "64", "model": "a", "revision": None, "pooling": "mean"}
    new = {"window": "32", "model": "a", "pooling": "", "regions": "all"}
    assert changed_settings(old, new) == ["pooling: mean -> -", "regions: - -> all", "window: 64 -> 32"]
    assert UNSET == "-"
    # ``keys`` picks and orders what is compared; values compare as values (an HDF5 attribute is a numpy scalar)
    assert changed_settings({"b": 1, "a": np.int64(1024)}, {"b": 2, "a": 1024}, keys=["b", "a"]) == ["b: 1 -> 2"]


def test_nested_settings_are_named_by_their_path():
    recipe = {"seed": 0, "optim": {"lr": 0.002, "betas": [0.9, 0.999]}, "data": {"genome": "demo", "bed": None}}
    assert flat_settings(recipe, "recipe ") == {"recipe seed": 0, "recipe optim.lr": 0.002,
                                                "recipe optim.betas": [0.9, 0.999], "recipe data.genome": "demo",
                                                "recipe data.bed": None}
    other = {**recipe, "data": {"genome": "hg38", "bed": "x.bed"}}
    assert changed_settings(flat_settings(recipe), flat_settings(other)) == ["data.bed: - -> x.bed",
                                                                             "data.genome: demo -> hg38"]
