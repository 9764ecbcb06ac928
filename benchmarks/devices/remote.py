"""Measure artifacts on one device through its transport: ship the runner, the artifacts
and their inputs, check every file arrived whole (size and sha256), run the plan in
interleaved rounds, bring the outputs back, and leave nothing behind.

The device's rows get the same metrics record the local harness writes; accuracy and
output fidelity are computed here, on the host, from the outputs the device's own
runtime produced (ARM kernels are not x86 kernels: each device has its own cosine).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.devices.failures import RUNTIME_OF, load_failure
from benchmarks.devices.inventory import Device
from benchmarks.devices.transport import LocalTransport, Transport, last_line
from benchmarks.harness import gzip_size, last_json_object
from benchmarks.metrics import Latency, Metrics
from compressor.errors import DeviceError, DeviceLost
from compressor.fsutil import sha256

RUNNER_PACKAGE = Path(__file__).with_name("runner")
MIN_PYTHON = (3, 8)
REMOTE_TARGETS = tuple(RUNTIME_OF)  # what the runner can run: onnx, tflite, openvino, executorch
BLOCKS = 10


@dataclass
class Job:
    """One artifact to measure: its row name, file(s), target and layout record."""

    name: str
    path: Path
    target: str                       # "onnx" | "tflite"
    files: list[Path]
    layout: dict | None = None
    session_inputs: list = field(default_factory=list)   # TensorSpec of the artifact (opened locally)
    # Named sets of inputs in the declared layout whose outputs come back (validation,
    # evaluation); `real` names the one whose samples feed the timed runs when they fit.
    sets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    real: str | None = None
    # Inputs the user gave (bench --inputs / --value), built here for each batch size:
    # "b<batch>:<input>" -> the array the device feeds as it is.
    given: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] | None = None   # this file's --shape (None: the settings' own)


@dataclass
class Outcome:
    name: str
    metrics: Metrics | None = None
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)   # input set -> outputs (declared layout)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    busy_s: float = 0.0               # the device's time timing it and running its inputs (the rest is overhead)


def open_transport(device: Device) -> Transport:
    if device.spec.is_local:
        return LocalTransport(device.name)
    from benchmarks.devices.ssh import SshTransport

    t = SshTransport(device.name, device.spec)
    t.connect()
    return t


class DeviceSession:
    """One device, for the length of one measurement (or one probe)."""

    def __init__(self, device: Device, say: Callable[[str], None] = lambda s: None) -> None:
        self.device, self.spec, self.say = device, device.spec, say
        self.python = self.spec.python
        self.transport: Transport | None = None
        self.workdir: str | None = None
        self.info: dict = {}

    # --- set-up ---------------------------------------------------------------------

    def open(self, folders: int = 0) -> dict:
        """Connect, check the Python, make the work folder, ship the runner, probe."""
        self.say("connecting")
        self.transport = open_transport(self.device)
        if self.spec.is_local and self.python == "python3":
            import sys
            self.python = sys.executable  # a local device runs the runner with this Python
        workroot = self.spec.workdir or (tempfile.gettempdir() if self.spec.is_local else None)
        script = ("import sys, os, tempfile\nv = sys.version_info\nprint('%d.%d.%d' % tuple(v[:3]))\n"
                  f"if v >= {MIN_PYTHON!r}:\n"
                  f"    d = tempfile.mkdtemp(prefix='compressor-', dir={workroot!r})\n"
                  f"    [os.mkdir(os.path.join(d, 'a%d' % i)) for i in range({folders})]\n    print(d)\n")
        got = self.transport.run([self.python, "-c", script], self.spec.connect_timeout_s + 30)
        lines = got.stdout.decode("utf-8", "replace").split()
        if got.returncode == 127 or (got.returncode != 0 and not lines and "not found" in got.stderr):
            raise DeviceError(f"{self.device.name}: there is no {self.python} on the device; install Python "
                              f"{'.'.join(map(str, MIN_PYTHON))}+ there or set python: in devices.yaml")
        if got.returncode != 0 or not lines:
            raise DeviceError(f"{self.device.name}: {self.python} cannot make a work folder "
                              f"in {workroot or 'its temp folder'}: {last_line(got.stderr)}; set workdir: "
                              "in devices.yaml to a writable folder")
        version = tuple(int(x) for x in lines[0].split(".")[:2])
        if version < MIN_PYTHON or len(lines) < 2:
            raise DeviceError(f"{self.device.name}: {self.python} is Python {lines[0]}; the runner needs "
                              f"{'.'.join(map(str, MIN_PYTHON))} or newer: install one and set python: in devices.yaml")
        self.workdir = lines[1]
        with tempfile.TemporaryDirectory(prefix="compressor-runner-") as tmp:
            runner = build_runner(Path(tmp) / "runner.pyz")
            self.put(runner, self.remote("runner.pyz"))
            self.verify({self.remote("runner.pyz"): runner})
        got = self.runner(["probe", self.workdir], 60)
        self.info = last_json_object(got.stdout.decode("utf-8", "replace")) or {}
        if not self.info:
            raise DeviceError(f"{self.device.name}: the runner did not start: {last_line(got.stderr)}")
        if self.spec.emulated is not None:
            self.info["emulated"] = self.spec.emulated
        return self.info

    def remote(self, *parts: str) -> str:
        return "/".join([self.workdir, *parts])

    def runner(self, args: list[str], timeout: float, **kw):
        return self.transport.run([self.python, self.remote("runner.pyz"), *args], timeout, **kw)

    def put(self, local: Path, remote: str) -> None:
        self.transport.put(Path(local), remote, max(60.0, Path(local).stat().st_size / 1e6))  # >= 1 MB/s

    def verify(self, files: dict[str, Path]) -> None:
        """Every copied file has the size and sha256 it has here."""
        got = self.runner(["sha256", *files], 120 + sum(p.stat().st_size for p in files.values()) / 50e6)
        there = last_json_object(got.stdout.decode("utf-8", "replace")) or {}
        for remote, local in files.items():
            size, digest = (there.get(remote) or [None, "not found"])
            if size is None:
                raise DeviceError(f"{self.device.name}: {Path(remote).name} is not on the device after copying "
                                  f"({digest}); {_disk_hint(digest)}")
            if size != local.stat().st_size or digest != sha256(local):
                raise DeviceLost(f"{self.device.name}: {local.name} arrived with {size} bytes and another sha256 "
                                 f"than the {local.stat().st_size} bytes sent (a transfer error)")

    def close(self) -> None:
        """Remove the work folder and end the connection (also after a failure)."""
        if self.transport is None:
            return
        if self.workdir is not None:
            try:
                self.transport.run(["rm", "-rf", self.workdir], 30)
                self.workdir = None
            except DeviceError:
                self._clean_with_new_connection()
        self.transport.close()
        self.transport = None

    def _clean_with_new_connection(self) -> None:
        """The connection is gone: the runner removes its folder when it notices, but a
        folder made before it started needs a fresh connection (best effort, short)."""
        try:
            t = open_transport(self.device)
            t.run(["rm", "-rf", self.workdir], 15)
            t.close()
        except DeviceError:
            pass
        self.workdir = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- measuring ------------------------------------------------------------------

    def missing_runtime(self, target: str) -> str | None:
        """Why this device cannot run `target` artifacts (None when it can)."""
        runtimes, missing = self.info.get("runtimes", {}), self.info.get("missing", {})
        if "numpy" not in runtimes:
            return (f"numpy is missing for {self.python} on the device ({missing.get('numpy', 'not importable')}); "
                    f"install it there: {self.python} -m pip install numpy")
        if not any(r in runtimes for r in RUNTIME_OF[target]):
            want = RUNTIME_OF[target][0]
            why = missing.get(want, "not importable")
            return (f"{want} is missing for {self.python} on the device ({why}); install it there: "
                    f"{self.python} -m pip install {want}")
        return None

    def measure(self, jobs: list[Job], cfg, rounds: int,
                labels: np.ndarray | None = None) -> list[Outcome]:
        from targets.layout import feeds_for

        outcomes: dict[str, Outcome] = {}
        runnable = []
        for i, job in enumerate(jobs):
            why = self.missing_runtime(job.target)
            if why:
                outcomes[job.name] = Outcome(job.name, error=why)
            else:
                runnable.append((i, job))
        need = sum(f.stat().st_size for _, j in runnable for f in j.files)
        free = self.info.get("free_bytes")
        if runnable and free is not None and need > free:
            raise DeviceError(f"{self.device.name}: the artifacts take {need / 1e6:.1f} MB, the device has "
                              f"{free / 1e6:.1f} MB free in {Path(self.workdir).parent}; free some space or set "
                              "workdir: in devices.yaml")
        entries, sent = [], {}
        threads = self.spec.threads or cfg.threads
        runs_per_round = -(-cfg.runs // rounds)
        with tempfile.TemporaryDirectory(prefix="compressor-ship-") as tmp:
            for i, job in runnable:
                self.say(f"copying {job.path.name}")
                folder = f"a{i}"
                for f in job.files:
                    sent[self.remote(folder, f.name)] = f
                    self.put(f, self.remote(folder, f.name))
                sets = []
                for key, arrays in job.sets.items():
                    local = Path(tmp) / f"{key}-{i}.npz"
                    np.savez(local, **_for_session(feeds_for(arrays, job.layout), job.session_inputs))
                    sent[self.remote(folder, local.name)] = local
                    self.put(local, self.remote(folder, local.name))
                    sets.append({"key": key, "inputs": self.remote(folder, local.name),
                                 "save": self.remote(folder, f"out-{key}.npz")})
                real = next((s["inputs"] for s in sets if s["key"] == job.real), None)
                given = None
                if job.given:
                    local = Path(tmp) / f"given-{i}.npz"
                    np.savez(local, **job.given)
                    given = sent_to(self, sent, folder, local)
                entries.append({"id": i, "name": job.name, "job": {
                    "kind": job.target, "file": self.remote(folder, job.path.name), "real": real, "given": given,
                    "input_sets": [{"inputs": s["inputs"], "save": s["save"]} for s in sets],
                    "settings": {"threads": threads, "batch_sizes": list(cfg.batch_sizes), "warmup": cfg.warmup,
                                 "warmup_s": cfg.warmup_s, "runs": cfg.runs, "min_time_s": cfg.min_time_s,
                                 "rounds": rounds, "block": max(1, -(-runs_per_round // BLOCKS)),
                                 "shapes": {k: list(v) for k, v in (cfg.shapes if job.shapes is None
                                                                    else job.shapes).items()}}},
                    "_sets": sets, "_job": job})
            plan = {"artifacts": [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries],
                    "settings": {"rounds": rounds}, "env": dict(self.spec.env),
                    "affinity": self.spec.affinity, "cooldown": self.spec.cooldown.model_dump()}
            plan_file = Path(tmp) / "plan.json"
            plan_file.write_text(json.dumps(plan))
            sent[self.remote("plan.json")] = plan_file
            self.put(plan_file, self.remote("plan.json"))
            self.verify(sent)
            if entries:
                self._run_plan(entries, cfg, threads, labels, outcomes, Path(tmp))
        return [outcomes.get(j.name) or Outcome(j.name, error="the runner on the device sent no result for it")
                for j in jobs]

    def _run_plan(self, entries: list[dict], cfg, threads: int, labels, outcomes: dict,
                  tmp: Path) -> None:
        events: list[dict] = []

        def on_line(line: str) -> None:
            try:
                ev = json.loads(line)
            except ValueError:
                return
            if isinstance(ev, dict):
                events.append(ev)
                if ev.get("event") == "progress":
                    self.say(ev.get("text", ""))

        got = self.runner(["measure", self.remote("plan.json")], self.spec.command_timeout_s, on_line=on_line,
                          hold_stdin=True)
        by_name = {e["name"]: e for e in entries}
        warnings = [ev["text"] for ev in events if ev.get("event") == "warning"]
        for ev in events:
            entry = by_name.get(ev.get("name"))
            if entry is None:
                continue
            job = entry["_job"]
            if ev["event"] == "failed":
                outcomes[job.name] = Outcome(job.name, error=load_failure(self.device.name, job, ev["error"],
                                                                          self.info))
            elif ev["event"] == "result":
                outcomes[job.name] = self._outcome(job, entry, ev, cfg, threads, labels, tmp, warnings)
        if got.returncode != 0 and not any(ev.get("event") == "end" for ev in events):
            why = last_line(got.stderr)
            for e in entries:
                outcomes.setdefault(e["name"], Outcome(e["name"], error=f"{self.device.name}: the runner on the device "
                                                                       f"stopped ({why}); {_disk_hint(why)}"))

    def _outcome(self, job: Job, entry: dict, ev: dict, cfg, threads: int, labels, tmp: Path,
                 warnings: list[str]) -> Outcome:
        from benchmarks import eval_data
        from compressor.reference import top1
        from targets.layout import outputs_from

        out = Outcome(job.name, notes=list(warnings), busy_s=float(ev.get("busy_s") or 0.0))
        for s in entry["_sets"]:
            local = tmp / f"back-{entry['id']}-{s['key']}.npz"
            self.transport.get(s["save"], local, 300)
            with np.load(local) as z:
                raw = [z[f"out{k}"] for k in range(len(z.files))]
            out.outputs[s["key"]] = outputs_from(raw, ev["loaded"]["outputs"], job.layout)
        accuracy = None
        if labels is not None and "eval" in out.outputs:
            eval_data.check_labels(out.outputs["eval"][0], labels, "evaluation data")
            accuracy = top1(out.outputs["eval"][0], labels)
        block = entry["job"]["settings"]["block"]
        latency = [Latency.from_samples(b, ev["samples"].get(str(b), []), keep=cfg.keep_samples, block=block)
                   for b in cfg.batch_sizes]
        states = ev.get("states") or []
        state = {"before": states[0]["before"], "after": states[-1]["after"], "rounds": states} if states else None
        if any(c < 0 for c in ev.get("cooled_s") or []):
            out.notes.append(f"{self.device.name} did not cool down to idle within "
                             f"{self.spec.cooldown.max_wait_s:.0f} s before a round")
        loaded = ev["loaded"]
        out.metrics = Metrics(
            path=str(job.path), target=job.target, runtime=loaded["runtime"], provider="CPU", device="cpu",
            threads=threads, size_bytes=sum(f.stat().st_size for f in job.files), gzip_bytes=gzip_size(job.files),
            load_s=loaded["load_s"], first_inference_ms=loaded["first_inference_ms"], latency=latency,
            peak_rss_mb=ev.get("peak_rss_mb"), baseline_rss_mb=loaded.get("baseline_rss_mb"),
            accuracy=accuracy, eval_samples=None if accuracy is None else len(labels), inputs=loaded["inputs"],
            emulated=bool(self.info.get("emulated")), device_state=state)
        return out


def build_runner(dest: Path) -> Path:
    """The runner package as one zipapp (`python runner.pyz ...`): byte-identical for the
    same sources (fixed timestamps), so its sha256 names the runner version."""
    import zipfile

    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0)),
                   "import sys\nfrom runner.main import main\nsys.exit(main(sys.argv[1:]))\n")
        for f in sorted(RUNNER_PACKAGE.glob("*.py")):
            z.writestr(zipfile.ZipInfo(f"runner/{f.name}", (2020, 1, 1, 0, 0, 0)), f.read_bytes())
    return dest


def _for_session(arrays: dict[str, np.ndarray], specs: list) -> dict[str, np.ndarray]:
    """The arrays an artifact takes, in its dtypes (as the local harness casts them)."""
    if not specs:
        return arrays
    return {s.name: np.ascontiguousarray(arrays[s.name].astype(s.dtype, copy=False)) for s in specs
            if s.name in arrays}


def _disk_hint(text: str) -> str:
    if "No space left" in text or "ENOSPC" in text or "Disk quota" in text:
        return "the device's disk is full: free some space there or set workdir: in devices.yaml"
    return "see the message above"


# What onnxruntime says when it cannot load or run an artifact. Its messages carry a C++
# file, line and signature before the words that matter, and the runner keeps only the first
# 400 characters of the child's last line, so the tail ("... is till opset 19.") may be cut:
# what the device's text lacks is read from the artifact here.


def sent_to(device, sent: dict, folder: str, local: Path) -> str:
    """Copy `local` into the artifact's folder on the device; its remote path."""
    remote = device.remote(folder, local.name)
    sent[remote] = local
    device.put(local, remote)
    return remote
