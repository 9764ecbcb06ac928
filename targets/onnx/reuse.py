"""What the ONNX lowerings of one model share while the fallback probes it (Target.
probe_cache): the pre-processed float graph and the calibration ranges. Ranges are
collected on every tensor of the float graph, whatever is later kept in float, so one
calibration serves every probe of the same calibration settings, exactly.

Outside a probe_cache scope nothing is kept and every lowering does its own work.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

_SCOPE: ContextVar[dict | None] = ContextVar("onnx_probe_cache", default=None)


@contextlib.contextmanager
def probe_cache() -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="onnx-probe-cache-") as d:
        token = _SCOPE.set({"dir": Path(d), "pre": {}, "ranges": {}})
        try:
            yield
        finally:
            _SCOPE.reset(token)


def _file_key(path: Path) -> tuple:
    path = Path(path).absolute()
    scope = _SCOPE.get()
    if scope is not None and path.parent == scope["dir"]:
        # A graph kept here: follow_preprocess may name its unnamed nodes in place, which
        # changes no tensor.
        return (str(path),)
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def preprocessed(src: Path) -> Path | None:
    """The pre-processed graph of `src` made earlier in this scope, if any."""
    scope = _SCOPE.get()
    if scope is None:
        return None
    hit = scope["pre"].get(_file_key(src))
    return hit if hit is not None and hit.exists() else None


def keep_preprocessed(src: Path, pre: Path) -> Path:
    """Keep `pre` (the pre-processed `src`) for the scope; returns the path to use."""
    scope = _SCOPE.get()
    if scope is None:
        return pre
    kept = scope["dir"] / f"pre{len(scope['pre'])}.onnx"
    shutil.copyfile(pre, kept)
    scope["pre"][_file_key(src)] = kept
    return kept


def ranges_key(model: Path, settings: tuple, batches: list[dict]) -> tuple | None:
    """What calibration ranges depend on: the graph, the calibrator's settings and the
    data (hashed); None outside a scope."""
    if _SCOPE.get() is None:
        return None
    digest = hashlib.sha1()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode())
            digest.update(batch[name].tobytes())
    return _file_key(model), settings, len(batches), digest.hexdigest()


def ranges_into(key: tuple | None, cache: Path) -> bool:
    """Copy the ranges kept under `key` to `cache` (where quantize_static reads them)."""
    scope = _SCOPE.get()
    if scope is None or key is None or key not in scope["ranges"]:
        return False
    shutil.copyfile(scope["ranges"][key], cache)
    return True


def keep_ranges(key: tuple | None, cache: Path) -> None:
    scope = _SCOPE.get()
    if scope is None or key is None:
        return
    kept = scope["dir"] / f"ranges{len(scope['ranges'])}.json"
    shutil.copyfile(cache, kept)
    scope["ranges"][key] = kept
