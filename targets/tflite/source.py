"""An existing .tflite file as the model source: `model: {tflite: model.tflite}`.

`TfliteFileModel` is the handle the run holds for it, as it holds a `Model` for PyTorch
or a `KerasModel`: inputs and outputs read from the file's signature, and `run` executes
the file itself on LiteRT, which is the float reference every lowering is held to. The
TFLite target compresses it with ai-edge-quantizer (targets.tflite.file_export).

Everything that can be wrong with the file or with what the recipe asks of it is found
here, before the run directory exists: one line each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compressor.config.model import DTYPES
from compressor.formats import NAMES, head, kind_of, regular_file
from compressor.errors import ArtifactError, CompressorError, ModelLoadError, RecipeError, UnsupportedOpError

if TYPE_CHECKING:
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec, ModelSpec

FILE_MODES = ("static", "dynamic", "fp16", "weight_only")


@dataclass
class TfliteFileModel:
    """A checked float (or, to benchmark as given, already quantized) .tflite file."""

    path: Path                        # the file as the recipe names it, resolved
    inputs: list["InputSpec"]         # concrete shapes, batch first (a symbolic batch is 1)
    output_names: list[str]           # the recipe's names, else the file's
    file_outputs: list[str]           # the file's own output names, in the runtime's order
    source: str
    signature: str | None = None
    quantized: str | None = None      # what the file already holds quantized ("int8 weights", ...)
    framework: str = "tflite"
    _session: object = field(default=None, repr=False)

    def session(self):
        """The file open on LiteRT (opened once: the reference runs and calibration share it)."""
        from targets.base import Device
        from targets.tflite.runtime import LiteSession

        if self._session is None:
            self._session = LiteSession(self.path, Device(), 2, signature=self.signature)
        return self._session

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from targets.base import run_batched

        n = len(next(iter(feeds.values())))
        return run_batched(self.session(), feeds, max(n, 1))  # the session names a missing input

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        """Deterministic synthetic inputs of the file's shapes (when there is no evaluation data)."""
        rng = np.random.default_rng(0)
        feeds = {}
        for s in self.inputs:
            shape = (batch, *s.shape[1:])
            feeds[s.name] = (rng.random(shape).astype(s.dtype) if s.dtype.startswith("float")
                             else rng.integers(0, 2, shape).astype(s.dtype))
        return feeds

    def parameter_count(self) -> int | None:
        from targets.tflite import flatbuf

        m = flatbuf.read(self.path)
        # Weights: constant tensors, less integer shapes and axes (an int32 bias of an int8
        # model has a scale, and counts).
        constants = {t.buffer: int(np.prod(t.shape)) for sg in m.subgraphs for t in sg.tensors
                     if t.shape is not None and _has_data(m, t) and (t.type not in (2, 4) or _scaled(t))}
        return sum(constants.values())


def load_tflite_model(spec: "ModelSpec", base_dir: Path, options, variants: list["QuantVariant"]) -> TfliteFileModel:
    from targets.tflite import TFLiteTarget

    opts = TFLiteTarget().options(options)
    if opts.channels_last:
        raise RecipeError("targets.tflite.channels_last: a .tflite file runs in the layout it was converted with; "
                          "drop 'channels_last'")
    for variant in variants:
        check_variant(variant)
    path = spec.tflite if spec.tflite.is_absolute() else Path(base_dir) / spec.tflite
    check_file(path)
    from targets.base import Device
    from targets.tflite.runtime import LiteSession

    try:
        session = LiteSession(path, Device(), 2, signature=opts.signature)
    except CompressorError as e:
        raise ModelLoadError(f"model.tflite {path}: {e}") from None
    quantized = quantized_kind(path)
    if quantized is not None:
        refuse_requantizing(path, quantized, variants)
    inputs = _inputs(path, session.inputs, spec.inputs)
    file_outputs = list(session.output_names)
    outputs = list(spec.outputs) if spec.outputs else file_outputs
    if len(outputs) != len(file_outputs):
        raise RecipeError(f"model.outputs names {len(outputs)} outputs; {path.name} has {len(file_outputs)} "
                          f"({', '.join(file_outputs)}): name each once, in that order")
    if variants and any(v.mode == "static" for v in variants) and session.signature is None:
        raise UnsupportedOpError(f"{path.name} has no signature: ai-edge-quantizer calibrates a signature's inputs; "
                                 "re-convert the model with one, or use mode: dynamic")
    check_exclusions(path, variants)
    return TfliteFileModel(path=path, inputs=inputs, output_names=outputs, file_outputs=file_outputs,
                           source=str(spec.tflite), signature=session.signature, quantized=quantized,
                           _session=session)


def check_variant(variant: "QuantVariant") -> None:
    """What ai-edge-quantizer cannot do for a file, refused before anything is read."""
    label = variant.label
    if variant.mode not in FILE_MODES:
        raise RecipeError(f"variant {label!r}: a .tflite file has no {variant.mode} variant (it is compressed "
                          f"after training; ai-edge-quantizer offers {', '.join(FILE_MODES)}); drop it")
    if variant.fallback is not None:
        raise RecipeError(f"variant {label!r}: 'fallback' ranks and re-lowers the layers of a PyTorch model; a "
                          ".tflite file has none to re-trace: keep ops in float with exclude_ops (TFLite op names "
                          "such as SOFTMAX) or exclude (a regex over tensor names), and drop 'fallback'")
    given = []
    if variant.mode == "static":
        given += ["calibration"] if variant.calibration != "minmax" else []
        given += ["symmetric_activations"] if variant.symmetric_activations else []
    given += ["outliers"] if variant.outliers == "linear" else []
    given += ["smoothing_alpha"] if variant.smoothing_alpha is not None else []
    if given:
        raise RecipeError(f"variant {label!r}: ai-edge-quantizer quantizes a .tflite file with min/max ranges, "
                          "asymmetric int8 activations and no outlier rewrites (those work on PyTorch models); "
                          f"drop {', '.join(given)}")
    if variant.mode == "weight_only":
        from targets.tflite.weight_only import refuse

        refuse(variant)
    for pattern in variant.exclude:
        try:
            re.compile(pattern)
        except re.error as e:
            raise RecipeError(f"variant {label!r}: exclude {pattern!r} is not a regular expression ({e}); for a "
                              ".tflite file it matches tensor names") from None


def check_exclusions(path: Path, variants: list["QuantVariant"]) -> None:
    """exclude_ops name TFLite operators (SOFTMAX, MEAN, ...) that the file has."""
    from targets.tflite.runtime import op_histogram

    if not any(v.exclude_ops for v in variants):
        return
    from ai_edge_quantizer.qtyping import TFLOperationName

    have = sorted(op_histogram(path))
    known = {t.value for t in TFLOperationName}
    for variant in variants:
        unknown = [op for op in variant.exclude_ops if op not in have]
        if unknown:
            raise RecipeError(f"variant {variant.label!r}: exclude_ops {unknown} are not operators of "
                              f"{path.name}; it has {', '.join(have)} (TFLite op names)")
        never = [op for op in variant.exclude_ops if op not in known]
        if never:
            raise RecipeError(f"variant {variant.label!r}: ai-edge-quantizer never quantizes {', '.join(never)} "
                              "(they stay float as they are); drop them from exclude_ops")


_LOOKS = {**NAMES, "hdf5": NAMES["hdf5"][:-1] + ": use 'model: {keras: ...}')"}


def check_file(path: Path) -> None:
    """Missing, empty, foreign, truncated: one line that says which, and what to give."""
    regular_file(path, f"model.tflite {path}", "fix 'model.tflite' in the recipe", "re-convert the model")
    kind = kind_of(head(path), path.name)
    if kind != "tflite":
        what = f"it looks like {_LOOKS[kind]}" if kind else "no 'TFL3' flatbuffer identifier: truncated or another format"
        raise ModelLoadError(f"model.tflite {path}: not a TFLite model ({what}); give a .tflite file"
                             + (" or use 'model: {onnx: ...}' with the onnx target" if kind == "onnx" else ""))
    from targets.tflite.runtime import check_tflite_file

    try:
        check_tflite_file(path)
    except ArtifactError as e:
        raise ModelLoadError(str(e).replace(str(path), f"model.tflite {path}", 1)) from None


def quantized_kind(path: Path) -> str | None:
    """What of the file is already quantized: None for a float model."""
    from targets.tflite import flatbuf
    from ai_edge_litert import schema_py_generated as schema

    tt = schema.TensorType
    ints = {tt.INT8: "int8", tt.UINT8: "uint8", tt.INT16: "int16", tt.INT4: "int4"}
    m = flatbuf.read(path)
    weights, activations = set(), set()
    for sg in m.subgraphs:
        for t in sg.tensors:
            scaled = _scaled(t)
            if _has_data(m, t):
                if t.type in ints and scaled:
                    weights.add(ints[t.type])
                elif t.type == tt.FLOAT16:
                    weights.add("fp16")
            elif t.type in ints and scaled:
                activations.add(ints[t.type])
    if not weights and not activations:
        return None
    parts = [f"{'/'.join(sorted(weights))} weights"] if weights else []
    parts += [f"{'/'.join(sorted(activations))} activations"] if activations else []
    return " and ".join(parts)


def refuse_requantizing(path: Path, quantized: str, variants: list["QuantVariant"]) -> None:
    """ai-edge-quantizer reads float weights: an already-quantized file can only be benchmarked as given."""
    if not variants:
        return
    labels = ", ".join(v.label for v in variants)
    if "int" in quantized and any(v.mode == "fp16" for v in variants):
        why = "fp16 of an int8 model only adds float copies"
    elif "int" not in quantized:
        why = "its weights are fp16 already; ai-edge-quantizer reads fp32 weights"
    else:
        why = "ai-edge-quantizer starts from float weights"
    raise UnsupportedOpError(f"model.tflite {path.name} is already quantized ({quantized}): {labels} cannot "
                             f"quantize it again ({why}); drop the quantize step to benchmark the file as given, "
                             "or give the float .tflite it was made from")


def _inputs(path: Path, specs, given: list["InputSpec"] | None) -> list["InputSpec"]:
    """The file's inputs with concrete shapes; the recipe's override by name."""
    from compressor.config.recipe import InputSpec

    have = {s.name: s for s in specs}
    for g in given or ():
        if g.name not in have:
            raise ModelLoadError(f"model.inputs: {g.name!r} is not an input of {path.name}; it takes "
                                 f"{', '.join(have)}")
    over = {g.name: g for g in given or ()}
    out = []
    for s in specs:
        dtype = s.dtype
        if dtype not in DTYPES:
            raise ModelLoadError(f"{path.name}: input {s.name!r} is {dtype}, which the recipe's data cannot feed "
                                 f"(it takes {', '.join(DTYPES)})")
        g = over.get(s.name)
        if g is not None:
            if len(g.shape) != len(s.shape) or any(isinstance(d, int) and d != w for d, w in zip(s.shape, g.shape)):
                raise ModelLoadError(f"model.inputs: {s.name!r} is {list(g.shape)} in the recipe, {path.name} "
                                     f"takes {list(s.shape)}; fix the shape (only symbolic dims can be chosen)")
            if g.dtype != dtype:
                raise ModelLoadError(f"model.inputs: {s.name!r} is {g.dtype} in the recipe, {path.name} takes "
                                     f"{dtype}; fix its dtype")
            out.append(g)
            continue
        free = [a for a, d in enumerate(s.shape) if not isinstance(d, int) and a > 0]
        if free:
            raise ModelLoadError(f"{path.name}: input {s.name!r} has symbolic dims {list(s.shape)}; give its shape "
                                 f"in model.inputs, e.g. {{name: {s.name}, shape: [1, ...]}}")
        shape = [d if isinstance(d, int) else 1 for d in s.shape]
        out.append(InputSpec(name=s.name, shape=shape, dtype=dtype))
    return out


def _has_data(m, t) -> bool:
    b = m.buffers[t.buffer] if 0 < t.buffer < len(m.buffers) else None
    return b is not None and ((b.data is not None and len(b.data) > 0) or bool(getattr(b, "offset", 0)))


def _scaled(t) -> bool:
    q = t.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0
