import numpy as np
import pytest

from benchmarks.harness import BenchConfig, gzip_size, measure
from benchmarks.metrics import Latency

FAST = BenchConfig(runs=5, warmup=1, warmup_s=0, isolate=False)


def test_isolated_worker_reports_peak_rss_above_its_baseline(onnx_artifacts):
    m = measure(onnx_artifacts["fp32"].path, BenchConfig(runs=5, warmup=1, warmup_s=0, isolate=True))
    assert m.peak_rss_mb > 0 and m.baseline_rss_mb > 0
    assert m.peak_rss_mb >= m.baseline_rss_mb
    assert m.latency[0].runs == 5


def test_isolated_peak_rss_belongs_to_the_worker_not_the_parent(onnx_artifacts):
    # The parent (this test process) touches 1 GB; a worker that loads a 280 KB model
    # must not report the parent's high-water mark as its own peak.
    ballast = np.ones(1024 * 2**20 // 8)
    m = measure(onnx_artifacts["fp32"].path, BenchConfig(runs=5, warmup=1, warmup_s=0, isolate=True))
    del ballast
    assert m.peak_rss_mb < 600  # a bare onnxruntime worker peaks near 110 MB


def test_in_process_measurement_reports_no_peak_rss(onnx_artifacts):
    m = measure(onnx_artifacts["fp32"].path, FAST)
    assert m.peak_rss_mb is None and m.runtime.startswith("onnxruntime ")


def test_worker_errors_come_back_typed(tmp_path):
    from compressor.errors import ArtifactError

    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty"):
        measure(tmp_path / "empty.onnx", BenchConfig(runs=5, warmup=0, warmup_s=0, isolate=True))


def test_accuracy_uses_real_eval_samples(onnx_artifacts, digits_test, tmp_path):
    x, y = digits_test
    np.savez(tmp_path / "eval.npz", pixels=x[:100], labels=y[:100])
    m = measure(onnx_artifacts["int8-dynamic"].path, FAST, tmp_path / "eval.npz")
    assert m.eval_samples == 100 and m.accuracy >= 0.97


def test_latency_percentiles_from_known_samples():
    lat = Latency.from_samples(4, [i / 1000 for i in range(1, 101)])
    assert lat.runs == 100 and lat.min_ms == pytest.approx(1.0)
    assert lat.p50_ms == pytest.approx(50.5) and lat.p90_ms == pytest.approx(90.1)
    assert lat.p99_ms == pytest.approx(99.01) and lat.throughput == pytest.approx(4000 / 50.5)


def test_gzip_size_shrinks_zeros_and_not_noise(tmp_path):
    (tmp_path / "z").write_bytes(bytes(100_000))
    (tmp_path / "n").write_bytes(np.random.default_rng(0).bytes(100_000))
    assert gzip_size([tmp_path / "z"]) < 1000
    assert gzip_size([tmp_path / "n"]) > 100_000
