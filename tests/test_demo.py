"""`compressor demo` end to end: the shipped recipe on the wide digits CNN, every artifact
exported, validated and measured, and static int8 keeping the accuracy at a quarter of
the size. (Its speed is a figure of benchmarks/suite/demo_int8, not of a test.)"""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_wide_model_and_int8_keeps_accuracy_at_a_quarter_of_the_size(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "compressor.flows.cli", "demo", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("digits-wide: batch 1, 2 threads, cpu"), done.stdout[:500]
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["parameters"] > 400_000
    rows = {r["label"]: r for r in report["artifacts"]}
    assert sorted(rows) == ["fp16", "fp32", "int8-dynamic", "int8-percentile", "int8-static"]
    assert all(r["status"] == "ok" for r in rows.values()), [r["notes"] for r in rows.values()]
    fp32, int8 = rows["fp32"]["metrics"], rows["int8-static"]["metrics"]
    assert fp32["accuracy"] >= 0.99
    assert int8["accuracy"] >= fp32["accuracy"] - 0.005
    assert fp32["size_bytes"] / int8["size_bytes"] >= 3.5
    assert [m["batch"] for m in int8["latency"]] == [1, 32]
    for name in ("report.md", "report.html", "manifest.json"):
        assert (out / name).is_file()
