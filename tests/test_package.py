"""Package-level contract: layout, lazy imports, the kernels inside the package, the CLI entry point."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import genomix
from genomix.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_required_top_level_layout():
    for name in ("genomix", "kernels", "pipelines", "configs", "notebooks", "tests", "environment.yml",
                 "pyproject.toml", "README.md", ".ci/run"):
        assert (ROOT / name).exists(), name


def test_kernels_and_configs_ship_inside_the_package():
    import genomix.kernels as kernels

    assert Path(kernels.__file__).resolve().parent == (ROOT / "kernels").resolve()
    assert callable(kernels.fftconv) and callable(kernels.selective_scan)
    assert (Path(genomix.__file__).parent / "configs" / "models").resolve() == (ROOT / "configs" / "models").resolve()


def test_top_level_kernels_name_is_left_to_the_installed_distribution(tmp_path):
    """Run from the checkout (its root first on sys.path), ``import kernels`` still gets an installed
    distribution of that name (transformers >= 5.25 imports Hugging Face's at start-up), while
    ``genomix.kernels`` keeps exporting the ops."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("MARKER = 'installed'\n")
    code = "import kernels, genomix.kernels as ops; print(kernels.MARKER, callable(ops.fftconv))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["installed", "True"]


def test_lazy_attributes_resolve():
    assert genomix.Tokenizer.__name__ == "Tokenizer"
    assert issubclass(genomix.errors.ConfigError, genomix.GenomixError)
    assert genomix.__version__


def test_every_cli_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        help_text = subprocess.run(
            [sys.executable, "-m", "genomix", name, "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert help_text.returncode == 0, help_text.stderr
        assert "usage: genomix" in help_text.stdout
    assert parser.prog == "genomix"


def test_cli_reports_genomix_errors_cleanly():
    result = subprocess.run(
        [sys.executable, "-m", "genomix", "genome", "info", str(ROOT / "no-such-store.h5")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
