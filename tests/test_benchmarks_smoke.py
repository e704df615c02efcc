"""The benchmark suite runs end to end at its tiniest size (no time is asserted)."""

import json
import math

from conftest import ROOT, run_cli


def test_benchmark_suite_runs_and_reports_every_key(tmp_path):
    out = tmp_path / "b.json"
    proc = run_cli(["benchmarks/run.py", "--tiny", "--out", str(out)], cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    results = data["results"]
    for key in ("adv_over_baseline_step", "cpu_channels_last_speedup", "crop_only_speedup", "crop_over_read",
                "loader_headroom", "predict_seconds", "predict_peak_rss_gb", "preprocess_rss_ratio"):
        assert isinstance(results[key], float) and math.isfinite(results[key]) and results[key] > 0, key
    assert set(data["verdicts"]) >= {"adv_over_baseline_step", "crop_only_speedup"}
    assert "| adv_over_baseline_step |" in proc.stdout
