"""The int8 sweep's own code on one small torchvision architecture at a small input:
real exports, real runtimes, real cosines (the full sweep is benchmarks/suite/int8_sweep.py)."""

import numpy as np
import pytest

from benchmarks.suite import int8_sweep as sweep
from benchmarks.suite import common


@pytest.fixture(scope="module")
def squeezenet_rows(tmp_path_factory):
    rows: list[dict] = []
    sweep.sweep_arch("squeezenet1_1", ["onnx", "torchscript"], quick=True, runs=3, threads=1, fallback=True,
                     work=tmp_path_factory.mktemp("sweep"), emit=rows.append)
    return rows


def test_natural_images_are_deterministic_normalised_and_low_frequency_heavy():
    a, b = sweep.natural_images(4, 64, seed=0), sweep.natural_images(4, 64, seed=0)
    assert a.shape == (4, 3, 64, 64) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, sweep.natural_images(4, 64, seed=1))
    pixels = a * common.IMAGENET_STD[:, None, None] + common.IMAGENET_MEAN[:, None, None]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and 0.3 < pixels.mean() < 0.6
    # 1/f amplitude: every octave holds about the same energy, so the disc of the lowest
    # frequencies (radius 1/16, about 1% of the spectrum) holds a large share (white noise: ~1%).
    power = np.abs(np.fft.fft2(pixels - pixels.mean(axis=(2, 3), keepdims=True))) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64)))
    assert power[..., f < 0.0625].sum() / power.sum() > 0.3
    # Colour channels are correlated, as in photographs.
    assert np.corrcoef(a[:, 0].ravel(), a[:, 2].ravel())[0, 1] > 0.5


def test_sweep_gives_int8_with_real_cosines_and_latencies(squeezenet_rows):
    assert [r["target"] for r in squeezenet_rows] == ["onnx", "torchscript"]
    for r in squeezenet_rows:
        assert r["status"] == "plain", r
        assert r["plain"]["error"] is None and r["lowering"] == "default" and r["float_layers"] == []
        # int8 is close to fp32 but not bit-exact: a real quantized graph ran.
        assert sweep.MIN_COSINE <= r["cosine"] < 0.999999
        assert r["cosine"] == r["plain"]["cosine"] and r["plain"]["cosine_min"] <= r["cosine"]
        assert r["fp32_ms"] > 0 and r["int8_ms"] > 0 and r["speedup"] == pytest.approx(r["fp32_ms"] / r["int8_ms"])
    assert sweep.missed(squeezenet_rows) == []
    lines = sweep.table(squeezenet_rows)
    assert len(lines) == 4 and "squeezenet1_1" in lines[2] and "plain" in lines[3]


def test_missed_names_pairs_without_int8_or_clear_refusal(squeezenet_rows):
    low = {**squeezenet_rows[0], "status": "missed", "cosine": 0.42}
    crash = {"arch": "x", "target": "tflite", "status": "failed", "cosine": None,
             "plain": {"error": {"type": "crash", "text": "worker exited with code -11", "clear": False}}}
    refused = {"arch": "y", "target": "onnx", "status": "refused", "refusal": "operator 'aten.foo' ..."}
    assert sweep.missed([*squeezenet_rows, low, crash, refused]) == [
        "squeezenet1_1/onnx: cosine 0.4200 < 0.99", "x/tflite: crash: worker exited with code -11"]
    assert sweep.summary([*squeezenet_rows, low, crash, refused]) == {
        "pairs": 5, "plain": 2, "fallback": 0, "refused": 1, "missed": 1, "failed": 1}


def test_unknown_arch_or_target_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        sweep.parse(["--arch", "resnet18,resnet9000"])
    assert e.value.code == 2 and "--arch resnet9000: unknown" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.parse(["--target", "coreml"])


def test_reduced_vit_has_a_live_head():
    # torchvision zero-initialises ViT's head: int8 would "agree" with an all-zero output.
    import torch

    torch.manual_seed(0)
    vit = sweep.ARCHS["vit"].build().eval()
    with torch.no_grad():
        out = vit(torch.from_numpy(sweep.natural_images(2, sweep.ARCHS["vit"].size, seed=1))).numpy()
    assert out.shape == (2, 1000) and np.abs(out).max() > 1e-3 and not np.allclose(out[0], out[1])
