"""The plan: every artifact of one device, in interleaved rounds, with cool-downs."""

import json
import os
import subprocess
import sys
import threading
import time

from .child import send as _send
from .probe import thermal


class _Child:
    def __init__(self, entry, job_path, env):
        self.entry = entry
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(sys.argv[0]), "child", job_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     universal_newlines=True, env=env, bufsize=1)
        self.loaded = self.read()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            err = self.proc.stderr.read().strip().splitlines()
            raise ChildFailed(self._death(err))
        return json.loads(line)

    def ask(self, command):
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        return self.read()

    def _death(self, err):
        code = self.proc.returncode
        last = next((ln.strip() for ln in reversed(err) if ln.strip()), "")
        how = ("was killed by signal %d" % -code) if code is not None and code < 0 else "exited with code %s" % code
        if code in (-9,):
            how += " (out of memory?)"
        elif code in (-11, -6, -4, -7):
            how += " (the runtime crashed on this artifact)"
        return how + ("; its last words: %s" % last[:800] if last else "")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class ChildFailed(Exception):
    pass


_children = []
_rounds_done = [0]


def _cooldown(policy, idle):
    """Wait as the plan says: a fixed pause, or until the hottest sensor is back within
    margin_c of where it was before the first artifact (at most max_wait_s)."""
    mode = (policy or {}).get("mode", "none")
    if mode == "pause":
        time.sleep(policy.get("seconds", 0))
        return None
    if mode != "temperature" or idle is None:
        return None
    start = time.time()
    target = idle + policy.get("margin_c", 3.0)
    while time.time() - start < policy.get("max_wait_s", 120):
        now = thermal()["temp_c"]
        if now is None or now <= target:
            return round(time.time() - start, 1)
        time.sleep(1.0)
    return -1.0  # did not cool down in time: the host notes it


def measure(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    workdir = os.path.dirname(os.path.abspath(plan_path))
    _watch_stdin(workdir)
    if plan.get("affinity"):
        try:
            os.sched_setaffinity(0, plan["affinity"])
        except (AttributeError, OSError) as e:
            _send({"event": "warning", "text": "could not pin to CPUs %s: %s" % (plan["affinity"], e)})
    # Runtimes write caches under $HOME (onnxruntime's telemetry id): a home inside the
    # work folder goes away with it. The plan's env (devices.yaml) comes last and wins.
    home = os.path.join(workdir, "home")
    os.mkdir(home)
    env = dict(os.environ, HOME=home, XDG_CACHE_HOME=os.path.join(home, ".cache"))
    env.update({str(k): str(v) for k, v in (plan.get("env") or {}).items()})
    settings = plan["settings"]
    rounds = settings["rounds"]
    idle = thermal()["temp_c"]
    alive = []
    # Rounds > 1: every artifact stays loaded (its own process) and they take turns;
    # one round: one artifact at a time, the least memory.
    for entry in plan["artifacts"]:
        state = {"name": entry["name"], "samples": {}, "states": [], "cooled_s": []}
        entry["_state"] = state
        if rounds > 1:
            ch = _start(entry, workdir, env)
            if ch is not None:
                alive.append(ch)
        else:
            ch = _start(entry, workdir, env)
            if ch is not None:
                if _round(ch, 0, plan, idle):
                    _finish(ch)
    if rounds > 1:
        for k in range(rounds):
            for ch in list(alive):
                _send({"event": "progress", "text": "%s round %d/%d" % (ch.entry["name"], k + 1, rounds)})
                if not _round(ch, k, plan, idle):
                    alive.remove(ch)
        for ch in alive:
            _finish(ch)
    _send({"event": "end"})
    sys.stdout.flush()
    # Not a normal exit: the stdin watcher still blocks in a read, and the interpreter's
    # shutdown would abort on its lock.
    os._exit(0)


def _start(entry, workdir, env):
    job_path = os.path.join(workdir, "job-%s.json" % entry["id"])
    with open(job_path, "w") as f:
        json.dump(entry["job"], f)
    _send({"event": "progress", "text": "%s: loading" % entry["name"]})
    try:
        ch = _Child(entry, job_path, env)
    except ChildFailed as e:
        _send({"event": "failed", "name": entry["name"], "error": "the runner on the device %s" % e})
        return None
    _children.append(ch)
    return ch


def _round(ch, k, plan, idle):
    state = ch.entry["_state"]
    # Between artifacts (every round after the very first one), as the plan says.
    cooled = _cooldown(plan.get("cooldown"), idle) if _rounds_done[0] else None
    _rounds_done[0] += 1
    before = thermal()
    try:
        got = ch.ask("round %d" % k)
    except ChildFailed as e:
        _send({"event": "failed", "name": ch.entry["name"], "error": "the runner on the device %s" % e})
        ch.stop()
        return False
    state["states"].append({"before": before, "after": thermal()})
    if cooled is not None:
        state["cooled_s"].append(cooled)
    for b, samples in got["samples"].items():
        state["samples"].setdefault(b, []).extend(samples)
    return True


def _finish(ch):
    state = ch.entry["_state"]
    try:
        outputs = ch.ask("outputs")
        done = ch.ask("quit")
    except ChildFailed as e:
        _send({"event": "failed", "name": ch.entry["name"], "error": "the runner on the device %s" % e})
        ch.stop()
        return
    ch.stop()
    _send({"event": "result", "name": ch.entry["name"], "loaded": ch.loaded, "samples": state["samples"],
           "states": state["states"], "cooled_s": state["cooled_s"], "saved": outputs["saved"],
           "peak_rss_mb": done["peak_rss_mb"], "busy_s": done.get("busy_s")})


def _watch_stdin(workdir):
    """The host keeps our stdin open while it waits for us; when it closes (the SSH
    connection dropped, the host was interrupted), stop everything and leave nothing."""
    def watch():
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        for ch in _children:
            try:
                ch.proc.kill()
            except OSError:
                pass
        _remove(workdir)
        os._exit(130)

    threading.Thread(target=watch, daemon=True).start()


def _remove(workdir):
    import shutil

    # Only a folder this runner lives in, made for it (its name says so).
    if os.path.basename(workdir).startswith("compressor-") and os.path.isfile(os.path.join(workdir, "runner.pyz")):
        shutil.rmtree(workdir, ignore_errors=True)
