"""The data benchmark script runs end to end on a small synthetic genome and writes its JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_small(tmp_path: Path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "pipelines/bench_data.py", "--synthetic-mb", "5", "--reads", "3", "--workers", "0",
         "--batches", "2", "--batch-size", "1", "--work-dir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "random 1 Mb reads" in result.stdout and "Mb/s" in result.stdout
    data = json.loads(out.read_text())
    assert data["convert"][0]["bp"] == 5_000_000 and data["convert"][0]["mb_per_s"] > 0
    assert [r["compression"] for r in data["random_reads"]] == ["none", "lzf"]
    assert data["loader"][0]["tokens_per_s"] > 0
    from genomix.genome import open_store

    store = open_store(tmp_path / "work" / "synthetic.h5")
    assert store.contigs == ["synth1", "synth2", "synth3", "synth4"]
    assert 0 < store.n_fraction() < 0.1  # the synthetic N runs are indexed
    text = store.sequence("synth1", 0, 20_000)
    assert any(c.islower() for c in text) and any(c.isupper() for c in text)
