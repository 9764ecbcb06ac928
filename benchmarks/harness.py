"""measure(artifact) -> Metrics: warm up, time, size, memory and accuracy through the
artifact's own runtime.

By default every artifact is measured in a fresh worker process (`benchmarks.worker`),
so that peak memory belongs to that artifact alone and runtimes do not share thread
pools. The worker imports only the runtime it measures.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks import eval_data
from benchmarks.given import batch_refusal
from benchmarks.metrics import Latency, Metrics
from compressor import errors
from compressor.config.recipe import MAX_ELEMENTS, MAX_WAIT_S
from compressor.config.strict import MAX_BATCH, MAX_THREADS
from compressor.errors import CompressorError
from compressor.reference import top1

ACCURACY_BATCH = 64
BLOCKS = 10  # timed runs come in this many blocks, each followed by the reference workload
# What a benchmark setting may be (inclusive), the same bounds as the recipe's benchmark
# block: beyond them no machine gives an answer worth waiting for (an hour of warm-up, a
# million threads) or the numbers do not exist (NaN, inf). MAX_ELEMENTS bounds one
# generated input: the int32 index limit of the runtimes' kernels.
LIMITS = {"threads": (1, MAX_THREADS), "warmup": (0, 1_000_000), "warmup_s": (0.0, MAX_WAIT_S),
          "runs": (1, 10_000_000), "min_time_s": (0.0, MAX_WAIT_S), "batch_sizes": (1, MAX_BATCH)}


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

    def __post_init__(self) -> None:
        for name, value in out_of_range(self):
            low, high = LIMITS[name]
            raise errors.RecipeError(f"benchmark setting {name} = {value!r} is out of range: use {low} to {high}")
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise errors.RecipeError(f"benchmark device {self.device!r}: use 'cpu', 'cuda' or 'cuda:N'")

    @classmethod
    def from_spec(cls, spec, **overrides) -> "BenchConfig":
        """The recipe's `benchmark:` block (compressor.config.recipe.BenchmarkSpec) as harness
        settings; `overrides` replace single fields (one batch size, no separate process)."""
        fields = dict(device=spec.device, threads=spec.threads, batch_sizes=tuple(spec.batch_sizes),
                      warmup=spec.warmup, warmup_s=spec.warmup_s, runs=spec.runs, min_time_s=spec.min_time_s,
                      isolate=spec.memory)
        return cls(**{**fields, **overrides})


def out_of_range(cfg: BenchConfig) -> list[tuple[str, object]]:
    """(setting, value) of every setting outside LIMITS: not a number of the right kind
    (NaN, inf, true/false), or beyond its bounds."""
    bad = []
    for name, (low, high) in LIMITS.items():
        values = getattr(cfg, name)
        for v in values if name == "batch_sizes" else (values,):
            kind_ok = isinstance(v, int if isinstance(low, int) else (int, float)) and not isinstance(v, bool)
            if not kind_ok or not (low <= v <= high):  # NaN compares False: out of range
                bad.append((name, v))
    return bad


def measure(path: Path, config: BenchConfig, eval_data: Path | None = None, layout: dict | None = None,
            given: dict | None = None) -> Metrics:
    """Measure one artifact file. `eval_data` is an .npz of evaluation inputs keyed by
    input name, with 'labels' for accuracy, in the model's declared layout; `layout`
    (targets.layout) names the inputs and outputs the artifact takes and gives NHWC;
    `given` the values the user gave for inputs (benchmarks.given: {"npz": path of the
    arrays, "values": {name: number}, "optional": names this file may lack})."""
    job = {"path": str(path), "config": asdict(config), "eval_data": str(eval_data) if eval_data else None,
           "layout": layout, "given": given}
    if not config.isolate:
        try:
            return Metrics.from_json(run_job(job))
        except CompressorError:
            raise
        except Exception as e:  # the runtime or the harness failed on this artifact
            raise errors.ArtifactError(f"{path}: the benchmark failed: {failure(e)}") from None
    env = dict(os.environ)
    # The worker finds this checkout even when the package is not installed.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker"], input=json.dumps(job),
                          capture_output=True, text=True, env=env)
    result = last_json_object(proc.stdout)
    if result is None:
        raise errors.ArtifactError(f"{path}: the benchmark worker {_death(proc)}")
    if "error" in result:
        cls = getattr(errors, str(result.get("error_type")), None)
        if isinstance(cls, type) and issubclass(cls, CompressorError):
            raise cls(result["error"])
        raise errors.ArtifactError(f"{path}: the benchmark failed: {result['error']}")
    return Metrics.from_json(result)


def failure(e: BaseException) -> str:
    """One line for an unexpected exception: 'Type: first line of the message (at file:line)'."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = errors.first_line(e, 300)
    return (type(e).__name__ if text == type(e).__name__ else f"{type(e).__name__}: {text}") + at


def last_json_object(stdout: str) -> dict | None:
    """The last line of `stdout` that is a JSON object: a worker's (or a device runner's) result."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            if isinstance(result, dict):
                return result
    return None


def _death(proc: subprocess.CompletedProcess) -> str:
    """How a worker that sent no result ended, with the last line it wrote."""
    import signal

    code = proc.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else
                                         " (the runtime crashed on this file)" if -code in (signal.SIGSEGV,
                                                                                         signal.SIGABRT) else "")
    else:
        how = f"exited with code {code} without a result"
    last = next((ln.strip() for ln in reversed((proc.stderr or "").splitlines()) if ln.strip()), "")
    return how + (f"; its last words: {last[:300]}" if last else "")


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
    given = _given(job.get("given"), cfg)
    from benchmarks.given import check_names

    check_names(session.inputs, given, path)
    names = {s.name for s in session.inputs}
    cfg = replace(cfg, shapes={k: v for k, v in cfg.shapes.items() if k in names})
    given.shapes = cfg.shapes
    _check_sizes(session, cfg, given)
    eval_inputs, labels = _load_eval(job.get("eval_data"), session, job.get("layout"))
    reference = None
    if cfg.reference:
        from benchmarks.reference import ReferenceWorkload

        reference = ReferenceWorkload()
    latencies, first_ms, refused = [], None, {}
    for batch in cfg.batch_sizes:
        why = batch_refusal(session.inputs, batch, cfg.shapes)
        if why is not None:  # timing it would time another batch under this one's name
            refused[str(batch)] = why
            continue
        feeds = _feeds(session, batch, cfg.shapes, eval_inputs, given)
        if first_ms is None:
            t = time.perf_counter()
            session.run(feeds)
            first_ms = (time.perf_counter() - t) * 1e3
        latencies.append(_time(session, feeds, cfg, batch, reference))

    if not latencies:
        raise errors.InputShapeError(f"{path.name}: {next(iter(refused.values()))}")
    accuracy = None
    if eval_inputs is not None and labels is not None:
        outputs = outputs_from(run_batched(session, eval_inputs, ACCURACY_BATCH), session.output_names,
                               job.get("layout"))
        eval_data.check_labels(outputs[0], labels, job["eval_data"])
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
        batches_refused=refused,
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
    # The loop every device runs (benchmarks.devices.runner.timing). With a reference
    # workload, it is timed after every block so that each block can be normalised by
    # what the machine was doing at that moment.
    from benchmarks.devices.runner.timing import timed_runs

    block = max(1, -(-cfg.runs // BLOCKS))
    ref_blocks: list[float] = []
    samples = timed_runs(lambda: session.run(feeds), cfg.warmup, cfg.warmup_s, cfg.runs, cfg.min_time_s, block,
                         (lambda: ref_blocks.append(reference.block_ms())) if reference is not None else None)
    return Latency.from_samples(batch, samples, keep=cfg.keep_samples, block=block, ref_blocks_ms=ref_blocks)


def _given(job_given: dict | None, cfg: BenchConfig):
    """The job's user-given input values as benchmarks.given.FileInputs."""
    from benchmarks.given import FileInputs, read_arrays

    job_given = job_given or {}
    npz = job_given.get("npz")
    return FileInputs(shapes=dict(cfg.shapes), values=dict(job_given.get("values") or {}),
                      arrays=read_arrays(Path(npz)) if npz else {}, optional=set(job_given.get("optional") or ()))


def _feeds(session, batch: int, shapes: dict[str, tuple[int, ...]],
           eval_inputs: dict[str, np.ndarray] | None, given=None) -> dict[str, np.ndarray]:
    """What the user gave (--inputs, --value), else real evaluation samples when they fit
    the model, else inputs generated from its declared shapes and dtypes (symbolic leading
    axis = batch; others from --shape), the same values a remote device generates."""
    from benchmarks.devices.runner.timing import chosen_input
    from benchmarks.given import feed

    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        fixed = None if given is None else feed(spec, batch, given)
        if fixed is not None:
            feeds[spec.name] = fixed
            continue
        real = None if eval_inputs is None else eval_inputs.get(spec.name)
        feeds[spec.name] = chosen_input(spec.name, spec.concrete(batch, shapes), spec.dtype, real, rng)
        if feeds[spec.name] is None:
            raise errors.InputShapeError(f"input {spec.name!r} has dtype {spec.dtype}, which the benchmark "
                                         "cannot generate; pass real data")
    return feeds


def _check_sizes(session, cfg: BenchConfig, given=None) -> None:
    """Refuse inputs no machine can generate before allocating them: more than
    MAX_ELEMENTS in one input, or more than half of the memory this machine has free.
    Inputs given as arrays (--inputs) are as large as the user made them."""
    import psutil

    free = psutil.virtual_memory().available
    arrays = {} if given is None else given.arrays
    scalars = set() if given is None else {s.name for s in session.inputs if s.name in given.values and not s.shape}
    for spec in session.inputs:
        dims = cfg.shapes.get(spec.name)
        if dims is not None and (len(dims) != len(spec.shape) or any(
                isinstance(d, int) and d > 0 and d != g for d, g in zip(spec.shape, dims))):
            raise errors.InputShapeError(
                f"--shape {spec.name}={'x'.join(map(str, dims))} does not fit the input, whose shape is "
                f"{list(spec.shape)}; give the fixed dimensions as they are and choose only the dynamic ones")
    for batch in cfg.batch_sizes:
        total = 0
        for spec in session.inputs:
            if spec.name in arrays or spec.name in scalars:
                continue
            shape = spec.concrete(batch, cfg.shapes)
            n = math.prod(shape)
            if n > MAX_ELEMENTS:
                raise errors.InputShapeError(
                    f"input {spec.name!r} at batch {batch} would be {list(shape)}, {n:,} elements; the benchmark "
                    f"generates at most {MAX_ELEMENTS:,} (2**31) per input: use a smaller --batch or --shape")
            try:
                total += n * np.dtype(spec.dtype).itemsize
            except TypeError:  # a dtype numpy lacks: _feeds names it
                pass
        if total > free / 2:
            raise errors.InputShapeError(
                f"the inputs at batch {batch} take {total / 2**30:.1f} GiB, more than half of the "
                f"{free / 2**30:.1f} GiB this machine has free; use a smaller --batch or --shape")


def _load_eval(path: str | None, session, layout: dict | None = None) -> tuple[dict[str, np.ndarray] | None,
                                                                               np.ndarray | None]:
    if not path:
        return None, None
    from targets.layout import feeds_for

    arrays, labels = eval_data.read(Path(path))
    arrays = feeds_for(arrays, layout)  # the artifact's own layout (NHWC inputs of a channels-last export)
    return eval_data.match(arrays, session, path), labels


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
    from benchmarks.devices.runner.timing import proc_status_mb

    return proc_status_mb(key)


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
