"""PyTorch -> TorchScript: trace (script where the model branches on tensor values),
freeze, save with the input signature inside the archive."""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Callable

import torch

from compressor.errors import ExportError, first_line
from targets.torch_archive import META_NAME

# What torch.jit.trace warns when the model's Python reads a tensor's value (an `if` on
# it, `int(t)`, `.item()`): the trace keeps the branch taken for the example input only.
_DATA_DEPENDENT = re.compile(r"Converting a tensor to a Python|might cause the trace to be incorrect|"
                             r"might not generalize|Python value", re.I)


def capture(module: torch.nn.Module, example: tuple[torch.Tensor, ...], how: str) -> tuple[torch.jit.ScriptModule, str]:
    """A ScriptModule of `module` and how it was made ('trace' or 'script').

    'auto' traces, and scripts instead when tracing reports data-dependent control flow:
    a trace would silently keep one branch. A model that neither traces cleanly nor
    scripts is refused with the cause (file:line of the branch and the scripting error).
    """
    if how == "script":
        return _script(module, None), "script"
    traced, flow = _trace(module, example)
    if flow is None:
        return traced, "trace"
    if how == "trace":
        raise ExportError(f"TorchScript export failed: {flow}; tracing keeps only the branch the example "
                          "input takes (set targets.torchscript.capture to 'script', or remove the branch)")
    return _script(module, flow), "script"


def _trace(module: torch.nn.Module, example: tuple[torch.Tensor, ...]):
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False)
        except Exception as e:  # the tracer raises RuntimeError, TypeError, ValueError, ...
            raise ExportError(f"TorchScript export failed: the model does not trace ({_cause(e)})") from None
    # Warnings raised inside torch itself (a quantized graph reading its constant scales)
    # are not the model's control flow.
    torch_dir = str(Path(torch.__file__).parent)
    flow = next((w for w in caught if issubclass(w.category, torch.jit.TracerWarning)
                 and _DATA_DEPENDENT.search(str(w.message)) and not str(w.filename).startswith(torch_dir)), None)
    if flow is None:
        return traced, None
    where = f"{Path(flow.filename).name}:{flow.lineno}"
    return traced, f"the model has data-dependent control flow at {where} ({first_line(flow.message)})"


def _script(module: torch.nn.Module, flow: str | None) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(module)
    except Exception as e:
        why = f"{flow}, and torch.jit.script cannot compile it" if flow else "torch.jit.script cannot compile it"
        raise ExportError(f"TorchScript export failed: {why} ({_cause(e)})") from None


def _cause(e: BaseException) -> str:
    """The telling part of a tracer or scripting error: its message and the user's line."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    where = next((m.group(0) for m in re.finditer(r"File \"[^\"]+\", line \d+", text)), None)
    if where and "site-packages" not in where:
        msg += f" at {where.replace('File ', '')}"
    return f"{type(e).__name__}: {msg}"[:400]


def freeze(script: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freeze: weights become constants, Conv+BN fold, dead code and attributes go."""
    script.eval()
    with torch.no_grad():
        return torch.jit.freeze(script)


def optimize(frozen: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """optimize_for_inference: oneDNN convolutions with prepacked weights (about 1.3x on
    ResNet-18 and 1.8x on MobileNetV2 at batch 1 on x86). Its prepacked oneDNN constants
    cannot be serialized (torch.jit.load fails on them), so the archive holds the frozen
    graph and a flag, and the session applies this pass after loading; C++ deployments
    call torch::jit::optimize_for_inference likewise. Quantized graphs gain nothing:
    their kernels are already fbgemm/oneDNN int8 ones. Works in place."""
    with torch.no_grad():
        return torch.jit.optimize_for_inference(frozen)


def takes_any_batch(script: Callable, reference: Callable, example: tuple[torch.Tensor, ...],
                    atol: float) -> bool:
    """Whether the captured graph runs a batch of another size and agrees with the module
    it came from there (a trace can bake the example's batch size into a reshape)."""
    other = tuple(torch.cat([t, t[:1]]) for t in example)
    try:
        with torch.no_grad():
            got, want = script(*other), reference(*other)
    except Exception:
        return False
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    return len(got) == len(want) and all(g.shape == w.shape and torch.allclose(g.float(), w.float(), atol=atol)
                                         for g, w in zip(got, want))


def save(script: torch.jit.ScriptModule, path: Path, meta: dict) -> None:
    try:
        torch.jit.save(script, str(path), _extra_files={META_NAME: json.dumps(meta)})
    except Exception as e:
        raise ExportError(f"TorchScript export failed: the module cannot be serialized ({_cause(e)})") from None
