"""Remote devices over SSH against the local harness, on a loopback "device" (the same
CPU, reached through a real OpenSSH server): ResNet-18 (random weights) fp32 and static
int8, ONNX and TFLite, batch 1.

    python -m benchmarks.suite.devices [--rounds 3] [--runs 60] [--threads 1] [--out runs/bench]
    python -m benchmarks.suite.devices --devices devices.yaml --device loop   # your own server

Without --devices it starts an sshd on 127.0.0.1 as tests/devices/sshd.py does (root:
a separate device user whose Python has only numpy and the runtimes).

Targets (exit 1 when one is missed):
- p50 on the loopback device within 10% of the local harness's for each artifact, local
  and remote measured in alternating rounds of one run (median of the rounds' p50s);
- per-artifact overhead of going remote (connect, copy, check, start, load, fetch,
  clean up: the wall time less the device's own timing) at most 3 s for the 12 MB int8
  ONNX file;
- 4 artifacts on 2 loopback devices (1 and 2 threads, pinned to CPUs 0 and 1) measured
  concurrently in at most 0.6x the time of measuring them one device after the other.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.suite import common

MAX_P50_DISAGREEMENT = 0.10
MAX_OVERHEAD_S = 3.0
MAX_CONCURRENT_RATIO = 0.6
ROOT = Path(__file__).resolve().parents[2]


def artifacts(work: Path) -> dict[str, Path]:
    import torch
    import torchvision

    import targets
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec
    from compressor.data import Dataset
    from compressor.model import Model

    torch.manual_seed(0)
    model = Model(module=torchvision.models.resnet18().eval(), inputs=[InputSpec(name="input", shape=[1, 3, 224, 224])])
    calib = Dataset({"input": common.natural_images(16, 224, seed=0)})
    out = {}
    for tname in ("onnx", "tflite"):
        t = targets.get(tname)
        fp32 = t.export(model, None, work / f"resnet18.{tname}.fp32", {}, None)
        int8 = t.export(model, QuantVariant(mode="static", calibration_samples=16), work / f"resnet18.{tname}.int8",
                        {}, calib, base=fp32)
        out[f"{tname}/fp32"], out[f"{tname}/int8"] = fp32.path, int8.path
    return out


def jobs(files: dict[str, Path], threads: int):
    import targets
    from benchmarks.devices.remote import Job
    from targets.base import Device

    out = []
    for name, path in files.items():
        t = targets.for_file(path)
        out.append(Job(name, path, t.name, [path, *t.companion_files(path)],
                       session_inputs=t.open_session(path, Device(), threads).inputs))
    return out


def device(name: str, sshd, **extra):
    from benchmarks.devices.inventory import Device
    from compressor.config.devices import DeviceSpec

    spec = DeviceSpec(url=sshd.url, python=str(sshd.python), identity_file=str(sshd.identity_file),
                      known_hosts=str(sshd.known_hosts), **extra)
    return Device(name, spec, None)


def p50_agreement(files, sshd, args) -> tuple[list[dict], list[str]]:
    """Local and loopback in alternating rounds; each round measures every artifact once."""
    from benchmarks.devices.fleet import measure_device
    from benchmarks.harness import BenchConfig, measure

    cfg = BenchConfig(threads=args.threads, runs=args.runs, warmup=10, warmup_s=0.5, reference=False)
    loop = device("loop", sshd, threads=args.threads)
    local_p50: dict[str, list[float]] = {n: [] for n in files}
    remote_p50: dict[str, list[float]] = {n: [] for n in files}
    for r in range(args.rounds):
        for name, path in files.items():
            local_p50[name].append(measure(path, cfg).latency[0].p50_ms)
        run = measure_device(loop, jobs(files, args.threads), cfg, 1)
        if run.error:
            raise SystemExit(f"the loopback device failed: {run.error}")
        for o in run.outcomes:
            remote_p50[o.name].append(o.metrics.latency[0].p50_ms)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {local_p50[n][-1]:.2f}/{remote_p50[n][-1]:.2f} ms" for n in files), flush=True)
    results, missed = [], []
    for name in files:
        here, there = statistics.median(local_p50[name]), statistics.median(remote_p50[name])
        ratio = there / here
        results.append({"artifact": name, "local_p50_ms": here, "loopback_p50_ms": there, "ratio": ratio,
                        "size_bytes": files[name].stat().st_size, "rounds_local": local_p50[name],
                        "rounds_loopback": remote_p50[name]})
        print(f"{name:12s} local {here:7.2f} ms  loopback {there:7.2f} ms  ratio {ratio:.3f}")
        if abs(ratio - 1) > MAX_P50_DISAGREEMENT:
            missed.append(f"{name}: loopback p50 {there:.2f} ms is {100 * (ratio - 1):+.1f}% from local {here:.2f} ms "
                          f"(target within {100 * MAX_P50_DISAGREEMENT:.0f}%)")
    return results, missed


def overhead(files, sshd, args) -> tuple[dict, list[str]]:
    """Wall time of one 12 MB artifact on the loopback device, less the device's own timing."""
    from benchmarks.devices.fleet import measure_device
    from benchmarks.harness import BenchConfig

    path = files["onnx/int8"]
    cfg = BenchConfig(threads=args.threads, runs=10, warmup=2, warmup_s=0.0, reference=False)
    walls, busies = [], []
    for _ in range(3):
        start = time.perf_counter()
        run = measure_device(device("loop", sshd), jobs({"onnx/int8": path}, args.threads), cfg, 1)
        walls.append(time.perf_counter() - start)
        busies.append(run.outcomes[0].busy_s)
    over = statistics.median(w - b for w, b in zip(walls, busies))
    print(f"overhead for {path.stat().st_size / 1e6:.1f} MB: {over:.2f} s (wall {statistics.median(walls):.2f} s)")
    missed = [] if over <= MAX_OVERHEAD_S else [f"remote overhead {over:.2f} s for a {path.stat().st_size / 1e6:.1f} MB "
                                               f"artifact (target at most {MAX_OVERHEAD_S:.0f} s)"]
    return {"bytes": path.stat().st_size, "overhead_s": over, "walls_s": walls, "device_busy_s": busies}, missed


def concurrency(files, sshd, args) -> tuple[dict, list[str]]:
    """Two loopback devices (1 and 2 threads, separate CPUs): one after the other, then at once."""
    from benchmarks.devices.fleet import measure_device, measure_devices
    from benchmarks.harness import BenchConfig

    cfg = BenchConfig(threads=1, runs=max(20, args.runs // 2), warmup=5, warmup_s=0.2, reference=False)
    devs = [device("loop-1t", sshd, threads=1, affinity=[0]), device("loop-2t", sshd, threads=2, affinity=[1])]
    start = time.perf_counter()
    for d in devs:
        run = measure_device(d, jobs(files, 1), cfg, 2)
        assert run.error is None, run.error
    serial = time.perf_counter() - start
    start = time.perf_counter()
    runs, _ = measure_devices(devs, lambda d: jobs(files, 1), cfg, 2)
    together = time.perf_counter() - start
    assert all(r.error is None for r in runs.values()), [r.error for r in runs.values()]
    ratio = together / serial
    print(f"4 artifacts x 2 devices: one after the other {serial:.1f} s, at once {together:.1f} s ({ratio:.2f}x)")
    missed = [] if ratio <= MAX_CONCURRENT_RATIO else [
        f"concurrent devices took {ratio:.2f}x the serial time (target at most {MAX_CONCURRENT_RATIO}x)"]
    return {"serial_s": serial, "concurrent_s": together, "ratio": ratio}, missed


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, runs=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.set_defaults(threads=1)
    args = ap.parse_args(argv)
    common.quiet()
    sys.path.insert(0, str(ROOT / "tests" / "devices"))
    from sshd import Sshd

    with tempfile.TemporaryDirectory(prefix="compressor-suite-devices-") as d, Sshd() as sshd:
        sshd.start()
        files = artifacts(Path(d))
        agreement, missed = p50_agreement(files, sshd, args)
        over, missed_o = overhead(files, sshd, args)
        conc, missed_c = concurrency(files, sshd, args)
        return common.finish("devices", args, agreement, missed + missed_o + missed_c, overhead=over,
                             concurrency=conc, rounds=args.rounds, device_user_separate=sshd.separate_user)


if __name__ == "__main__":
    sys.exit(main())
