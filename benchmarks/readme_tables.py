"""The renderers of the README's figure tables: one function per suite, from the suite's
JSON record to Markdown lines (benchmarks/readme_figures.py places them in README.md)."""

from __future__ import annotations

MODEL_NAMES = {"resnet18": "ResNet-18", "mobilenet_v2": "MobileNetV2", "digits_cnn": "digits CNN"}


def onnx_int8(d: dict) -> list[str]:
    from benchmarks.suite.onnx_int8 import MAX_SIZE_RATIO, TARGET_SPEEDUP

    lines = [f"| model (batch 1, {d['threads']} threads) | fp32 p50 | int8 p50 | int8 speedup | "
             "by-hand `quantize_static` | int8 size / fp32 | cosine int8 vs fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(d["results"]):
        need = TARGET_SPEEDUP.get(r["model"])
        speed = f"**{r['speedup']:.2f}x**" + (f" (target {need}x)" if need else "")
        size = f"**{r['size_ratio']:.3f}**" + (f" (target {MAX_SIZE_RATIO})" if i == 0 else "")
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['fp32_p50_ms']:.1f} ms | "
                     f"{r['int8_p50_ms']:.1f} ms | {speed} | {r['by_hand_speedup']:.2f}x | {size} | "
                     f"{r['cosine_mean']:.4f} |")
    return lines


def tflite_sources(d: dict) -> list[str]:
    names = MODEL_NAMES
    variants = {"int8-dynamic": "dynamic int8", "int8-static": "full int8"}
    fp32_acc = next((r["fp32_accuracy"] for r in d["results"] if "fp32_accuracy" in r), None)
    acc_head = f"accuracy (fp32 {100 * fp32_acc:.2f}%)" if fp32_acc is not None else "accuracy"
    lines = [f"| float .tflite | variant | cosine mean / worst | speed vs fp32 | size vs fp32 | {acc_head} |",
             "|---|---|---:|---:|---:|---:|"]
    for r in d["results"]:
        for label, variant in variants.items():
            v = r[label]
            acc = f"{100 * v['accuracy']:.2f}%" if "accuracy" in v else ""
            lines.append(f"| {names.get(r['model'], r['model'])} | {variant} | {v['cosine_mean']:.4f} / "
                         f"{v['cosine_min']:.4f} | {1 / v['latency_ratio']:.2f}x | {v['size_ratio']:.2f}x | {acc} |")
    anchors = "; ".join(f"{names.get(r['model'], r['model'])} dynamic-range {r['tf_dynamic']['latency_ratio']:.2f}x, "
                        f"full int8 {r['tf_int8']['latency_ratio']:.2f}x" for r in d["results"])
    return lines + ["", f"TFLiteConverter's own int8 files of the same models, latency against fp32: {anchors}."]


def onnx_sources(d: dict) -> list[str]:
    names = {**MODEL_NAMES, "keras_mobilenet_v2": "Keras MobileNetV2"}
    lines = ["| file (exporter) | fp32 p50 | ours static int8 | vs by hand (anchor) | vs `quantize_static` defaults "
             "| cosine ours / by hand |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        name = names.get(r["model"], r["model"])
        if "skipped" in r:
            lines.append(f"| {name} | not measured: {r['skipped']} | | | | |")
            continue
        # tf2onnx writes its version and git hash as the producer's version: "1.17.0 None" without one
        exporter = "legacy `torch.onnx.export`" if r["model"] in MODEL_NAMES else r["exporter"].removesuffix(" None")
        ms, vs = r["p50_ms"], r["speedup_vs_by_hand"]
        vs_hand = f"**{vs:.2f}x**" if vs >= d["min_vs_by_hand"] else f"{vs:.2f}x"
        lines.append(f"| {name} ({exporter}) | {ms['fp32']:.1f} ms | {ms['ours']:.1f} ms | {vs_hand} | "
                     f"{ms['by_hand_bare'] / ms['ours']:.2f}x | {r['cosine_mean']:.4f} / {r['by_hand_cosine_mean']:.4f} |")
    for r in d["results"]:
        if "fallback" in r:
            f = r["fallback"]
            lines += ["", f"{names.get(r['model'], r['model'])}: plain int8 reaches cosine {r['plain_cosine_mean']:.4f} "
                      f"(the anchor {r['by_hand_cosine_mean']:.4f}); the fallback keeps {f['float_nodes']} nodes float "
                      f"({f['lowering']} lowering); plain int8 ran {r['plain_speedup_vs_by_hand']:.2f}x the anchor's speed."]
    return lines


def devices(d: dict) -> list[str]:
    from benchmarks.suite.devices import MAX_CONCURRENT_RATIO, MAX_OVERHEAD_S

    lines = ["| artifact | size | local p50 ms | loopback p50 ms | ratio |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['artifact']} | {r['size_bytes'] / 1e6:.1f} MB | {r['local_p50_ms']:.2f} | "
              f"{r['loopback_p50_ms']:.2f} | {r['ratio']:.3f} |" for r in d["results"]]
    o, c = d["overhead"], d["concurrency"]
    missed = " The suite marked this run MISSED: " + "; ".join(d["missed"]) + "." if d["missed"] else ""
    return lines + ["", f"Going remote costs {o['overhead_s']:.2f} s per artifact for the {o['bytes'] / 1e6:.1f} MB int8 "
                    "ONNX file (connect, copy and check, start the runner, load, fetch the outputs, clean up: the wall "
                    f"time less the device's own timing; target {MAX_OVERHEAD_S:.0f} s). 4 artifacts on 2 loopback "
                    f"devices (1 and 2 threads, pinned to CPUs 0 and 1) take {c['concurrent_s']:.1f} s at once against "
                    f"{c['serial_s']:.1f} s one device after the other ({c['ratio']:.2f}x; target "
                    f"{MAX_CONCURRENT_RATIO}x).{missed}"]


MINILM_ROWS = {  # the suite's label of an ONNX row: how the README names it
    "fp32 onnx": "fp32 ONNX",
    "static int8, ours": "**static int8, ours** ({int8_layers} of 36 linear layers int8)",
    "static int8, linear only": "static int8, `outliers: linear` (no rewrite)",
    "static int8, outliers off": "static int8, `outliers: off` (what the project did before)",
    "dynamic int8, ours": "**dynamic int8, ours**",
    "dynamic int8, outliers off": "dynamic int8, `outliers: off`",
    "dynamic int8, ORT by hand": "dynamic int8, ONNX Runtime's `quantize_dynamic` by hand (the anchor)",
}


def minilm_int8(d: dict) -> list[str]:
    lines = ["| artifact | p50 | vs fp32 | size | worst sentence | mean |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        if r["target"] != "onnx" or r["label"] not in MINILM_ROWS:
            continue
        worst = f"**{r['cos_worst']:.4f}**" if r["label"].endswith("ours") else f"{r['cos_worst']:.4f}"
        lines.append(f"| {MINILM_ROWS[r['label']].format(**r)} | {r['p50_ms']:.1f} ms | {r['speedup']:.2f}x | "
                     f"{r['mb']:.1f} MB | {worst} | {r['cos_mean']:.4f} |")
    return lines


def qat_digits(d: dict) -> list[str]:
    names = {"onnx": "ONNX", "tflite": "TFLite", "torchscript": "TorchScript"}

    def pct(x):
        return f"{100 * x:.2f}%" if x is not None else "-"

    lines = ["| digits CNN | fp32 | int8 PTQ (8-bit per-channel) | 3-bit PTQ | **3-bit QAT** | "
             "QAT latency / int8 PTQ |", "|---|---:|---:|---:|---:|---:|"]
    for t, f in d["figures"].items():
        ratio = f["latency_ratio_qat_vs_ptq_static"]
        lines.append(f"| {names.get(t, t)} | {pct(f['fp32_accuracy'])} | {pct(f['ptq_int8_static_accuracy'])} | "
                     f"{pct(f['ptq_3bit_accuracy'])} | **{pct(f['qat_3bit_accuracy'])}** | "
                     f"{f'{ratio:.2f}' if ratio is not None else '-'} |")
    families = {"x86": "x86 PT2E (ONNX)", "litert": "LiteRT PT2E (TFLite)", "fx": "FX (TorchScript)"}
    wall = ", ".join(f"{families.get(fam, fam)} {s:.1f} s" for fam, s in d["finetune_wall_s"].items())
    return lines + ["", f"Fine-tuning wall time per quantizer family: {wall}."]


def demo_int8(d: dict) -> list[str]:
    from benchmarks.report import human_size
    from benchmarks.suite.demo_int8 import INT8, MAX_ACCURACY_DROP, MIN_SIZE_RATIO, MIN_SPEEDUP

    f, timed = d["figures"], d["interleaved"]
    kb = {k: human_size(v) for k, v in f["size_bytes"].items()}
    acc = {k: f"{100 * v:.2f}%" for k, v in f["accuracy"].items()}
    drop = -100 * f["accuracy_drop"]
    lines = [f"| {d['model']['parameters'] / 1e6:.2f}M-parameter digits CNN, {f['threads']} threads | fp32 ONNX | "
             "static int8 | int8 against fp32 | target |", "|---|---:|---:|---:|---:|",
             f"| size | {kb['fp32']} | {kb[INT8]} | **{f['size_ratio']:.2f}x** smaller | {MIN_SIZE_RATIO}x |",
             f"| accuracy on the 450 held-out digits | {acc['fp32']} | {acc[INT8]} | {drop:+.2f} points | "
             f"within {100 * MAX_ACCURACY_DROP:.1f} |"]
    for b, t in timed.items():
        ms = t["median_ms"]
        lines.append(f"| p50 at batch {b}, interleaved | {ms['fp32']:.3f} ms | {ms[INT8]:.3f} ms | "
                     f"**{t['speedup']:.2f}x** faster | {MIN_SPEEDUP}x |")
    for b, ms in f["p50_ms"].items():
        lines.append(f"| p50 at batch {b}, in the run's report | {ms['fp32']:.3f} ms | {ms[INT8]:.3f} ms | "
                     f"{f['speedup'][b]:.2f}x faster | |")
    return lines + ["", f"The pipeline run itself (export, validation, measurement, reports) took "
                    f"{d['run_wall_s']:.0f} s." + (" The suite marked this run MISSED: " + "; ".join(d["missed"]) + "."
                                                    if d["missed"] else "")]


def runtimes(d: dict) -> list[str]:
    from benchmarks.suite.runtimes import BY_HAND, SPEEDUP

    lines = ["| batch 1 | threads | recommended | speedup over the fastest fp32 | target | OpenVINO + NNCF by hand |",
             "|---|---:|---|---:|---:|---:|"]
    for r in d["results"]:
        ms, need = r["p50_ms"], SPEEDUP.get(r["threads"], {}).get(r["model"])
        met = need is None or r["speedup"] >= need
        speed = f"**{r['speedup']:.2f}x**" if met else f"{r['speedup']:.2f}x"
        target = "-" if need is None else f"{need}x" + ("" if met else ": missed")
        hand = "-"
        if BY_HAND in ms:
            hand = f"{r['by_hand_speedup']:.2f}x ({ms[BY_HAND]:.2f} ms) at cosine {r['cosine'][BY_HAND]:.4f}"
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['threads']} | {r['recommended']} "
                     f"{ms[r['recommended']]:.2f} ms, cosine {r['cosine'][r['recommended']]:.4f} | {speed} "
                     f"({r['fastest_fp32']} {ms[r['fastest_fp32']]:.2f} ms) | {target} | {hand} |")
    lines += ["", "| batch 1 | threads | OpenVINO ours / by hand (speed) | ExecuTorch int8 over its fp32 | "
              "TFLite int8 time / ExecuTorch int8 time | ONNX int8 time, natural / noise calibration |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        et = r.get("executorch_int8_speedup")
        et_cell = "-" if et is None else f"{et:.2f}x at cosine {r['cosine']['executorch/int8-static']:.4f}"
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("openvino_ours_vs_by_hand",
                                                              "executorch_int8_vs_tflite_int8")]
        noise = f"{r['noise_vs_natural_calibration']:.2f}" if "noise_vs_natural_calibration" in r else "-"
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['threads']} | {cells[0]} | {et_cell} | "
                     f"{cells[1]} | {noise} |")
    return lines + ["", f"Every artifact's p50 and cosine are in the record (`p50_ms`, `cosine`, and each "
                    f"round's p50 in `rounds_ms`); {d['rounds']} interleaved rounds; the suite ran "
                    f"{d['seconds'] / 60:.0f} min."]


def bert_dynamic(d: dict) -> list[str]:
    from benchmarks.suite.bert_dynamic import MIN_SPEEDUP

    rows = (("fp32", "fp32, plain export", "fp32"), ("fp32_fused", "fp32, `fusions: bert`", "fp32_fused"),
            ("int8", "**int8 ours** (over fused fp32)", "fp32_fused"), ("by_hand", "int8 by hand (over plain fp32)", "fp32"))
    lines = ["| init std | artifact | p50 | speedup | size | last_hidden_state cos min / mean | "
             "mean-pooled cos min / mean | pooler min |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in d["results"]:
        for i, (key, label, base) in enumerate(rows):
            f = r[key]
            speed = f"{r[base]['p50_ms'] / f['p50_ms']:.2f}x"
            if key == "int8":
                speed = f"**{speed}**" + (f" (target {MIN_SPEEDUP}x)" if r is d["results"][0] else "")
            cos = "- | - | -" if key == "fp32" else (
                f"{f['hidden_cos_min']:.4f} / {f['hidden_cos_mean']:.4f} | {f['pooled_cos_min']:.4f} / "
                f"{f['pooled_cos_mean']:.4f} | {f['pooler_cos_min']:.4f}")
            init = (f"{r['init_range']:g}" + (" (BERT's)" if r["init_range"] == 0.02 else "")) if i == 0 else ""
            lines.append(f"| {init} | {label} | {f['p50_ms']:.0f} ms | {speed} | {f['mb']:.1f} MB | {cos} |")
    return lines
