"""Where the time goes, per operator: the slowest and the recommended artifact of this
machine profiled by their runtime's own profiler, after the timed runs and in a session
of their own (a profiler on the hot path would change what the harness timed).

ONNX Runtime: `SessionOptions.enable_profiling`, whose Chrome-trace events carry each
node's kernel time and op type; the warm-up runs are cut off at the first timed
`model_run` event. OpenVINO: `ov.properties.enable_profiling` and each request's
profiling info. LiteRT's Python interpreter has no per-operator profiler (only its C++
benchmark tool does), so a .tflite row says so instead of guessing."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

WARMUP, RUNS = 5, 50
TOP_NODES = 8


def chosen(report: dict) -> dict[str, list[str]]:
    """{row name: why} for this machine's slowest and recommended artifacts."""
    from benchmarks.device_report import device_of

    batch = report["benchmark"]["batch_sizes"][0]
    rows = [r for r in report["artifacts"] if device_of(r) == "local" and r.get("status") == "ok" and r.get("file")
            and any(l["batch"] == batch for l in (r.get("metrics") or {}).get("latency", []))]
    if not rows:
        return {}
    p50 = {r["name"]: next(l["p50_ms"] for l in r["metrics"]["latency"] if l["batch"] == batch) for r in rows}
    out: dict[str, list[str]] = {max(p50, key=p50.get): ["slowest"]}
    rec = ((report.get("recommended") or {}).get("local") or {}).get("name")
    if rec in p50:
        out.setdefault(rec, []).append("recommended")
    return out


def profile_report(report: dict, out: Path, threads: int) -> dict[str, dict]:
    """Profile the chosen rows: {row name: summary}, kept in report.json (the raw trace is
    not: ONNX Runtime's runs to megabytes for a large model, and the run directory's files
    are the artifacts and reports the manifest lists)."""
    batch = report["benchmark"]["batch_sizes"][0]
    by_name = {r["name"]: r for r in report["artifacts"]}
    result = {}
    for name, why in chosen(report).items():
        try:
            prof = profile(out / by_name[name]["file"], batch, threads)
        except Exception as e:  # a profiler failing must not fail the run: the numbers are already measured
            prof = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        result[name] = {"why": why, "batch": batch, **prof}
    return result


def profile(path: Path, batch: int, threads: int) -> dict:
    if path.suffix == ".onnx":
        return onnx_profile(path, batch, threads)
    if path.suffix == ".xml":
        return openvino_profile(path, batch, threads)
    runtime = {".tflite": "LiteRT's Python interpreter"}.get(path.suffix, f"the {path.suffix} runtime")
    return {"error": f"{runtime} offers no per-operator profiler"}


def _feed(shape, dtype: np.dtype, batch: int, rng) -> np.ndarray:
    dims = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(shape)]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(dims).astype(dtype)
    return np.zeros(dims, dtype=dtype)


ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
             "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def onnx_profile(path: Path, batch: int, threads: int) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ops")
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {i.name: _feed(i.shape, np.dtype(ORT_TYPES.get(i.type, np.float32)), batch, rng)
                 for i in sess.get_inputs()}
        for _ in range(WARMUP + RUNS):
            sess.run(None, feeds)
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
    return summarise_ort(events, WARMUP) | {"runtime": f"ONNX Runtime {ort.__version__}"}


def summarise_ort(events: list[dict], warmup: int) -> dict:
    """Per node the median kernel ms over the runs after `warmup` (a median, as the
    harness's p50: a preempted run does not move it), summed per op type."""
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    if len(runs) <= warmup:
        raise ValueError("the trace holds no timed runs")
    cutoff = runs[warmup]
    durations: dict[str, list[float]] = defaultdict(list)
    node_op = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time") and e["ts"] >= cutoff:
            node = e["name"].removesuffix("_kernel_time")
            durations[node].append(e["dur"] / 1e3)
            node_op[node] = e.get("args", {}).get("op_name", "?")
    return _summary(durations, node_op, len(runs) - warmup)


def _summary(durations: dict[str, list[float]], node_op: dict[str, str], runs: int) -> dict:
    """Each node's median ms, summed per op type, heaviest first."""
    by_node = {k: float(np.median(v)) for k, v in durations.items()}
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for node, ms in by_node.items():
        by_op[node_op[node]] += ms
        count[node_op[node]] += 1
    total = sum(by_op.values())
    ops = sorted(by_op.items(), key=lambda kv: kv[1], reverse=True)
    top = sorted(by_node.items(), key=lambda kv: kv[1], reverse=True)[:TOP_NODES]
    return {"runs": runs, "total_ms": total,
            "by_op_type": [{"op": op, "ms": ms, "share": ms / total if total else 0.0, "count": count.get(op, 0)}
                           for op, ms in ops],
            "top_nodes": [{"node": k, "op": node_op[k], "ms": v} for k, v in top]}


def openvino_profile(path: Path, batch: int, threads: int) -> dict:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if model.inputs[0].get_partial_shape().is_dynamic:
        model.reshape({i.get_any_name(): [d.get_length() if d.is_static else (batch if k == 0 else 1)
                                          for k, d in enumerate(i.get_partial_shape())] for i in model.inputs})
    compiled = core.compile_model(model, "CPU", {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feeds = {i.get_any_name(): _feed(list(i.get_shape()), np.dtype(i.get_element_type().to_dtype()), batch, rng)
             for i in compiled.inputs}
    durations: dict[str, list[float]] = defaultdict(list)
    node_op = {}
    for k in range(WARMUP + RUNS):
        req.infer(feeds)
        if k < WARMUP:
            continue
        for p in req.profiling_info:
            if str(p.status).endswith("EXECUTED"):
                durations[p.node_name].append(p.real_time.total_seconds() * 1e3)
                node_op[p.node_name] = p.node_type
    return _summary(durations, node_op, RUNS) | {"runtime": f"OpenVINO {ov.__version__}"}
