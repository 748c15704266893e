"""The GPU pretraining benchmark script runs end to end on CPU at a tiny size and writes its JSON."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "bench_pretrain.py"


def test_bench_pretrain_runs_on_cpu_at_tiny_size(tmp_path, monkeypatch, capsys):
    argv = [str(SCRIPT), "--seq-len", "256", "--d-model", "16", "--n-layer", "1", "--max-len", "512",
            "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    result = json.loads((tmp_path / "bench_pretrain.json").read_text())
    assert result["seq_len"] == 256 and result["d_model"] == 16 and result["n_layer"] == 1
    assert result["checkpointing"] is True
    assert result["train"]["tokens_per_s"] > 0 and result["forward"]["tokens_per_s"] > 0
    assert [t["seq_len"] for t in result["longest"]["tried"]] == [256, 512]
    assert result["longest"]["max_trainable_seq_len"] == 512
    table = capsys.readouterr().out
    assert "training step" in table and "longest trainable context" in table
