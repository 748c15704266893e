"""Package-level contract: layout, lazy imports, the kernels inside the package, the CLI entry point."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_subpackage_the_readme_names_is_an_attribute_after_import_genomix():
    """In a fresh interpreter (here other tests have imported them already): ``genomix.variants.Variant`` and
    ``genomix.tasks.finetune`` as the README writes them, without importing the subpackage first."""
    code = ("import genomix; print(genomix.variants.Variant.__name__, genomix.tasks.finetune.__name__, "
            "genomix.embed.SequenceInput.__name__, genomix.genome.__name__, 'variants' in genomix.__all__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["Variant", "finetune", "SequenceInput", "genomix.genome", "True"]


def test_every_cli_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        help_text = subprocess.run(
            [sys.executable, "-m", "genomix", name, "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert help_text.returncode == 0, help_text.stderr
        assert "usage: genomix" in help_text.stdout
    assert parser.prog == "genomix"


def test_every_option_of_the_commands_and_scripts_says_what_it_does():
    """Every ``add_argument`` in the package, ``pipelines/`` and ``kernels/`` carries help text (an AST walk, so
    scripts that need a GPU to run are covered too)."""
    import ast

    silent = []
    for folder in ("genomix", "pipelines", "kernels"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
                        and not any(keyword.arg == "help" for keyword in node.keywords)):
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not silent, silent


def test_cli_reports_genomix_errors_cleanly():
    result = subprocess.run(
        [sys.executable, "-m", "genomix", "genome", "info", str(ROOT / "no-such-store.h5")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr



def test_an_interrupt_while_the_commands_load_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the first second, while torch and triton import, exits 130 without a traceback."""
    def interrupted(name: str):
        raise KeyboardInterrupt
    monkeypatch.setattr(genomix.cli.importlib, "import_module", interrupted)
    assert genomix.cli.main(["generate", "--help"]) == 130
    assert capsys.readouterr().err == "genomix: interrupted while starting; nothing was done\n"


_AUTO_LOAD = """
import sys
{first}
import genomix
loaded = [m for m in sys.modules if m.startswith({unexpected!r}) and m != "genomix.model_types"]
assert not loaded, loaded
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
alone = AutoTokenizer.from_pretrained(sys.argv[3])  # first: a tokenizer folder without config.json
print(type(alone).__name__, alone("ACGTn")["input_ids"])
print(type(AutoConfig.from_pretrained(sys.argv[1])).__name__)
print(type(AutoModelForMaskedLM.from_pretrained(sys.argv[1])).__name__)
print(type(AutoModelForCausalLM.from_pretrained(sys.argv[2])).__name__)
print(type(AutoTokenizer.from_pretrained(sys.argv[2])).__name__)
"""


@pytest.mark.parametrize("transformers_first", [False, True])
def test_bare_import_makes_auto_classes_load_genomix_checkpoints(tmp_path, transformers_first):
    """``import genomix`` alone, which imports no torch, no transformers and no family, lets transformers'
    Auto* classes load genomix checkpoints and tokenizer folders, whether transformers is imported after genomix
    or before it."""
    from genomix.hub import save_native
    from genomix.models import build
    from genomix.tokenizer import Tokenizer

    build("caduceus-ph-1k-d118", task="masked-lm").save_pretrained(tmp_path / "caduceus")
    save_native(build("hyenadna-tiny-1k"), tmp_path / "hyena")
    Tokenizer().save_pretrained(tmp_path / "tokenizer")
    expected_ids = Tokenizer()("ACGTn")["input_ids"]
    code = _AUTO_LOAD.format(
        first="import transformers.models.auto.configuration_auto, transformers.models.auto.tokenization_auto"
        if transformers_first else "",
        unexpected=("genomix.",) if transformers_first else ("genomix.", "torch", "transformers"),
    )
    run = subprocess.run([sys.executable, "-c", code, *(str(tmp_path / name) for name in ("caduceus", "hyena",
                                                                                         "tokenizer"))],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [f"Tokenizer {expected_ids}", "CaduceusConfig", "CaduceusForMaskedLM",
                                       "HyenaForCausalLM", "Tokenizer"]


def test_recipe_help_lists_every_bundled_recipe():
    """`--recipe`'s help is built from configs/<kind>: the GPU demo recipes the README uses were missing from a
    hand-written list."""
    for command, kind in (("pretrain", "pretrain"), ("finetune", "finetune"), ("icl", "icl")):
        wide = {**os.environ, "COLUMNS": "400"}  # no line breaks inside the list (argparse wraps at hyphens)
        help_text = " ".join(subprocess.run([sys.executable, "-m", "genomix", command, "--help"], capture_output=True,
                                            text=True, cwd=ROOT, env=wide).stdout.split())
        names = sorted(p.stem for p in (ROOT / "genomix" / "configs" / kind).glob("*.yaml"))
        assert len(names) >= 3 and f"recipe name in configs/{kind} ({', '.join(names)})" in help_text
