"""Keras (.keras / .h5) and SavedModel sources -> .tflite with TensorFlow's TFLiteConverter,
in the same precisions as the PyTorch path, validated against the source's own outputs.

`KerasModel` is the handle the run holds for such a source, as it holds a `Model` for a
PyTorch one: its inputs, its own outputs, its size. The TFLite target's `export` takes
either, so a Keras recipe runs through the same loop as every other.

TensorFlow is imported only here, and only when a function of this module is called.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compressor.errors import ExportError, ModelLoadError, RecipeError, UnsupportedOpError
from compressor.fsutil import publish, staging_dir
from targets.base import Artifact

if TYPE_CHECKING:
    from compressor.config.quantize import QuantVariant
    from compressor.config.recipe import InputSpec, ModelSpec

KERAS_MODES = ("static", "dynamic", "fp16")


@dataclass
class KerasModel:
    """A loaded Keras model or SavedModel, with the recipe's names for its inputs and outputs."""

    handle: Any                       # tf.keras.Model, or a SavedModel's loaded object
    path: Path                        # the .keras/.h5 file or SavedModel directory
    inputs: list["InputSpec"]
    output_names: list[str] | None
    source: str                       # as the recipe gives it
    framework: str = "keras"

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return keras_outputs(self.handle, feeds)

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        """Deterministic synthetic inputs of the declared shapes (when there is no evaluation data)."""
        rng = np.random.default_rng(0)
        return {s.name: rng.random((batch, *s.shape[1:])).astype(s.dtype) for s in self.inputs}

    def parameter_count(self) -> int | None:
        return parameter_count(self.handle)


def load_keras_model(spec: "ModelSpec", base_dir: Path, options: dict, variants: list["QuantVariant"]) -> KerasModel:
    """Check what the recipe asks of a Keras source, then load it (TensorFlow's import takes
    seconds, so every check that can fail comes first)."""
    from targets.tflite import TFLiteTarget

    if TFLiteTarget().options(options).channels_last:
        raise RecipeError("targets.tflite.channels_last: a Keras model is converted in its own layout (Keras is "
                          "channels-last already); drop 'channels_last'")
    for variant in variants:
        _check_variant(variant)
    source = spec.keras if spec.keras.is_absolute() else Path(base_dir) / spec.keras
    if not source.exists():
        raise ModelLoadError(f"keras model {source}: no such file or directory; fix 'model.keras' in the recipe")
    return KerasModel(handle=load_keras(source), path=source, inputs=list(spec.inputs), output_names=spec.outputs,
                      source=str(spec.keras))


def export_keras(model: KerasModel, variant: "QuantVariant | None", out: Path, opts, calibration) -> Artifact:
    """The TFLite target's export of a Keras source: TFLiteConverter, then the recipe's names."""
    artifact = convert_keras(model.path, variant, out, None if calibration is None else calibration.inputs,
                             io=opts.io)
    artifact.meta.update(name_io(artifact.path, [s.name for s in model.inputs], model.output_names))
    if opts.compact:
        from targets.tflite.convert import compact_file

        artifact.meta["compacted"] = compact_file(artifact.path)
    return artifact


def _check_variant(variant: "QuantVariant") -> None:
    if variant.mode not in KERAS_MODES:
        raise RecipeError(f"variant {variant.label!r}: a Keras model has no {variant.mode} variant (TFLiteConverter "
                          f"offers {', '.join(KERAS_MODES)}); drop it")
    given = [k for k in ("exclude", "exclude_ops") if getattr(variant, k, None)]
    given += ["calibration"] if variant.calibration != "minmax" else []
    given += ["per_channel"] if not variant.per_channel else []
    given += ["fallback"] if variant.fallback is not None else []
    if given:
        raise RecipeError(f"variant {variant.label!r}: TFLiteConverter quantizes a Keras model with its own settings "
                          f"(min/max calibration, per-channel weights, every layer); drop {', '.join(given)}")


def tensorflow():
    """Import TensorFlow. Triton (pulled in by torch.compile/torch.export) segfaults when it
    loads after TensorFlow's LLVM, so where it is installed it loads first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    from compressor.logs import native_stderr

    with native_stderr(log_as="native.tensorflow"):  # its absl/oneDNN lines at import, past TF_CPP_MIN_LOG_LEVEL
        import tensorflow as tf

    return tf


def load_keras(source: Path):
    """A Keras model from .keras/.h5, or a callable SavedModel from its directory."""
    tf = tensorflow()
    source = Path(source)
    if not source.exists():
        raise ModelLoadError(f"keras model {source}: no such file or directory")
    try:
        if source.is_dir():
            return tf.saved_model.load(str(source))
        return tf.keras.models.load_model(str(source), compile=False)
    except Exception as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ModelLoadError(f"keras model {source}: cannot load it ({first[:300]})") from None


def convert_keras(source: Path, variant, out: Path, calibration: dict[str, np.ndarray] | None = None,
                  io: str = "float") -> Artifact:
    """Convert `source` (a .keras/.h5 file or a SavedModel directory) to `out`.tflite.
    `variant` is a QuantVariant or None (fp32); `calibration` maps input names (or a single
    array for one input) to samples, and feeds the representative dataset of static int8."""
    tf = tensorflow()
    source, final = Path(source), Path(f"{out}.tflite")
    with staging_dir(final.parent, final.name) as work:
        if source.is_dir():
            saved = source
        else:  # Keras 3 models convert through an exported SavedModel (the TF converter's own path)
            saved = work / "saved_model"
            load_keras(source).export(str(saved), verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        mode = None if variant is None else variant.mode
        if mode is not None:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        elif mode == "static":
            conv.representative_dataset = _representative(tf, saved, calibration, variant.calibration_samples)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io == "int8":
                conv.inference_input_type = conv.inference_output_type = tf.int8
        try:
            flat = conv.convert()
        except Exception as e:
            raise _classify(e, mode or "fp32") from None
        staged = work / final.name
        staged.write_bytes(flat)
        from targets.tflite.runtime import check_tflite_file

        check_tflite_file(staged)
        publish({staged: final})
    label = variant.label if variant else "fp32"
    return Artifact(target="tflite", label=label, precision=variant.precision if variant else "fp32", path=final,
                    meta={"converter": f"TFLiteConverter (tensorflow {tf.__version__})", "source": str(source),
                          "io": io if mode == "static" else "float"})


def _representative(tf, saved: Path, calibration, limit: int):
    if calibration is None:
        raise ExportError("full-integer int8 TFLite needs calibration data (a representative dataset)")
    sig = tf.saved_model.load(str(saved)).signatures["serving_default"]
    names = [k for k in sig.structured_input_signature[1]]
    arrays = calibration if isinstance(calibration, dict) else {names[0]: np.asarray(calibration)}
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ExportError(f"calibration data has no arrays for inputs {missing} (it gives {sorted(arrays)})")
    n = min(limit, min(len(a) for a in arrays.values()))

    def gen():
        for i in range(n):
            yield {k: np.asarray(arrays[k][i:i + 1], dtype=np.float32) for k in names}

    return gen


def _classify(e: Exception, precision: str) -> Exception:
    import re

    text = str(e)
    m = re.search(r"'(tf\.\w+|tfl\.\w+)' op", text) or re.search(r"ops? (?:are|is) not supported[^:]*:\s*(\S+)", text)
    if m:
        works = ("fp32 and fp16 keep float kernels that do support it" if precision == "static"
                 else "enable select TF ops (tf.lite.OpsSet.SELECT_TF_OPS) or replace it")
        return UnsupportedOpError(f"TFLite {precision} conversion failed: operator {m.group(1).strip(',')!r} "
                                  f"cannot be lowered; {works}")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
    return ExportError(f"TFLite {precision} conversion failed: {first[:300]}")


def keras_outputs(model, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The Keras model's (or SavedModel's serving signature's) own outputs, as float arrays."""
    if hasattr(model, "predict"):
        arrays = list(inputs.values())
        out = model.predict(arrays[0] if len(arrays) == 1 else inputs, verbose=0)
    else:
        out = model.signatures["serving_default"](**{k: v for k, v in inputs.items()})
    if isinstance(out, dict):
        return [np.asarray(out[k], dtype=np.float32) for k in sorted(out)]
    if isinstance(out, (list, tuple)):
        return [np.asarray(o, dtype=np.float32) for o in out]
    return [np.asarray(out, dtype=np.float32)]


def validate_keras(artifact: Artifact, model, inputs: dict[str, np.ndarray], tolerance, threads: int = 2):
    """Run the artifact and the Keras model on `inputs`; raise FidelityError beyond `tolerance`."""
    from targets.base import Device, run_batched
    from targets.tflite.runtime import LiteSession
    from targets.validate import check, compare

    session = LiteSession(artifact.path, Device(), threads)
    feeds = inputs if len(session.inputs) > 1 else {session.inputs[0].name: next(iter(inputs.values()))}
    got = run_batched(session, feeds, 64)
    ref = keras_outputs(model, inputs)
    fid = compare(ref, got, session.output_names)
    check(fid, tolerance, artifact.name)
    return fid


def parameter_count(model) -> int | None:
    """Weights of a Keras model (None for a bare SavedModel, which does not say)."""
    count = getattr(model, "count_params", None)
    return int(count()) if callable(count) else None


def name_io(path: Path, inputs: list[str], outputs: list[str] | None) -> dict:
    """Give the .tflite signature the recipe's input names (and output names when the recipe
    gives them), so that the recipe's data and reports line up with the artifact. Names the
    converter already took from the Keras model are kept; a single input or output is
    renamed; several that do not match are a recipe error."""
    from compressor.errors import RecipeError
    from targets.tflite import flatbuf

    m = flatbuf.read(path)
    sig = (m.signatureDefs or [None])[0]
    if sig is None:
        raise ExportError(f"{path}: the converted model has no signature to name its inputs")
    renames = [(sig.inputs, inputs, "inputs")] + ([(sig.outputs, outputs, "outputs")] if outputs else [])
    for tensors, names, what in renames:
        have = [(t.name or b"").decode() for t in tensors]
        if sorted(have) == sorted(names):
            continue
        if len(tensors) != len(names):
            raise RecipeError(f"model.{what}: the Keras model has {len(have)} {what} ({', '.join(have)}), the recipe "
                              f"names {len(names)}")
        if len(tensors) > 1:
            raise RecipeError(f"model.{what}: the Keras model's {what} are named {have}; name them so in the recipe")
        tensors[0].name = names[0].encode()
        m.subgraphs[sig.subgraphIndex].tensors[tensors[0].tensorIndex].name = tensors[0].name
    flatbuf.write(m, path)
    return {"input_names": [(t.name or b"").decode() for t in sig.inputs],
            "output_names": [(t.name or b"").decode() for t in sig.outputs]}
