"""Keeping OpenVINO and NNCF silent and offline.

Both report usage through `openvino_telemetry`, which, with no consent file in the
user's home, counts as consent and ships each event from a subprocess that waits 3 s for
a network this machine may not have. Each has its own switch: NNCF swaps its telemetry
for a stub when `NNCF_CI` is set at import; the converter (`ov.convert_model`) and the
library itself decline when `CI=true` (they pass `disable_in_ci=True`). NNCF logs through
its own logger, and draws its progress bars with rich on whatever `sys.stdout` is.
Everything here runs before the first import of either library.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from typing import Iterator

_lock = threading.Lock()
_ready = False


def prepare() -> None:
    """Turn NNCF's telemetry off and its logs down, once per process, before it loads."""
    global _ready
    with _lock:
        if _ready:
            return
        os.environ.setdefault("NNCF_CI", "1")
        with _in_ci():  # NNCF builds its telemetry object on import (a client id file) before stubbing it
            import nncf

        nncf.set_log_level(logging.ERROR)
        _ready = True


def load_nncf():
    """The nncf module, its telemetry and logs dealt with first."""
    prepare()
    import nncf

    return nncf


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """NNCF's rich progress bars and OpenVINO's converter prints go to a buffer, and the
    telemetry library sees a CI job (declines) for the duration; the caller's own
    stdout and environment come back afterwards."""
    prepare()
    buffer = io.StringIO()
    with _in_ci(), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield


@contextlib.contextmanager
def _in_ci() -> Iterator[None]:
    """CI=true for the duration: openvino_telemetry's own 'decline in CI' switch."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved
