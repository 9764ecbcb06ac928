"""Many devices at once: each device measures its artifacts one at a time, in a thread of
its own; a device that fails or drops out has its rows failed with the reason, and the
others finish. Ctrl-C cuts every connection (each runner then removes its work folder).

Devices that turn out to be one machine (the same running kernel: a loopback device, a
second `url: local` entry, this machine itself) would disturb each other's timings, so
they take turns, unless they are pinned to separate CPUs (`affinity:`): connecting,
copying and probing still overlap, only the measuring waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from benchmarks.devices.inventory import Device
from benchmarks.devices.remote import DeviceSession, Job, Outcome
from benchmarks.devices.runner.probe import boot_id
from compressor.errors import DeviceError, DeviceLost


RETRY_PAUSE_S = 3.0


@dataclass
class DeviceRun:
    device: Device
    info: dict = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None          # the whole device failed (unreachable, refused, dropped twice)
    retried: str | None = None        # why the first attempt was given up (the connection dropped)


class Turns:
    """Who may measure on a machine now: a device takes the CPUs it is pinned to (all of
    the machine's when it is not pinned) and waits while another device holds any of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: dict[str, set] = {}

    @contextlib.contextmanager
    def hold(self, machine: str | None, cpus: set | None):
        if machine is None:  # a device that does not say which machine it is waits for nobody
            yield
            return
        taken = cpus or {"*"}
        with self._cond:
            self._cond.wait_for(lambda: not _clash(self._busy.get(machine, set()), cpus))
            self._busy.setdefault(machine, set()).update(taken)
        try:
            yield
        finally:
            with self._cond:
                self._busy[machine] -= taken
                self._cond.notify_all()


def _clash(busy: set, cpus: set | None) -> bool:
    if not busy:
        return False
    return cpus is None or "*" in busy or bool(busy & cpus)


def measure_device(device: Device, jobs: list[Job], cfg, rounds: int, labels=None,
                   say: Callable[[str], None] = lambda s: None, sessions: list | None = None,
                   turns: Turns | None = None) -> DeviceRun:
    """All `jobs` on one device, with one retry when the connection drops."""
    run = DeviceRun(device)
    turns = turns or Turns()
    cpus = set(device.spec.affinity) if device.spec.affinity else None
    for attempt in (1, 2):
        session = DeviceSession(device, say)
        if sessions is not None:
            sessions.append(session)
        try:
            run.info = session.open(len(jobs))
            with turns.hold(run.info.get("boot_id"), cpus):
                run.outcomes = session.measure(jobs, cfg, rounds, labels)
            break
        except DeviceLost as e:
            if attempt == 2:
                run.error = f"{e}; gave up after one retry"
            else:
                run.retried = str(e)
                say("connection lost: retrying once")
                time.sleep(RETRY_PAUSE_S)  # a network blip or a restarting sshd: give it a moment
        except DeviceError as e:
            run.error = str(e)
            break
        finally:
            session.close()
    if run.error is not None:
        run.outcomes = [Outcome(j.name, error=run.error) for j in jobs]
    return run


def measure_devices(devices: list[Device], jobs_for: Callable[[Device], list[Job]], cfg,
                    rounds: int, labels=None, say: Callable[[Device, str], None] = lambda d, s: None,
                    local: Callable[[], object] | None = None) -> tuple[dict[str, DeviceRun], object]:
    """Every remote device concurrently (and `local()`, the local harness, beside them).
    Returns the runs by device name and what `local()` returned."""
    sessions: list[DeviceSession] = []
    turns = Turns()

    def here():
        with turns.hold(boot_id(), None):
            return local()

    with ThreadPoolExecutor(max_workers=len(devices) + 1, thread_name_prefix="device") as pool:
        local_future = pool.submit(here) if local is not None else None
        futures = {d.name: pool.submit(measure_device, d, jobs_for(d), cfg, rounds, labels,
                                       lambda s, d=d: say(d, s), sessions, turns) for d in devices}
        try:
            while not all(f.done() for f in [*futures.values(), *([local_future] if local_future else [])]):
                time.sleep(0.1)  # wake up for Ctrl-C (a blocking wait would swallow it)
        except KeyboardInterrupt:
            for s in list(sessions):
                s.abort()
            raise
        runs = {name: f.result() for name, f in futures.items()}
        return runs, (local_future.result() if local_future is not None else None)


def same_machine(runs: dict[str, DeviceRun], local_boot_id: str | None) -> list[tuple[str, str]]:
    """Pairs of devices (local included) that are one machine (one running kernel): their
    numbers disturbed each other when they were measured at the same time."""
    ids = {"local": local_boot_id} if local_boot_id else {}
    ids.update({n: r.info.get("boot_id") for n, r in runs.items() if r.info.get("boot_id")})
    names = sorted(ids)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if ids[a] == ids[b]]

