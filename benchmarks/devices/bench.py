"""`compressor bench FILE... --device pi5 --device local`: the same files on several
devices at once, side by side, each device's outputs held against this machine's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.devices.fleet import DeviceRun, measure_devices, same_machine
from benchmarks.devices.runner.probe import boot_id
from benchmarks.devices.inventory import Device
from benchmarks.devices.remote import REMOTE_TARGETS, Job, Outcome
from benchmarks.metrics import Metrics


def jobs_for_files(files: list[Path], cfg, eval_npz: Path | None,
                   given: dict | None = None) -> tuple[list[Job], np.ndarray | None, dict]:
    """One job per file, opened here (input specs, local outputs of the check inputs).
    `given`: file -> benchmarks.given.FileInputs, what the user gave for its inputs."""
    import targets
    from benchmarks import eval_data
    from benchmarks.devices.runner.timing import concrete_shape, generated_input
    from targets.base import Device as ExecDevice

    arrays, labels = eval_data.read(eval_npz) if eval_npz else (None, None)
    jobs, local_outputs = [], {}
    for f in files:
        target = targets.for_file(f)
        job = Job(str(f), f, target.name, [f, *target.companion_files(f)])
        if target.name in REMOTE_TARGETS:
            session = target.open_session(f, ExecDevice(), cfg.threads)
            job.session_inputs = session.inputs
            mine = (given or {}).get(f)
            names = {s.name for s in session.inputs}
            job.shapes = {k: v for k, v in (cfg.shapes if mine is None else mine.shapes).items() if k in names}
            if mine is not None:
                from benchmarks.given import check_names

                check_names(session.inputs, mine, f)
                if mine.arrays or mine.values:
                    job.given = _given_feeds(session, cfg, mine, job.shapes)
            if arrays is not None:
                job.sets = {"eval": eval_data.match(arrays, session, str(eval_npz))}
                job.real = "eval"
            else:  # the timed inputs themselves (seeded: the same on every device)
                rng = np.random.default_rng(0)
                batch = cfg.batch_sizes[0]
                job.sets = {"check": {s.name: job.given[f"b{batch}:{s.name}"] if f"b{batch}:{s.name}" in job.given
                                      else generated_input(s.name, concrete_shape(s.name, s.shape, batch, job.shapes),
                                                           s.dtype, rng) for s in session.inputs}}
            key = next(iter(job.sets))
            local_outputs[str(f)] = session.run(job.sets[key]) if key == "check" else _batched(session, job.sets[key])
        jobs.append(job)
    return jobs, labels, local_outputs


def _given_feeds(session, cfg, mine, shapes: dict) -> dict[str, np.ndarray]:
    """The given inputs of one file at every batch size, as the device will feed them."""
    import dataclasses

    from benchmarks.given import feed

    mine = dataclasses.replace(mine, shapes=shapes)
    return {f"b{b}:{s.name}": v for b in cfg.batch_sizes for s in session.inputs
            if (v := feed(s, b, mine)) is not None}


def _batched(session, feeds):
    from targets.base import run_batched

    return run_batched(session, feeds, 64)


def bench_on_devices(files: list[Path], devices: list[Device], cfg, eval_npz: Path | None, rounds: int,
                     measure_local, console, given: dict | None = None) -> tuple[list[dict], dict, list[str]]:
    """Rows (one per file and device), the devices section, and one line per device that failed."""
    from rich.progress import Progress

    jobs, labels, local_out = jobs_for_files(files, cfg, eval_npz, given)
    remote = [d for d in devices if not d.is_local]
    with Progress(console=console, transient=True) as progress:
        tasks = {d.name: progress.add_task(f"{d.name}: starting", total=None) for d in devices}

        def say(d: Device, text: str) -> None:
            progress.update(tasks[d.name], description=f"{d.name}: {text}"[:70])

        def local():
            out = []
            for f in files:
                progress.update(tasks["local"], description=f"local: {f.name}"[:70])
                out.append(measure_local(f))
            return out

        here = any(d.is_local for d in devices)
        runs, local_results = measure_devices(
            remote, lambda d: [j for j in jobs if j.target in REMOTE_TARGETS], cfg, rounds, labels, say,
            local=local if here else None)
    rows: list[dict] = []
    failed: list[str] = []
    for d in devices:
        if d.is_local:
            rows += [{"device": "local", "file": str(f), "metrics": m.to_json() if isinstance(m, Metrics) else None,
                      "error": None if isinstance(m, Metrics) else str(m)} for f, m in zip(files, local_results)]
            continue
        run = runs[d.name]
        if run.error:
            failed.append(run.error)
        by_name = {o.name: o for o in run.outcomes}
        for j in jobs:
            o = by_name.get(j.name) or Outcome(j.name, error=f"{d.name}: only ONNX and TFLite files run on remote "
                                                             f"devices ({Path(j.name).suffix} does not)")
            rows.append(_row(d.name, j, o, local_out.get(j.name)))
    return rows, devices_section(runs, devices, cfg.threads), failed


def _row(device: str, job: Job, o: Outcome, local_outputs) -> dict:
    from targets.validate import compare

    row = {"device": device, "file": job.name, "metrics": o.metrics.to_json() if o.metrics else None,
           "error": o.error, "notes": o.notes}
    if o.metrics is not None and local_outputs is not None and o.outputs:
        got = next(iter(o.outputs.values()))
        try:
            fid = compare(local_outputs, got, [f"out{i}" for i in range(len(got))])
            row["vs_local"] = {"cosine_mean": fid.cosine, "cosine_min": fid.cosine_min, "max_abs": fid.max_abs}
        except Exception as e:  # outputs of another shape: say so instead of a cosine
            row["vs_local"] = {"error": str(e)}
    return row


def devices_section(runs: dict[str, DeviceRun], devices: list[Device], threads: int) -> dict:
    """What each device is, and what makes its numbers not comparable with the others'."""
    from compressor import sysinfo

    local_versions = sysinfo.library_versions()
    local_boot = boot_id() if any(d.is_local for d in devices) else None
    out: dict[str, dict] = {}
    for d in devices:
        if d.is_local:
            cpu = sysinfo.cpu_info()
            out["local"] = {"kind": "local", "emulated": False, "arch": cpu["arch"], "cpu": cpu["model"],
                            "cores": cpu["logical_cores"], "runtimes": {k: v for k, v in local_versions.items() if k in
                                                                        ("onnxruntime", "ai-edge-litert", "openvino", "executorch", "torch")},
                            "threads": threads, "notes": []}
            continue
        info = runs[d.name].info
        notes = []
        notes += runtime_differences(info.get("runtimes") or {}, local_versions)
        if runs[d.name].retried:
            notes.append(f"the connection dropped once ({runs[d.name].retried.removeprefix(d.name + ': ')}); its "
                         "artifacts were measured again from the start")
        if info.get("emulated"):
            notes.append("emulated (qemu): its outputs are the ARM kernels' own; its latency and peak memory (the "
                         "emulator's) are not the board's, and its latency "
                         "is never gated")
        gov = info.get("governor")
        if gov and gov != "performance":
            notes.append(f"CPU frequency governor is {gov!r}, not 'performance': latency varies with the clock")
        out[d.name] = {"kind": "local" if d.spec.is_local else "ssh", "emulated": bool(info.get("emulated")),
                       "arch": info.get("arch"), "cpu": info.get("cpu"), "cores": info.get("cores"),
                       "memory_gb": info.get("memory_gb"), "os": info.get("os"), "python": info.get("python"),
                       "runtimes": {k: v for k, v in (info.get("runtimes") or {}).items() if k != "numpy"},
                       "threads": d.spec.threads or threads, "governor": gov, "state": info.get("state"), "notes": notes}
    counts = {n: s["threads"] for n, s in out.items()}
    if len(set(counts.values())) > 1:
        note = "thread counts differ (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")"
        for n in counts:
            out[n]["notes"].append(note)
    groups: dict[str, set[str]] = {}
    for a, b in same_machine(runs, local_boot):
        group = next((g for g in groups.values() if a in g or b in g), None)
        if group is None:
            groups[a] = group = set()
        group.update((a, b))
    for group in groups.values():
        names = sorted(group)
        note = (f"{', '.join(names[:-1])} and {names[-1]} are one machine: they were measured in turn (at the "
                "same time only when pinned to separate CPUs with affinity:)")
        for n in names:
            if n in out:
                out[n]["notes"].append(note)
    return out


def runtime_differences(there: dict[str, str], here: dict[str, str]) -> list[str]:
    """Where the device's runtimes are not the ones that validated the artifacts here: the
    same runtime at another version, or another TFLite interpreter altogether."""
    notes = []
    for family in (("onnxruntime",), ("ai-edge-litert", "tflite-runtime"), ("openvino",), ("executorch",)):
        a = next(((d, there[d]) for d in family if d in there), None)
        b = next(((d, here[d]) for d in family if d in here), None)
        if a and b and a != b:
            notes.append(f"{a[0]} {a[1]} there, {b[0]} {b[1]} here (where the artifacts were validated): outputs "
                         "and speed may differ")
    return notes
