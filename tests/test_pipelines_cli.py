"""The pipelines/ scripts as a user runs them: bad inputs stop before any work with one line and a non-zero exit
status (not a traceback, not after hours of the runs before), GPU-only scripts say so where there is no CUDA,
and results are written whole, readable like any other file."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from scoring_interrupts import interrupt_causal_scoring

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
SHARED = ROOT.parent / "shared" / "data"
GUE = SHARED / "gue"
CLINVAR = SHARED / "variants" / "clinvar_chrMT_labeled_GRCh38_rCRS.tsv"
RCRS = SHARED / "genomes" / "human_mtDNA_rCRS.fa"

GPU_ONLY = ["pipelines/bench_hyena_forward.py", "pipelines/bench_inference_graph.py", "pipelines/bench_m2.py",
            "pipelines/gpu_check_hyena_paths.py", "pipelines/profile_model.py",
            *(f"kernels/bench_{name}.py" for name in (
                "causal_conv", "fftconv", "fftconv_groups", "fftconv_prepared", "level_bounds", "middle_bound",
                "packed_product", "scan", "scan_atomics", "transpose", "two_level")),
            *(f"kernels/gpu_{name}.py" for name in ("check_fftconv", "fftconv_variants", "check_scan", "scan_variants"))]


def _pipeline(name: str) -> ModuleType:
    """``pipelines/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, PIPELINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused(main, argv: list[str], capsys) -> str:
    """Run ``main(argv)``, expect exit status 2, and return stderr after checking that it holds no traceback."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _blocked_out(tmp_path: Path) -> Path:
    """An output folder that cannot be made: a file stands where its parent should be."""
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "out"


@pytest.mark.parametrize("script", GPU_ONLY)
def test_gpu_only_scripts_say_so_in_one_line_without_cuda(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA GPU" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["kernels/gpu_check_causal_conv.py", "kernels/bench_gelu_glu.py"])
def test_a_mistyped_device_is_refused_not_reported_as_failing_kernels(script, tmp_path, monkeypatch, capsys):
    """--device tpu ran every case, caught the device error in each and reported 0/22 cases passing."""
    monkeypatch.setattr(sys, "argv", [script, "--device", "tpu", "--small", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert stop.value.code == 2 and "--device 'tpu': use cuda, or cpu" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_embed_memory_benchmark_measures_each_run_in_its_own_process(tmp_path, capsys):
    bench = _pipeline("bench_embed_memory")
    assert bench.main(["--lengths", "1500", "--batch-size", "2", "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "bench_embed_memory.json").read_text())["rows"]
    assert row["length"] == 1500 and all(row[f"{name} MiB"] > 50 and row[f"{name} s"] > 0 for name in bench.SETTINGS)
    assert "1,500 bases: genomix" in capsys.readouterr().out
    err = _refused(bench.main, ["--model", "nosuch", "--out", str(tmp_path / "no")], capsys)
    assert "unknown model 'nosuch'" in err and not (tmp_path / "no").exists()


def test_model_benchmarks_refuse_an_unknown_model_in_one_line_before_any_work(tmp_path, capsys):
    err = _refused(_pipeline("bench_generation").main, ["--models", "mamba-tiny-1k", "nosuch", "--out",
                                                        str(tmp_path / "g")], capsys)
    assert "unknown model 'nosuch'" in err and not (tmp_path / "g").exists()
    err = _refused(_pipeline("bench_mamba_scoring").main, ["--model", "nosuch", "--out", str(tmp_path / "m")], capsys)
    assert "unknown model 'nosuch'" in err and not (tmp_path / "m").exists()


def test_bench_pretrain_refuses_cuda_without_it_and_an_empty_context_search(tmp_path, monkeypatch, capsys):
    script = str(PIPELINES / "bench_pretrain.py")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for extra, message in ((["--device", "cuda"], "--device cuda: no CUDA device is available"),
                           (["--device", "tpu"], "--device 'tpu' is not a device"),
                           (["--seq-len", "64", "--max-len", "32"], "--max-len 32 is below --seq-len 64"),
                           (["--repeats", "0"], "must be a positive integer")):
        monkeypatch.setattr(sys, "argv", [script, *extra, "--out", str(tmp_path)])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(script, run_name="__main__")
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bench_pretrain.json").exists()


def test_finetune_gue_refuses_a_bad_recipe_task_or_out_before_training(tmp_path, capsys):
    main = _pipeline("finetune_gue").main
    base = ["--model", "hyenadna-tiny-1k", "--gue", str(GUE), "--accelerator", "cpu"]
    err = _refused(main, [*base, "--tasks", "tf/0", "--recipe", "nosuch", "--out", str(tmp_path / "a")], capsys)
    assert "unknown fine-tuning recipe 'nosuch'" in err
    err = _refused(main, [*base, "--tasks", "tf/0", "tf/99", "--out", str(tmp_path / "b")], capsys)
    assert "no task folder tf/99" in err and "prom/prom_core_all" in err
    err = _refused(main, [*base, "--tasks", "tf/0", "--out", str(_blocked_out(tmp_path))], capsys)
    assert "afile is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing was trained or written


def test_finetune_gue_exits_1_when_a_task_failed(tmp_path, capsys):
    main = _pipeline("finetune_gue").main
    args = ["--model", "hyenadna-tiny-1k", "--gue", str(GUE), "--tasks", "EMP/H3", "--accelerator", "cpu",
            "--out", str(tmp_path)]
    assert main(args) == 1
    assert "no train split" in json.loads((tmp_path / "finetune_gue.json").read_text())["rows"][0]["error"]


def _interrupted(main, argv: list[str]) -> int:
    """The exit status of ``main(argv)`` stopped by Ctrl-C; a ``KeyboardInterrupt`` that escapes it (a traceback
    for the user) fails the test instead of stopping the whole test session."""
    try:
        main(argv)
    except SystemExit as stop:
        return stop.code
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main() as a KeyboardInterrupt traceback")
    pytest.fail("main() finished although interrupted")


def _tiny_suite(tmp_path: Path) -> Path:
    """A GUE-layout suite with one task, ``prom/tiny``: the first rows of each split of ``prom_core_tata`` (both
    classes in each), small enough to fine-tune in seconds."""
    task = tmp_path / "suite" / "prom" / "tiny"
    task.mkdir(parents=True)
    for split, rows in (("train", 64), ("dev", 32), ("test", 32)):
        with gzip.open(GUE / "prom" / "prom_core_tata" / f"{split}.csv.gz", "rt") as fh:
            (task / f"{split}.csv").write_text("".join(fh.readline() for _ in range(rows + 1)))
    return tmp_path / "suite"


def test_finetune_gue_refuses_what_every_task_would_fail_on_before_training(tmp_path, capsys):
    main = _pipeline("finetune_gue").main
    base = ["--gue", str(GUE), "--tasks", "prom/prom_core_tata", "--out", str(tmp_path / "out")]
    err = _refused(main, ["--model", "nosuch-model", "--accelerator", "cpu", *base], capsys)
    assert "'nosuch-model' is neither a local directory" in err
    err = _refused(main, ["--model", "hyenadna-tiny-1k", "--accelerator", "cpu", "--devices", "3", *base], capsys)
    assert "batch size 128 cannot be split over 3 devices" in err
    assert "invalid choice: 'bogus'" in _refused(main, ["--model", "hyenadna-tiny-1k", "--accelerator", "bogus",
                                                        *base], capsys)
    err = _refused(main, ["--model", "hyenadna-tiny-1k", "--gue", str(tmp_path / "nogue"), "--out",
                          str(tmp_path / "out")], capsys)
    assert "no such folder" in err
    err = _refused(main, ["--model", "hyenadna-tiny-1k", "--gue", str(GUE), "--tasks", "prom/prom_core_tat",
                          "--out", str(tmp_path / "out")], capsys)
    assert "prom/prom_core_tat (did you mean 'prom/prom_core_tata'" in err
    assert not (tmp_path / "out").exists()


def test_finetune_gue_reuses_only_its_own_results_and_records_its_settings(tmp_path, capsys):
    main = _pipeline("finetune_gue").main
    run = ["--gue", str(_tiny_suite(tmp_path)), "--recipe", "quick", "--max-epochs", "1", "--train-rows", "64",
           "--accelerator", "cpu", "--quiet", "--out", str(tmp_path / "out")]
    assert main(["--model", "hyenadna-tiny-1k", *run]) == 0
    assert "[1/1] prom/tiny: fine-tuning into" in capsys.readouterr().out  # said before the task's long work
    err = _refused(main, ["--model", "mamba-tiny-1k", *run], capsys)  # not the hyena results under mamba's name
    assert "other settings" in err and "model: hyenadna-tiny-1k -> mamba-tiny-1k" in err
    first = json.loads((tmp_path / "out" / "finetune_gue.json").read_text())["rows"][0]
    assert main(["--model", "hyenadna-tiny-1k", *run]) == 0
    result = json.loads((tmp_path / "out" / "finetune_gue.json").read_text())
    assert result["rows"][0]["reused"] and result["train_rows"] == 64 and result["accelerator"] == "cpu"
    seconds = json.loads((tmp_path / "out" / "prom_tiny" / "metrics.json").read_text())["seconds"]
    assert seconds["train"] > 0 and seconds["predict"] > 0  # how long the reused task took is still reported
    assert result["rows"][0]["minutes"] == first["minutes"] == (seconds["train"] + seconds["predict"]) / 60
    assert f"{first['minutes']:.1f}*" in capsys.readouterr().out
    assert result["resolved_recipe"]["optim"]["lr"] == 2e-3 and result["tasks"] == ["prom/tiny"]
    assert result["command"].endswith(" ".join(run[-2:])) and "--train-rows 64" in result["command"]


def test_finetune_gue_ctrl_c_stops_in_one_line_that_says_how_to_continue(tmp_path, monkeypatch, capsys):
    import genomix.tasks

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped in epoch 1; ... the same command with --resume auto continues from it")

    monkeypatch.setattr(genomix.tasks, "finetune", interrupted)
    main = _pipeline("finetune_gue").main
    assert _interrupted(main, ["--model", "hyenadna-tiny-1k", "--gue", str(GUE), "--tasks", "tf/0", "--accelerator",
                               "cpu", "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the same command continues" in err and "--resume" not in err


def _labelled(tmp_path: Path, rows: int, label: str | None = None) -> Path:
    """The first ``rows`` ClinVar rows (the last one's label replaced by ``label`` if given)."""
    lines = CLINVAR.read_text().splitlines()[: rows + 1]
    if label is not None:
        fields = lines[-1].split("\t")
        fields[4] = label
        lines[-1] = "\t".join(fields)
    path = tmp_path / "labelled.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_variant_scoring_refuses_bad_inputs_in_one_line(tmp_path, capsys):
    main = _pipeline("eval_variant_scoring").main
    common = ["--model", "hyenadna-tiny-1k", "--reference", str(RCRS), "--window", "64", "--device", "cpu"]
    err = _refused(main, [*common, "--variants", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "a")], capsys)
    assert "none.tsv: no such labelled variant table" in err
    bad = _labelled(tmp_path, 3, label="Pathogenic")
    err = _refused(main, [*common, "--variants", str(bad), "--out", str(tmp_path / "b")], capsys)
    assert "line 4: label 'Pathogenic' is not 0 (benign) or 1 (pathogenic)" in err
    good = _labelled(tmp_path, 2)
    err = _refused(main, [*common, "--variants", str(good), "--out", str(_blocked_out(tmp_path))], capsys)
    assert "afile is a file" in err
    err = _refused(main, [*common, "--variants", str(good), "--out", str(tmp_path / "c")], capsys)  # no --contig-map
    assert "no contig 'MT'" in err and "--resume" not in err  # stopped at the first row: nothing to resume


def test_eval_variant_scoring_json_is_readable_like_its_other_outputs(tmp_path):
    main = _pipeline("eval_variant_scoring").main
    args = ["--model", "hyenadna-tiny-1k", "--variants", str(_labelled(tmp_path, 2)), "--reference", str(RCRS),
            "--contig-map", "MT=MT_human", "--window", "64", "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    mode = lambda name: (tmp_path / "out" / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("eval_variant_scoring.json") == mode("scores.tsv")  # not mkstemp's 0600
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def _table(tmp_path: Path, *rows: str) -> Path:
    """A labelled table: ClinVar's header, then ``rows`` (tab-separated lines) as they are."""
    path = tmp_path / "table.tsv"
    path.write_text("\n".join([CLINVAR.read_text().splitlines()[0], *rows]) + "\n")
    return path


def test_eval_variant_scoring_refuses_malformed_rows_by_their_table_line_before_writing(tmp_path, capsys):
    main = _pipeline("eval_variant_scoring").main
    common = ["--model", "hyenadna-tiny-1k", "--reference", str(RCRS), "--contig-map", "MT=MT_human", "--window",
              "64", "--device", "cpu", "--out", str(tmp_path / "out")]
    good = "MT\t3243\tA\tG\t1"
    for rows, message in (((), "no variants below the header line"),
                          ((good, "MT\t3271\tT"), "line 3: no alt, label (a row cut short?)"),
                          ((good, "MT\tx12\tA\tG\t0"), "line 3: position 'x12' is not a positive integer"),
                          ((good, "MT\t3243\tA\tG,T\t0"), "line 3: A>G,T has several alleles")):
        assert message in _refused(main, ["--variants", str(_table(tmp_path, *rows)), *common], capsys)
    err = _refused(main, ["--variants", str(_table(tmp_path, good)), *common[2:], "--model", "nosuch-model"], capsys)
    assert "'nosuch-model' is neither" in err
    assert not (tmp_path / "out").exists()  # no variants.vcf left behind by a run that never scored


def test_eval_variant_scoring_json_is_strict_json_with_every_setting(tmp_path, capsys):
    main = _pipeline("eval_variant_scoring").main
    table = _table(tmp_path, "MT\t3243\tA\tG\t1", "MT\t3271\tT\tC\t1", "MT\t3243\tC\tG\t0")  # REF is A
    args = ["--model", "hyenadna-tiny-1k", "--variants", str(table), "--reference", str(RCRS), "--contig-map",
            "MT=MT_human", "--window", "64", "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "1 of 3 variants were not scored (ref_mismatch: 1)" in out and "scoring variants" in err  # progress
    text = (tmp_path / "out" / "eval_variant_scoring.json").read_text()
    result = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert result["table"][0]["auroc"] is None  # both scored variants are pathogenic
    assert (result["method"], result["window"], result["batch_size"], result["device"]) == ("causal", 64, 16, "cpu")
    assert result["contig_map"] == ["MT=MT_human"] and result["weights"].startswith("sha256:")
    assert result["command"].endswith(" ".join(args))


def test_eval_variant_scoring_ctrl_c_keeps_scored_rows_for_resume(tmp_path, monkeypatch, capsys):
    calls = interrupt_causal_scoring(monkeypatch, 2)
    main = _pipeline("eval_variant_scoring").main
    args = ["--model", "hyenadna-tiny-1k", "--variants", str(_labelled(tmp_path, 3)), "--reference", str(RCRS),
            "--contig-map", "MT=MT_human", "--window", "64", "--batch-size", "1", "--device", "cpu", "--quiet",
            "--out", str(tmp_path / "out")]
    assert _interrupted(main, args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the 1 rows written so far are kept" in err and "--resume" in err
    assert main([*args, "--resume"]) == 0
    assert len(calls) == 4  # the row kept was not scored again
    assert json.loads((tmp_path / "out" / "eval_variant_scoring.json").read_text())["table"][0]["n"] == 3


def test_eval_variant_scoring_overwrite_starts_again_where_other_settings_are_refused(tmp_path, monkeypatch, capsys):
    module = _pipeline("eval_variant_scoring")
    out = tmp_path / "out"
    args = ["--model", "hyenadna-tiny-1k", "--variants", str(_labelled(tmp_path, 3)), "--reference", str(RCRS),
            "--contig-map", "MT=MT_human", "--window", "64", "--batch-size", "1", "--device", "cpu", "--quiet",
            "--out", str(out)]
    with monkeypatch.context() as patch:
        interrupt_causal_scoring(patch, 2)
        assert _interrupted(module.main, args) == 130
    capsys.readouterr()
    changed = [*args, "--window", "32"]  # the last --window wins
    err = _refused(module.main, [*changed, "--resume"], capsys)
    assert "window: 64 -> 32" in err and "(--overwrite without --resume)" in err  # advice this script takes
    assert "overwrite=True (--overwrite) starts again" in _refused(module.main, changed, capsys)
    assert module.main([*changed, "--overwrite"]) == 0
    assert json.loads((out / "eval_variant_scoring.json").read_text())["window"] == 32
    err = _refused(module.main, changed, capsys)  # a finished run is replaced only when asked, before the model loads
    assert "scores.tsv exists; pass overwrite=True (--overwrite)" in err
    opened, real_open = [], open
    monkeypatch.setattr("builtins.open", lambda file, *a, **k: opened.append(Path(file)) or real_open(file, *a, **k))
    settings, scored = module.read_scores(out / "scores.tsv", 3)
    monkeypatch.undo()
    assert opened == [out / "scores.tsv"]  # one pass: rows and settings line together
    assert settings["window"] == "32" and [row["id"] for row in scored] == ["row0", "row1", "row2"]


def test_bench_cpu_inference_refuses_bad_runs_and_out_in_one_line(tmp_path, capsys):
    main = _pipeline("bench_cpu_inference").main
    err = _refused(main, ["--runs", "hyenadna-tiny-1k:256", "--out", str(tmp_path)], capsys)
    assert "expected MODEL:LENGTH:BATCH" in err
    assert "must be a positive integer" in _refused(main, ["--repeats", "0", "--out", str(tmp_path)], capsys)
    err = _refused(main, ["--runs", "nosuch:64:1", "--repeats", "1", "--out", str(tmp_path)], capsys)
    assert "unknown model 'nosuch'" in err
    err = _refused(main, ["--runs", "hyenadna-tiny-1k:4096:1", "--repeats", "1", "--out", str(tmp_path)], capsys)
    assert "longer than this model's max_seq_len" in err
    err = _refused(main, ["--runs", "hyenadna-tiny-1k:64:1", "--out", str(_blocked_out(tmp_path))], capsys)
    assert "afile is a file" in err
    assert not (tmp_path / "bench_cpu_inference.json").exists()


def test_bench_weights_check_times_loads_with_and_without_the_record(tmp_path, capsys, monkeypatch):
    module = _pipeline("bench_weights_check")
    assert "unknown model 'nosuch'" in _refused(module.main, ["--models", "nosuch", "--out", str(tmp_path)], capsys)
    err = _refused(module.main, ["--models", "mamba-tiny-1k", "--out", str(_blocked_out(tmp_path))], capsys)
    assert "afile is a file" in err
    hashed = []
    real = module.genomix.hub.integrity.file_digest
    monkeypatch.setattr(module.genomix.hub.integrity, "file_digest", lambda path: hashed.append(path) or real(path))
    assert module.main(["--models", "mamba-tiny-1k", "--repeats", "2", "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "bench_weights_check.json").read_text())["rows"]
    assert row["model"] == "mamba-tiny-1k" and len(row["checked_s"]) == len(row["unchecked_s"]) == 2
    assert row["weights_bytes"] > 0 and row["extra_s"] == row["checked_median_s"] - row["unchecked_median_s"]
    assert row["hash_median_s"] > 0
    # saved once (the record), then one untimed and two timed loads checked; the copy without it never hashed
    assert [path.parent.name for path in hashed[1:]] == ["checked"] * 3 and len(hashed) == 4
    assert "mamba-tiny-1k" in capsys.readouterr().out


def test_bench_data_refuses_sizes_and_outputs_it_cannot_use_before_working(tmp_path, capsys):
    main = _pipeline("bench_data").main
    work = ["--work-dir", str(tmp_path / "work")]
    err = _refused(main, ["--synthetic-mb", "4", *work, "--out", str(tmp_path / "b.json")], capsys)
    assert "--synthetic-mb must be at least 5" in err
    for option in ("--reads", "--batches", "--batch-size"):
        assert "must be a positive integer" in _refused(main, [option, "0", *work], capsys)
    (tmp_path / "folder").mkdir()
    assert "is a directory" in _refused(main, ["--synthetic-mb", "5", *work, "--out", str(tmp_path / "folder")], capsys)
    err = _refused(main, ["--synthetic-mb", "5", *work, "--out", str(_blocked_out(tmp_path) / "b.json")], capsys)
    assert "afile is a file" in err
    assert not (tmp_path / "work").exists()


def test_bench_data_says_when_it_skips_e_coli(tmp_path, capsys):
    module = _pipeline("bench_data")
    module.SHARED = tmp_path / "no-shared"
    out = tmp_path / "b.json"
    assert module.main(["--synthetic-mb", "5", "--reads", "1", "--workers", "0", "--batches", "1", "--batch-size", "1",
                        "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0
    assert "E. coli conversion is skipped" in capsys.readouterr().out
    assert [r["input"] for r in json.loads(out.read_text())["convert"]] == ["synthetic_5mb.fa.gz"]


def test_bench_generation_refuses_too_few_new_tokens(tmp_path, capsys):
    err = _refused(_pipeline("bench_generation").main, ["--new", "3", "--out", str(tmp_path)], capsys)
    assert "--new must be at least 4" in err


def test_bench_mamba_scoring_counts_only_the_tokens_it_stepped(tmp_path):
    main = _pipeline("bench_mamba_scoring").main
    assert main(["--model", "mamba-tiny-1k", "--lengths", "32", "--stepped", "100", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "bench_mamba_scoring.json").read_text())[0]
    assert row["stepped_tokens"] == 32


def test_benchmarks_on_models_refuse_bad_names_in_one_line(tmp_path, capsys):
    err = _refused(_pipeline("check_half_precision").main, ["--models", "nosuch", "--out", str(tmp_path)], capsys)
    assert "unknown model 'nosuch'" in err
    err = _refused(_pipeline("bench_score_variants").main, ["--fasta", str(tmp_path / "none.fa"), "--out",
                                                             str(tmp_path)], capsys)
    assert "no such FASTA file" in err


def _bash(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PIPELINES / script), *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", ["gpu_suite.sh", "pretrain_transfer.sh", "gpu_cli_smoke.sh"])
def test_shell_pipelines_print_their_usage(script):
    result = _bash(script, {}, "--help")
    assert result.returncode == 0 and f"bash pipelines/{script}" in result.stdout


def test_gpu_suite_refuses_unknown_steps_and_a_machine_without_cuda(tmp_path):
    result = _bash("gpu_suite.sh", {"OUT": str(tmp_path / "out"), "STEPS": "pretrain nosuch"})
    assert result.returncode == 2 and "unknown step 'nosuch'" in result.stderr
    if shutil.which("nvidia-smi") is None and not torch.cuda.is_available():
        result = _bash("gpu_suite.sh", {"OUT": str(tmp_path / "out"), "STEPS": "m2"})
        assert result.returncode == 2 and "needs a CUDA GPU" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_gpu_cli_smoke_test_refuses_a_machine_without_cuda(tmp_path):
    result = _bash("gpu_cli_smoke.sh", {"OUT": str(tmp_path / "out")})
    assert result.returncode == 2 and "needs a CUDA GPU" in result.stderr and not (tmp_path / "out").exists()
