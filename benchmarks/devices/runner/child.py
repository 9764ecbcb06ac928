"""One artifact, in a process of its own: load it, then answer the plan's commands."""

import json
import sys
import time

from .sessions import open_session
from .timing import chosen_input, concrete_shape, proc_status_mb, timed_runs

ACCURACY_BATCH = 64


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _run_batched(session, feeds, batch):
    """Outputs of `feeds` run in chunks of `batch` samples. An input whose array does not
    hold one row a sample (a state, a scalar the user gave) goes whole to every chunk."""
    import numpy as np

    # The samples are counted on an input with a symbolic batch axis when there is one.
    batched = [name for name, shape, _ in session.inputs
               if name in feeds and shape and not (isinstance(shape[0], int) and shape[0] > 0)]
    first = feeds[batched[0]] if batched else next(v for v in feeds.values() if np.ndim(v))
    n = len(first)
    rows = {k for k, v in feeds.items() if np.ndim(v) and len(v) == n}
    fixed = [s[1][0] for s in session.inputs
             if s[0] in rows and s[1] and isinstance(s[1][0], int) and s[1][0] > 0]
    if fixed:
        batch = int(fixed[0])
    chunks = []
    for start in range(0, n, batch):
        part = {k: v[start:start + batch] if k in rows else v for k, v in feeds.items()}
        got = min(batch, n - start)
        if fixed and got < batch:  # pad the last chunk of a fixed-batch model
            part = {k: np.concatenate([v, np.repeat(v[-1:], batch - got, axis=0)]) if k in rows else v
                    for k, v in part.items()}
        chunks.append([o[:got] for o in session.run(part)])
    return [np.concatenate(outs) for outs in zip(*chunks)]


def _feeds(session, batch, shapes, real, given=None):
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in session.inputs:
        key = "b%d:%s" % (batch, name)
        if given is not None and key in given:  # what the user gave, built by the host for this batch
            feeds[name] = np.ascontiguousarray(given[key])
            continue
        dims = concrete_shape(name, shape, batch, shapes)
        if dims is None:
            raise ValueError("input %r has a dynamic dimension besides the batch (shape %s); give it with "
                             "--shape" % (name, list(shape)))
        feeds[name] = chosen_input(name, dims, dtype, None if real is None else real.get(name), rng)
        if feeds[name] is None:
            raise ValueError("input %r has dtype %s, which the runner cannot generate" % (name, dtype))
    return feeds


def child(job_path):
    """One artifact: load it, then answer the parent's commands on stdin, one per line:
    'round K' times every batch size, 'outputs' runs the input sets and saves what comes
    out, 'quit' reports the peak memory and ends."""
    import numpy as np

    with open(job_path) as f:
        job = json.load(f)
    s = job["settings"]
    base_rss = proc_status_mb("VmRSS")
    t0 = time.perf_counter()
    session = open_session(job["kind"], job["file"], s["threads"])
    load_s = time.perf_counter() - t0
    real = None
    if job.get("real"):
        with np.load(job["real"]) as z:
            real = {k: z[k] for k in z.files}
    given = None
    if job.get("given"):
        with np.load(job["given"]) as z:
            given = {k: z[k] for k in z.files}
    shapes = {k: tuple(v) for k, v in s.get("shapes", {}).items()}
    feeds = {b: _feeds(session, b, shapes, real, given) for b in s["batch_sizes"]}
    first = feeds[s["batch_sizes"][0]]
    t = time.perf_counter()
    session.run(first)
    first_ms = (time.perf_counter() - t) * 1e3
    send({"event": "loaded", "load_s": load_s, "first_inference_ms": first_ms, "runtime": session.runtime,
           "baseline_rss_mb": base_rss,
           "inputs": [{"name": n, "shape": list(sh), "dtype": d} for n, sh, d in session.inputs],
           "outputs": session.output_names})
    busy = 0.0  # seconds spent timing and running the input sets (the rest is overhead)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        began = time.perf_counter()
        if cmd[0] == "round":
            k, rounds = int(cmd[1]), s["rounds"]
            out = {}
            for b in s["batch_sizes"]:
                f = feeds[b]
                # The first round warms up as asked; later ones re-warm the caches the
                # other artifacts' rounds took over.
                warm, warm_s = (s["warmup"], s["warmup_s"]) if k == 0 else (min(s["warmup"], 5), s["warmup_s"] / rounds)
                out[str(b)] = timed_runs(lambda: session.run(f), warm, warm_s, -(-s["runs"] // rounds),
                                         s["min_time_s"] / rounds, s["block"])
            busy += time.perf_counter() - began
            send({"event": "round", "samples": out})
        elif cmd[0] == "outputs":
            saved = []
            for item in job.get("input_sets", []):
                with np.load(item["inputs"]) as z:
                    arrays = {k: z[k] for k in z.files if k != "labels"}
                outs = _run_batched(session, arrays, ACCURACY_BATCH)
                np.savez(item["save"], **{"out%d" % i: o for i, o in enumerate(outs)})
                saved.append(item["save"])
            busy += time.perf_counter() - began
            send({"event": "outputs", "saved": saved})
        elif cmd[0] == "quit":
            send({"event": "done", "peak_rss_mb": proc_status_mb("VmHWM"), "busy_s": busy})
            return 0
    return 0
