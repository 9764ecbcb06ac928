"""Existing float .tflite files (made by TensorFlow's TFLiteConverter) compressed by the
tflite target with ai-edge-quantizer: dynamic-range and full-integer int8 against the
file itself, batch 1, 2 threads. Two sources: a Keras CNN fitted on scikit-learn's
digits (fidelity and accuracy on the digits test split) and Keras' MobileNetV2 at
224x224 with random weights (latency; calibrated on random images).

    python -m benchmarks.suite.tflite_sources [--models digits_cnn,mobilenet_v2] [--runs 60] [--out runs/bench]

Targets (exit 1 when one is missed): on the digits, cosine against the fp32 file at
least 0.99 for dynamic and static int8 and at most 1 point of accuracy lost. On the
random-weight MobileNetV2, whose int8 error is its own (TensorFlow's converter reaches a
cosine of 0.976 in full int8), each at most 0.005 below the cosine of TFLiteConverter's
dynamic-range or full-integer int8 of the same model, timed alongside as anchors.
Latency ratios to fp32 are reported, not targeted; a NOTE line says when int8 is slower.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.suite import common

MIN_COSINE = 0.99
MAX_ACCURACY_DROP = 0.01
ANCHOR_MARGIN = 0.005
VARIANTS = ("int8-dynamic", "int8-static")
ANCHORS = {"int8-dynamic": "tf_dynamic", "int8-static": "tf_int8"}  # TFLiteConverter's twin of each


def keras_file(name: str, work: Path) -> tuple[Path, dict, dict]:
    """The float .tflite, its calibration inputs and its evaluation inputs (with labels for the digits)."""
    from compressor.data import digits_arrays
    from targets.tflite.keras import tensorflow

    tf = tensorflow()
    tf.keras.utils.set_random_seed(0)
    if name == "digits_cnn":
        (x, y), (xt, yt) = digits_arrays("train"), digits_arrays("test")
        x, xt = x.transpose(0, 2, 3, 1), xt.transpose(0, 2, 3, 1)
        model = tf.keras.Sequential([
            tf.keras.Input((8, 8, 1), name="pixels"),
            tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10)])
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=20, batch_size=64, verbose=0)
        calib, evaluation = {"x": x[:256]}, {"x": xt, "labels": yt}
    elif name == "mobilenet_v2":
        model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None,
                                                  classifier_activation=None)
        rng = np.random.default_rng(0)
        calib = {"x": rng.random((32, 224, 224, 3), dtype=np.float32) * 2 - 1}
        evaluation = {"x": rng.random((16, 224, 224, 3), dtype=np.float32) * 2 - 1}
        # Keras' initial BatchNorm statistics let random activations vanish (logits near 1e-12,
        # which int8 rounds to zero): one pass in training mode with momentum 0 sets them to the
        # calibration images' own, so every layer sees activations of unit scale.
        for layer in model.layers:
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.momentum = 0.0
        model(calib["x"], training=True)
    else:
        raise SystemExit(f"unknown model {name!r}: use digits_cnn or mobilenet_v2")
    path = work / f"{name}.tflite"
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the signature it traces
        path.write_bytes(conv.convert())
        # The anchors: TensorFlow's own dynamic-range and full-integer int8 of the same model
        # and calibration.
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        (work / f"{name}.tf_dynamic.tflite").write_bytes(conv.convert())
        conv.representative_dataset = lambda: ([calib["x"][i:i + 1]] for i in range(len(calib["x"])))
        (work / f"{name}.tf_int8.tflite").write_bytes(conv.convert())
    return path, calib, evaluation


def bench_model(name: str, work: Path, runs: int, threads: int) -> dict:
    import targets
    from benchmarks.harness import BenchConfig, measure
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import ModelSpec
    from compressor.data import Dataset
    from targets.base import run_batched
    from targets.tflite.source import load_tflite_model

    path, calib, evaluation = keras_file(name, work)
    variants = [QuantVariant(mode="dynamic"), QuantVariant(mode="static", calibration_samples=len(calib["x"]))]
    model = load_tflite_model(ModelSpec(tflite=path), work, {}, variants)
    feed = model.inputs[0].name
    t = targets.get("tflite")
    arts = {"fp32": t.export(model, None, work / f"{name}.fp32", {}, None)}
    for v in variants:
        arts[v.label] = t.export(model, v, work / f"{name}.{v.label}", {}, Dataset({feed: calib["x"]}),
                                 base=arts["fp32"])

    cfg = BenchConfig(threads=threads, runs=runs, warmup=10, warmup_s=0.5, isolate=True, keep_samples=False)
    files = {**{k: a.path for k, a in arts.items()}, **{k: work / f"{name}.{k}.tflite" for k in ANCHORS.values()}}
    p50: dict[str, list[float]] = {k: [] for k in files}
    # Interleaved rounds: a slow spell of the shared machine hits every artifact alike.
    for _ in range(3):
        for key, file in files.items():
            p50[key].append(measure(file, cfg).latency[0].p50_ms)
    med = {k: float(np.median(v)) for k, v in p50.items()}

    outs = {}
    for key, file in files.items():
        session = t.open_session(file, targets.Device(), threads)
        outs[key] = run_batched(session, {session.inputs[0].name: evaluation["x"]}, 64)[0]
    res = {"model": name, "fp32_p50_ms": med["fp32"], "fp32_mb": arts["fp32"].size_bytes / 1e6,
           "parameters": model.parameter_count(), "rounds": p50, "samples": len(evaluation["x"])}
    ref = outs["fp32"]
    if "labels" in evaluation:
        res["fp32_accuracy"] = float((ref.argmax(1) == evaluation["labels"]).mean())
    for label in (*VARIANTS, *ANCHORS.values()):
        got = outs[label]
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        art = arts.get(label)
        res[label] = {"p50_ms": med[label], "latency_ratio": med[label] / med["fp32"],
                      "size_ratio": files[label].stat().st_size / files["fp32"].stat().st_size,
                      "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                      "engine": art.meta.get("engine") if art else f"TFLiteConverter {label[3:]} (anchor)"}
        if "labels" in evaluation:
            res[label]["accuracy"] = float((got.argmax(1) == evaluation["labels"]).mean())
    return res


def _line(r: dict) -> str:
    parts = [f"{r['model']:13s} fp32 {r['fp32_p50_ms']:7.3f} ms"]
    if "fp32_accuracy" in r:
        parts.append(f"acc {100 * r['fp32_accuracy']:.2f}%")
    for label in (*VARIANTS, *ANCHORS.values()):
        v = r[label]
        acc = f" acc {100 * v['accuracy']:.2f}%" if "accuracy" in v else ""
        parts.append(f"{label} {v['p50_ms']:.3f} ms ({v['latency_ratio']:.2f}x fp32) size {v['size_ratio']:.3f}x "
                     f"cosine {v['cosine_mean']:.4f}{acc}")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__)
    ap.set_defaults(models="digits_cnn,mobilenet_v2")
    args = ap.parse_args(argv)
    common.quiet()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results, missed = [], []
    with tempfile.TemporaryDirectory(prefix="bench-tflite-sources-") as d:
        for name in args.models.split(","):
            r = bench_model(name, Path(d), args.runs, args.threads)
            results.append(r)
            print(_line(r), flush=True)
    for r in results:
        for label in VARIANTS:
            v = r[label]
            anchor = r[ANCHORS[label]]["cosine_mean"]
            if r["model"] != "digits_cnn":
                # Random weights: int8's own error is the model's, not the engine's; held to
                # TensorFlow's twin of the same model and calibration instead.
                checks = [(v["cosine_mean"] >= anchor - ANCHOR_MARGIN,
                           f"cosine {v['cosine_mean']:.4f} (>= TFLiteConverter's {anchor:.4f} - "
                           f"{ANCHOR_MARGIN})")]
            else:
                checks = [(v["cosine_mean"] >= MIN_COSINE, f"cosine {v['cosine_mean']:.4f} (>= {MIN_COSINE})")]
            if "accuracy" in v:
                drop = r["fp32_accuracy"] - v["accuracy"]
                checks.append((drop <= MAX_ACCURACY_DROP, f"accuracy drop {100 * drop:+.2f} points "
                               f"(<= {100 * MAX_ACCURACY_DROP:.0f})"))
            if v["latency_ratio"] > 1.05:
                print(f"NOTE {r['model']} {label} is {v['latency_ratio']:.2f}x fp32's latency here: slower, "
                      f"not faster (TFLiteConverter's twin: {r[ANCHORS[label]]['latency_ratio']:.2f}x)")
            for ok, what in checks:
                if ok:
                    print(f"MET {r['model']} {label}: {what}")
                else:
                    missed.append(f"{r['model']} {label}: {what}")
    return common.finish("tflite_sources", args, results, missed)


if __name__ == "__main__":
    sys.exit(main())
