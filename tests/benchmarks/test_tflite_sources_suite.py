"""The tflite_sources suite's own code on its digits model: a real Keras CNN, converted by
TensorFlow, compressed by ai-edge-quantizer, timed and scored (the full suite, with
MobileNetV2, is benchmarks/suite/tflite_sources.py)."""

import json

import pytest

from benchmarks.suite import tflite_sources as suite


@pytest.mark.slow
def test_the_suite_scores_the_digits_file_against_its_targets(tmp_path, capsys):
    code = suite.main(["--models", "digits_cnn", "--runs", "5", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "tflite_sources.json").read_text())
    assert code == 0 and record["missed"] == [], out
    (r,) = record["results"]
    assert r["model"] == "digits_cnn" and r["fp32_accuracy"] > 0.85 and r["samples"] == 450
    for label in ("int8-dynamic", "int8-static"):
        v = r[label]
        assert v["cosine_mean"] >= suite.MIN_COSINE and v["size_ratio"] < 0.5 and v["p50_ms"] > 0
        assert abs(v["accuracy"] - r["fp32_accuracy"]) <= suite.MAX_ACCURACY_DROP
        assert "ai-edge-quantizer" in v["engine"]
    assert r["tf_int8"]["engine"].startswith("TFLiteConverter") and len(r["rounds"]["fp32"]) == 3
    assert out.count("MET digits_cnn") == 4
