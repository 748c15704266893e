"""Every tutorial in notebooks/ runs top to bottom, and the stored notebooks match their sources."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_executes(name, tmp_path, monkeypatch):
    # the kernel inherits TMPDIR: the notebook's mkdtemp work folder goes under tmp_path, not into /tmp for good
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # a reader sees no library noise: warnings (a missing widget library, deprecations) or Lightning's banners
    noise = [o["text"] for o in outputs if o.get("name") == "stderr" and re.search(r"Warning|GPU available", o["text"])]
    assert not noise, noise


def test_stored_notebooks_match_their_sources():
    """``build_notebooks.py`` rewrites every stored notebook byte for byte (cell ids included)."""
    builder = _builder()
    assert sorted(builder.NOTEBOOKS) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for name, cells in builder.NOTEBOOKS.items():
        assert nbformat.writes(builder.build(cells)) + "\n" == (NOTEBOOKS / name).read_text(), name
