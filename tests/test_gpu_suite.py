"""``benchmarks/gpu_suite.py`` on the CPU: its smoke version runs the parts that need no GPU on tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_smoke_runs_the_step_comparison(shared_data, tmp_path):
    results = REPO / "benchmarks" / "results"
    before = {path.name: path.read_text() for path in results.glob("*.json")}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_suite", "--smoke", "--models", "classifier", "--steps", "2",
         "--warmup", "1", "--batches", "1", "--compile-backend", "aot_eager"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "INVPROTO_DATA": str(shared_data), "PYTHONWARNINGS": "ignore",
             "INVPROTO_FID_CACHE": str(tmp_path / "fid")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for figure in ("step_ratio_vs_plain", "speedup_bf16", "speedup_compile", "speedup_channels_last", "speedup_all"):
        assert any(line.startswith(f"[smoke, not written] gpu.classifier.{figure}: ") for line in lines), figure
    assert "failed" not in result.stdout
    assert {path.name: path.read_text() for path in results.glob("*.json")} == before  # nothing written
