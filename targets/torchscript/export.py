"""PyTorch -> TorchScript: trace (script where the model branches on tensor values),
freeze, save with the input signature inside the archive."""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from compressor.errors import ExportError, first_line
from targets.torch_archive import META_NAME

# What torch.jit.trace warns when the model's Python reads a tensor's value (an `if` on
# it, `int(t)`, `.item()`): the trace keeps the branch taken for the example input only.
_DATA_DEPENDENT = re.compile(r"Converting a tensor to a Python|might cause the trace to be incorrect|"
                             r"might not generalize|Python value", re.I)


class TraceInputs(NamedTuple):
    example: tuple[torch.Tensor, ...]  # what the tracer runs
    probes: dict[str, tuple[torch.Tensor, ...]]  # what the trace is checked on
    padded: bool  # the example is padded and a probe is not: a mask branch is tried both ways


def capture(module: torch.nn.Module, inputs: TraceInputs, how: str,
            atol: float = 1e-4) -> tuple[torch.jit.ScriptModule, str, str | None]:
    """A ScriptModule of `module`, how it was made ('trace' or 'script'), and, for a trace
    the tracer warned about, what it was checked on.

    A trace keeps, for every Python `if` on a tensor, the branch the example took, so it is
    run on the probes and compared with the module there. 'auto' traces, and scripts
    where the tracer warns of data-dependent control flow or the trace disagrees on a
    probe. Where scripting fails, or under 'trace', a warned trace is kept when the
    example was padded, a probe was not, and it agrees on every probe: transformers'
    attention-mask code reads shapes as tensors (a warning) and guards its value branches
    against tracing, and a mask branch traced padded is the general one. Float inputs have
    no such two-sided probe: a warned trace of them is scripted or refused. A model that
    neither traces faithfully nor scripts is refused with the cause (the branch's
    file:line, the probe it breaks on, the scripting error).
    """
    if how == "script":
        return _script(module, None), "script", None
    traced, flow = _trace(module, inputs.example)
    broken = disagreement(traced, module, inputs.probes, atol)
    if flow is None and broken is None:
        return traced, "trace", None
    why = "; ".join(filter(None, [flow, broken and f"the trace differs from the model on {broken}"]))
    if how == "auto":
        try:
            return _script(module, why), "script", None
        except ExportError as e:
            refused = e
    else:
        refused = ExportError(f"TorchScript export failed: {why}; tracing keeps only the branch the example "
                              "input takes (set targets.torchscript.capture to 'script', or remove the branch)")
    if broken is None and inputs.padded:
        probed = ", ".join(inputs.probes)
        return traced, "trace", f"{flow}; the trace, taken padded, agrees with the model on {probed} inputs"
    raise refused


def disagreement(traced, module, probes: dict[str, tuple[torch.Tensor, ...]], atol: float) -> str | None:
    """The first probe on which `traced` and `module` disagree, and by how much; None if
    they agree on all. A probe the module itself refuses (its own input checks) is skipped."""
    from compressor.model import flatten_outputs

    for name, args in probes.items():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                want = flatten_outputs(module(*args))
            except Exception:
                continue
            try:
                got = flatten_outputs(traced(*args))
            except Exception as e:
                return f"{name} inputs (it fails there: {_cause(e)})"
        if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
            return f"{name} inputs (other output shapes)"
        for g, w in zip(got, want):
            diff = (g.float() - w.float()).abs().max().item() if w.numel() else 0.0
            if not diff <= atol * max(1.0, w.float().abs().max().item()):
                return f"{name} inputs (max difference {diff:.3g})"
    return None


def trace_inputs(model, calibration=None, batch: int = 2) -> TraceInputs:
    """The example to trace with and the probes to check the trace on.

    Integer inputs of rank 2 or more (token ids, attention masks, segment ids) are traced
    padded: each row 1 up to a length, 0 after it (3/4 and 1/2 of the last axis), so
    that a mask branch ("no padding: skip the mask") is traced on its general side.
    Probes: the same unpadded (all 1), padded at other lengths, the declared example
    (zeros; random floats), and real rows of the calibration data when there are some.
    """
    declared = model.example_inputs(batch=batch)
    ints = [i for i, t in enumerate(declared) if not t.is_floating_point() and t.ndim >= 2]

    def with_lengths(fractions: list[float]) -> tuple[torch.Tensor, ...]:
        out = list(declared)
        for i in ints:
            t = torch.zeros_like(declared[i])
            width = t.shape[-1]
            for row, f in zip(range(t.shape[0]), fractions * t.shape[0]):
                t[row, ..., :max(1, round(width * f))] = 1
            out[i] = t
        return tuple(out)

    if not ints:
        gen = torch.Generator().manual_seed(1)
        other = tuple(torch.rand(t.shape, generator=gen).to(t.dtype) if t.is_floating_point() else t for t in declared)
        return TraceInputs(declared, {"other random": other}, padded=False)
    probes = {"unpadded": with_lengths([1.0]), "otherwise padded": with_lengths([1 / 8, 1.0]),
              "declared example": declared}
    if calibration is not None and len(calibration) and all(s.name in calibration.inputs for s in model.inputs):
        import numpy as np

        rows = [torch.from_numpy(np.ascontiguousarray(calibration.inputs[s.name][:batch])).to(t.dtype)
                for s, t in zip(model.inputs, declared)]
        if all(r.shape == t.shape for r, t in zip(rows, declared)):
            probes["calibration"] = tuple(rows)
    padded = with_lengths([3 / 4, 1 / 2])
    try:  # ones and zeros are valid for token ids, masks and segments; a model may still refuse them
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.module(*padded)
    except Exception:
        return TraceInputs(declared, probes, padded=False)
    return TraceInputs(padded, probes, padded=True)


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
    return traced, f"the model has data-dependent control flow at {where} ({_short(flow.message)})"


def _short(message) -> str:
    """The tracer's warning up to its first sentence's end (the rest is boilerplate)."""
    text = first_line(message)
    return text.split(". ")[0].rstrip(".")


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
