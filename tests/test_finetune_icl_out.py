"""What a refused `genomix finetune` or `genomix icl --resume` leaves in ``--out``: nothing new. A fine-tuning run
refused for its task, model, recipe values or devices makes no output folder (nor the folders above it), and an
``--out`` that was there already is left as it was; several devices on a machine without a GPU need the CPU
accelerator by name, as in pretraining. (A k-shot ``icl --resume`` into an unfinished soft-prompt run is in
tests/test_generate_icl_leftovers.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genomix.cli import main


def _task(root: Path, classes: int = 2) -> Path:
    """A task folder: train/dev/test CSVs of short sequences, ``classes`` labels in turn."""
    root.mkdir(parents=True)
    for split, rows in (("train", 16), ("dev", 6), ("test", 6)):
        lines = "".join(f"{'ACGT'[i % 4] * 6}{'AC'[i % 2]},{i % classes}\n" for i in range(rows))
        (root / f"{split}.csv").write_text("sequence,label\n" + lines)
    return root


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine has no CUDA GPU, whatever the one running the tests has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


#: A refused fine-tuning run, by what refuses it: extra arguments (``{task}``: a good task folder) and the error.
REFUSED = {
    "task": (["--task", "{tmp}/no-task"], "no-task"),
    "model": (["--task", "{task}", "--model", "hyenadna-tiny-9k"], "Did you mean 'hyenadna-tiny-1k'"),
    "max_length": (["--task", "{task}", "--max-length", "100000000"], "exceeds hyenadna-tiny-1k's max_seq_len"),
    "train_rows": (["--task", "{task}", "--train-rows", "1"], "hold only one class"),
    "devices": (["--task", "{task}", "--devices", "2"], "--devices 2: no CUDA GPU was found"),
}


@pytest.mark.parametrize("reason", sorted(REFUSED))
def test_a_refused_finetune_run_leaves_no_output_folder(tmp_path, capsys, no_gpu, reason):
    task = _task(tmp_path / "task")
    extra, message = REFUSED[reason]
    out = tmp_path / "runs" / "new" / "run"
    args = ["finetune", "--model", "hyenadna-tiny-1k", "--recipe", "quick", "--batch-size", "4", "--quiet",
            "--out", str(out), *extra]
    assert main([arg.format(tmp=tmp_path, task=task) for arg in args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_refused_finetune_run_leaves_an_existing_out_as_it_was(tmp_path, capsys):
    task = _task(tmp_path / "task")
    empty, used = tmp_path / "empty", tmp_path / "used"
    empty.mkdir()
    used.mkdir()
    (used / "notes.txt").write_text("mine\n")
    for out in (empty, used):
        assert main(["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--recipe", "quick", "--quiet",
                     "--max-length", "100000000", "--accelerator", "cpu", "--out", str(out)]) == 2
        assert "exceeds" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
    assert [p.name for p in used.iterdir()] == ["notes.txt"] and (used / "notes.txt").read_text() == "mine\n"


def test_several_finetune_devices_without_a_gpu_need_the_cpu_accelerator_by_name(tmp_path, capsys, no_gpu):
    task = _task(tmp_path / "task", classes=3)
    base = ["finetune", "--model", "hyenadna-tiny-1k", "--task", str(task), "--recipe", "quick", "--quiet",
            "--batch-size", "4", "--devices", "2"]
    assert main([*base, "--out", str(tmp_path / "auto")]) == 2
    err = capsys.readouterr().err
    assert "--devices 2: no CUDA GPU was found on this machine" in err and "pass --accelerator cpu" in err
    # past the device check (DDP on CPU, as before), the run is refused for its recipe instead of training
    base += ["--accelerator", "cpu", "--out", str(tmp_path / "cpu")]
    assert main([*base, "--max-length", "100000000"]) == 2
    assert "exceeds hyenadna-tiny-1k's max_seq_len" in capsys.readouterr().err
    assert not (tmp_path / "auto").exists() and not (tmp_path / "cpu").exists()


def test_an_icl_prompt_too_long_in_any_scored_split_is_refused_before_scoring(tmp_path, capsys, monkeypatch):
    """Prompt lengths were checked one split at a time, so a long test row stopped the run only after dev was
    scored and its predictions written; every split to be scored is checked first, naming the row's file and line
    and the command-line flags that shorten it."""
    import genomix.tasks.icl as icl_module

    task = _task(tmp_path / "task")
    (task / "test.csv").write_text("sequence,label\nACGTAC,0\n" + "ACGT" * 400 + ",1\n")
    monkeypatch.setattr(icl_module, "score_split", lambda *a, **k: pytest.fail("a split was scored"))
    out = tmp_path / "icl"
    assert main(["icl", "--model", "hyenadna-tiny-1k", "--task", str(task), "--shots", "1", "--quiet",
                 "--device", "cpu", "--test-rows", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{task / 'test.csv'}:3 (test row 1): an ICL prompt of" in err
    assert "exceeds the model's max_seq_len" in err and "--max-length (max_length)" in err
    assert not out.exists()


@pytest.mark.parametrize("reason", ["no train split", "unknown model"])
def test_an_icl_run_refused_before_any_work_makes_no_output_folder(tmp_path, capsys, reason):
    """--out was made before the task was read and the model loaded, so these refusals left an empty folder."""
    task = _task(tmp_path / "task")
    model, message = "hyenadna-tiny-1k", "has no train split"
    if reason == "no train split":
        (task / "train.csv").unlink()
    else:
        model = message = str(tmp_path / "no-such-model")
    out = tmp_path / "runs" / "icl"
    assert main(["icl", "--model", model, "--task", str(task), "--quiet", "--device", "cpu", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


#: What an --out holding a metrics.json holds, by the files beside it, and how icl names it.
FINISHED = {
    "fine-tuning": ({"checkpoints/last.ckpt": "", "metrics.json": '{"best_epoch": 0, "metrics": {}}'},
                    "a finished fine-tuning run"),
    "in-context": ({"metrics.json": '{"verbalizer": "AC", "metrics": {}}'}, "a finished in-context run"),
    "unknown": ({"metrics.json": "{}"}, "a finished run's metrics.json"),
}


@pytest.mark.parametrize("kind", sorted(FINISHED))
def test_icl_names_what_a_finished_out_holds(tmp_path, capsys, kind):
    files, held = FINISHED[kind]
    out = tmp_path / "out"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    task = _task(tmp_path / "task")
    assert main(["icl", "--model", "hyenadna-tiny-1k", "--task", str(task), "--quiet", "--out", str(out)]) == 2
    assert f"already holds {held} ({out / 'metrics.json'})" in capsys.readouterr().err
