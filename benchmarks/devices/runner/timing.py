"""Timing and generated inputs: the loop and the values every device and the local harness share."""

import time


def timed_runs(run, warmup, warmup_s, runs, min_time_s, block, after_block=None):
    """Warm up by count and by time (caches, thread pools and lazy kernel selection
    settle), then time `runs` calls (and keep going for `min_time_s`) in blocks of
    `block`; `after_block()` runs after each block (the reference workload). Seconds."""
    n, start = 0, time.perf_counter()
    while n < warmup or time.perf_counter() - start < warmup_s:
        run()
        n += 1
    samples = []
    start = time.perf_counter()
    while len(samples) < runs or time.perf_counter() - start < min_time_s:
        for _ in range(block):
            t = time.perf_counter()
            run()
            samples.append(time.perf_counter() - t)
        if after_block is not None:
            after_block()
    return samples


def generated_input(name, shape, dtype, rng):
    """One input from its declared shape and dtype; `rng` is numpy's default_rng(0) so
    that every device and the local harness feed the same values."""
    import numpy as np

    if dtype.startswith("float"):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype in ("int64", "int32", "int16", "int8", "uint8"):
        # Small non-negative ids: valid token ids, indices and mask values for most models;
        # masks and segment ids (BERT's token_type_ids index a table of 2 rows) are 0 or 1.
        binary = name.endswith("mask") or "token_type" in name or "segment" in name
        return rng.integers(0, 2 if binary else 100, size=shape).astype(dtype)
    return None


def chosen_input(name, dims, dtype, real, rng):
    """Real samples when they fit `dims` (first axis: how many), else generated values;
    None for a dtype that cannot be generated."""
    import numpy as np

    if real is not None and tuple(real.shape[1:]) == tuple(dims[1:]) and len(real) >= dims[0]:
        return np.ascontiguousarray(real[:dims[0]].astype(dtype, copy=False))
    return generated_input(name, dims, dtype, rng)


def concrete_shape(name, shape, batch, shapes):
    """A declared shape with its symbolic leading axis set to `batch` (None when another
    axis is symbolic and `shapes` does not fix it)."""
    if name in shapes:
        return tuple(shapes[name])
    dims = []
    for axis, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif axis == 0:
            dims.append(batch)
        else:
            return None
    return tuple(dims)


def proc_status_mb(key, pid="self"):
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
