"""Which other target exports a model one target refused: named by trying it, so that a
refusal says where the model does go."""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import tempfile
from pathlib import Path

# A probe export that fails must not probe in turn (tflite -> torchscript -> tflite ...).
_PROBING = contextvars.ContextVar("probing", default=False)
CANDIDATES = ("onnx", "torchscript", "tflite")


def exporting_target(model, refused_by: str) -> str:
    """'the onnx target exports this model (targets: {onnx: {}})', or that none of the
    others does; the fp32 export of each candidate in turn, into a scratch folder."""
    import targets

    if _PROBING.get():
        return "other targets not tried"
    tried = [name for name in CANDIDATES if name != refused_by and name in targets.names()]
    token = _PROBING.set(True)
    # A failing exporter logs pages (torch.export prints the graph it gave up on).
    quiet = contextlib.ExitStack()
    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
    quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        for name in tried:
            try:
                with tempfile.TemporaryDirectory(prefix=f"{refused_by}-probe-") as d:
                    targets.get(name).export(model, None, Path(d) / "probe", {}, None)
            except Exception:  # any failure: this one does not export it either
                continue
            return f"the {name} target exports this model (targets: {{{name}: {{}}}})"
    finally:
        logging.disable(previous)
        quiet.close()
        _PROBING.reset(token)
    return f"no other target ({', '.join(tried)}) exports it either"
