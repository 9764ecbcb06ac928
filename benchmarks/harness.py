"""measure(artifact) -> Metrics: warm up, time, size, memory and accuracy through the
artifact's own runtime.

By default every artifact is measured in a fresh worker process (`benchmarks.worker`),
so that peak memory belongs to that artifact alone and runtimes do not share thread
pools. The worker imports only the runtime it measures.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.metrics import Latency, Metrics
from compressor import errors
from compressor.errors import CompressorError
from compressor.reference import top1

ACCURACY_BATCH = 64
BLOCKS = 10  # timed runs come in this many blocks, each followed by the reference workload


@dataclass(frozen=True)
class BenchConfig:
    device: str = "cpu"
    threads: int = 2
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 10
    warmup_s: float = 0.2
    runs: int = 100
    min_time_s: float = 0.0
    isolate: bool = True                       # a fresh process per artifact (peak memory)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    keep_samples: bool = True                  # keep per-run latencies in the report (for gates)
    trust: bool = False                        # load formats that can run code (TorchScript, .pt2)
    reference: bool = True                     # also time the fixed reference workload (normalisation)

    @classmethod
    def from_spec(cls, spec, **overrides) -> "BenchConfig":
        """The recipe's `benchmark:` block (compressor.config.recipe.BenchmarkSpec) as harness
        settings; `overrides` replace single fields (one batch size, no separate process)."""
        fields = dict(device=spec.device, threads=spec.threads, batch_sizes=tuple(spec.batch_sizes),
                      warmup=spec.warmup, warmup_s=spec.warmup_s, runs=spec.runs, min_time_s=spec.min_time_s,
                      isolate=spec.memory)
        return cls(**{**fields, **overrides})


def measure(path: Path, config: BenchConfig, eval_data: Path | None = None, layout: dict | None = None) -> Metrics:
    """Measure one artifact file. `eval_data` is an .npz of evaluation inputs keyed by
    input name, with 'labels' for accuracy, in the model's declared layout; `layout`
    (targets.layout) names the inputs and outputs the artifact takes and gives NHWC."""
    job = {"path": str(path), "config": asdict(config), "eval_data": str(eval_data) if eval_data else None,
           "layout": layout}
    if not config.isolate:
        return Metrics.from_json(run_job(job))
    env = dict(os.environ)
    # The worker finds this checkout even when the package is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker"], input=json.dumps(job),
                          capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"benchmark worker for {path} died (exit {proc.returncode}): {' | '.join(tail)}")
    result = json.loads(lines[-1])
    if "error" in result:
        cls = getattr(errors, result["error_type"], None)
        if isinstance(cls, type) and issubclass(cls, CompressorError):
            raise cls(result["error"])
        raise RuntimeError(f"benchmark worker for {path}: {result['error']}")
    return Metrics.from_json(result)


def run_job(job: dict) -> dict:
    """The measurement itself; runs inside the worker (or in-process when not isolated)."""
    import targets
    from targets.base import Device, run_batched
    from targets.layout import outputs_from

    cfg = BenchConfig(**{**job["config"], "batch_sizes": tuple(job["config"]["batch_sizes"]),
                         "shapes": {k: tuple(v) for k, v in job["config"]["shapes"].items()}})
    path = Path(job["path"])
    target = targets.for_file(path)
    refuse_untrusted(target, path, cfg.trust)
    target.check_file(path)
    files = [path, *target.companion_files(path)]
    baseline_rss = _rss_mb()
    if cfg.reference:  # the reference's runtime would otherwise count in the artifact's memory
        import onnxruntime  # noqa: F401
        baseline_rss = _rss_mb()

    t0 = time.perf_counter()
    session = target.open_session(path, Device.parse(cfg.device), cfg.threads)
    load_s = time.perf_counter() - t0
    unknown = sorted(set(cfg.shapes) - {s.name for s in session.inputs})
    if unknown:
        raise errors.InputShapeError(f"--shape names {unknown}, but the model's inputs are "
                                     f"{[s.name for s in session.inputs]}")

    eval_inputs, labels = _load_eval(job.get("eval_data"), session, job.get("layout"))
    reference = None
    if cfg.reference:
        from benchmarks.reference import ReferenceWorkload

        reference = ReferenceWorkload()
    latencies, first_ms = [], None
    for batch in cfg.batch_sizes:
        feeds = _feeds(session, batch, cfg.shapes, eval_inputs)
        if first_ms is None:
            t = time.perf_counter()
            session.run(feeds)
            first_ms = (time.perf_counter() - t) * 1e3
        latencies.append(_time(session, feeds, cfg, batch, reference))

    accuracy = None
    if eval_inputs is not None and labels is not None:
        outputs = outputs_from(run_batched(session, eval_inputs, ACCURACY_BATCH), session.output_names,
                               job.get("layout"))
        accuracy = top1(outputs[0], labels)
    peak_rss = _peak_rss_mb() if cfg.isolate else None
    ref_all = [r for lat in latencies for r in lat.ref_blocks_ms]
    reference_ms = float(np.median(ref_all)) if ref_all else None

    return Metrics(
        path=str(path), target=target.name, runtime=session.runtime, provider=session.provider,
        device=cfg.device, threads=cfg.threads, size_bytes=sum(f.stat().st_size for f in files),
        gzip_bytes=gzip_size(files), load_s=load_s, first_inference_ms=first_ms or 0.0, latency=latencies,
        peak_rss_mb=peak_rss, baseline_rss_mb=baseline_rss if cfg.isolate else None,
        reference_p50_ms=reference_ms,
        accuracy=accuracy, eval_samples=None if labels is None else len(labels),
        inputs=[{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in session.inputs],
    ).to_json() | {"latency": [asdict(l) if cfg.keep_samples else {**asdict(l), "samples_ms": []}
                               for l in latencies]}


def alternating_medians_ms(s1, s2, feed: dict[str, np.ndarray], blocks: int = 5, runs: int = 10) -> tuple[float, float]:
    """Median ms of two loaded sessions on the same feed, timed in alternating blocks so
    that drift (another process, clock changes) hits both alike: for small differences
    between two artifacts, where separate measurements minutes apart would drown them."""
    for s in (s1, s2):
        for _ in range(3):
            s.run(feed)
    t1: list[float] = []
    t2: list[float] = []
    for _ in range(blocks):
        for s, acc in ((s1, t1), (s2, t2)):
            for _ in range(runs):
                t = time.perf_counter()
                s.run(feed)
                acc.append(time.perf_counter() - t)
    return 1e3 * float(np.median(t1)), 1e3 * float(np.median(t2))


def refuse_untrusted(target, path: Path, trust: bool) -> None:
    if target.requires_trust and not trust:
        raise errors.ArtifactError(f"{path}: a {target.name} file can run code when it is loaded; refusing "
                                   "it. Pass --trust if you made it or trust its author")


def _time(session, feeds: dict[str, np.ndarray], cfg: BenchConfig, batch: int, reference=None) -> Latency:
    # Warm up by count and by time: caches, thread pools and lazy kernel selection settle.
    n, start = 0, time.perf_counter()
    while n < cfg.warmup or time.perf_counter() - start < cfg.warmup_s:
        session.run(feeds)
        n += 1
    # Timed runs in blocks; with a reference workload, it is timed after every block so
    # that each block can be normalised by what the machine was doing at that moment.
    block = max(1, -(-cfg.runs // BLOCKS))
    samples: list[float] = []
    ref_blocks: list[float] = []
    start = time.perf_counter()
    while len(samples) < cfg.runs or time.perf_counter() - start < cfg.min_time_s:
        for _ in range(block):
            t = time.perf_counter()
            session.run(feeds)
            samples.append(time.perf_counter() - t)
        if reference is not None:
            ref_blocks.append(reference.block_ms())
    return Latency.from_samples(batch, samples, keep=cfg.keep_samples, block=block, ref_blocks_ms=ref_blocks)


def _feeds(session, batch: int, shapes: dict[str, tuple[int, ...]],
           eval_inputs: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Real evaluation samples when they fit the model, else inputs generated from its
    declared shapes and dtypes (symbolic leading axis = batch; others from --shape)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        shape = spec.concrete(batch, shapes)
        real = None if eval_inputs is None else eval_inputs.get(spec.name)
        if real is not None and tuple(real.shape[1:]) == tuple(shape[1:]) and len(real) >= shape[0]:
            feeds[spec.name] = np.ascontiguousarray(real[:shape[0]].astype(spec.dtype, copy=False))
        elif spec.dtype.startswith("float"):
            feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.random(shape) > 0.5
        elif spec.dtype in ("int64", "int32", "int16", "int8", "uint8"):
            # Small non-negative ids: valid token ids, indices and mask values for most models.
            feeds[spec.name] = rng.integers(0, 2 if spec.name.endswith("mask") else 100, size=shape).astype(spec.dtype)
        else:
            raise errors.InputShapeError(f"input {spec.name!r} has dtype {spec.dtype}, which the benchmark "
                                         "cannot generate; pass real data")
    return feeds


def _load_eval(path: str | None, session, layout: dict | None = None) -> tuple[dict[str, np.ndarray] | None,
                                                                               np.ndarray | None]:
    if not path:
        return None, None
    from targets.layout import feeds_for

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    labels = arrays.pop("labels", None)
    arrays = feeds_for(arrays, layout)  # the artifact's own layout (NHWC inputs of a channels-last export)
    inputs = {s.name: arrays[s.name].astype(s.dtype, copy=False) for s in session.inputs if s.name in arrays}
    if len(inputs) != len(session.inputs):
        return None, None
    return inputs, labels


def gzip_size(files: list[Path]) -> int:
    """Bytes after gzip (level 6) of the artifact's files: what a download or an app
    bundle costs, and where pruned (zero-filled) weights pay off."""
    total = 0
    for f in files:
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                total += len(comp.compress(block))
        total += len(comp.flush())
    return total


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    now = _proc_status_mb("VmRSS")
    if now is not None:
        return now
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    # VmHWM starts afresh at exec; ru_maxrss on Linux carries the parent's peak over a fork+exec.
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
