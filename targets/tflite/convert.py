"""PyTorch -> .tflite with litert-torch: fp32, and full-integer int8 through litert-torch's
PT2E quantizer (symmetric, per-channel weights) calibrated on the recipe's data."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from pathlib import Path


from compressor.errors import ExportError, UnsupportedOpError

# Where the operator that could not be lowered shows up in litert-torch's error text.
_OP_PATTERNS = (
    re.compile(r"(?:lowering|lower|implementation|registered)[^\n]*?\b(aten\.\w+(?:\.\w+)?)", re.IGNORECASE),
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"\b(aten[.:]+\w+)"),
    re.compile(r"'(tfl\.\w+|stablehlo\.\w+|mhlo\.\w+)' op"),
)

# torch.export's refusal of a value read in Python (`int(t)`, `if t.any():`), and the
# user's line it names.
_DATA_DEPENDENT = re.compile(r"GuardOnDataDependentSymNode|data-dependent expression|Could not guard on data-dependent")
_USER_CALL = re.compile(r'The following call raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n([^\n]*)')

# The smallest quantization scale calibration may give (see _small_scales).
MIN_SCALE = 2.0 ** -64


def export_fp32(model, path: Path, channels_last: bool) -> dict:
    import torch

    module, args = _prepared(model, channels_last)
    with _quiet():
        try:
            edge = _litert().convert(module, args)
        except Exception as e:  # litert-torch raises a zoo of types; classify by text
            raise _classify(e, "fp32", model) from None
        edge.export(str(path))
    meta = _rename_io(path, model)
    return {**meta, "converter": f"litert-torch {_version('litert-torch')} (torch {torch.__version__})",
            "channels_last": channels_last}


def export_full_integer(model, variant, path: Path | None, calibration, channels_last: bool, io_type: str,
                        fp32_works: bool) -> dict:
    """int8 weights and activations. litert-torch gives int8 input/output; with io 'float'
    a QUANTIZE/DEQUANTIZE pair inside the model keeps the fp32 artifact's interface.
    With `path` None, the converted PT2E graph instead, before litert-torch (the screen)."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    if calibration is None or not len(calibration):
        raise ExportError("full-integer int8 TFLite needs calibration data; add data.calibration to the recipe")
    module, args = _prepared(model, channels_last)
    from compressor.qat.quantizers import litert_quantizer
    from targets.tflite.linear_int8 import transformer_plan

    config = _small_scales(get_symmetric_quantization_config(is_per_channel=variant.per_channel, is_dynamic=False))
    quantizer, notes = litert_quantizer(), {}
    linear = transformer_plan(model, variant, calibration, channels_last)
    if linear is not None:  # a transformer: its Linear layers only, outlier-aware
        module, names, hybrid, notes = linear
        # min/max ranges, which the plan's smoothing was chosen under (a histogram's
        # clipped range cut the smoothed outliers: worst cosine 0.987 against 0.998).
        config = _minmax(config)
        for name in names:
            quantizer.set_module_name(name, config)
    else:
        from compressor.layers import check_module_names, module_types, with_scope

        quantizer.set_global(config)
        check_module_names(model.module, variant.exclude, "tflite")
        # channels_last wraps the model (litert-torch's ChannelLastIOWrapper keeps it as `wrapped`).
        scope = "wrapped." if channels_last else ""
        for name in variant.exclude:  # layers (or a module's own ops) the recipe keeps in float
            quantizer.keep_float(with_scope(scope, name))
        for cls in module_types(model.module, variant.exclude_ops, "tflite"):
            quantizer.keep_float_type(cls)
    with _quiet():
        try:
            from targets.tflite.reuse import quantized

            converted, samples = quantized(module, args, quantizer, model, variant, calibration, channels_last,
                                           reusable=linear is None)
            if path is None:  # the fallback's screen: the converted graph, run in PyTorch
                return converted
            # The converter reads only static-or-dynamic off the quantizer's global config.
            mode = quantizer if linear is None else litert_quantizer().set_global(config)
            edge = _litert().convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=mode))
        except Exception as e:
            raise _classify(e, "full-integer int8", model, fp32_works) from None
        edge.export(str(path))
    if linear is not None and hybrid:
        from targets.tflite.linear_int8 import dynamic_range_pass

        notes["dynamic_range_kernels"] = dynamic_range_pass(path)
    meta, wrapped = _finish_int8(path, model, io_type)
    return {**meta, **notes, "engine": "litert-torch PT2EQuantizer (symmetric int8, "
            f"{'per-channel' if variant.per_channel else 'per-tensor'} weights"
            f"{'; Linear layers only, outlier-aware' if linear is not None else ''})",
            # PT2E's observers record min and max; percentile and entropy are ONNX Runtime calibrators.
            "calibration": "minmax", "calibration_samples": samples, "io": io_type,
            "excluded": list(variant.exclude), "excluded_ops": list(variant.exclude_ops),
            "float_io_tensors": wrapped, "channels_last": channels_last}


def _minmax(config):
    """`config` with min/max activation observers (the smallest scale kept)."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver

    def swapped(spec):
        return dataclasses.replace(spec, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=MIN_SCALE))

    return dataclasses.replace(config, input_activation=swapped(config.input_activation),
                               output_activation=swapped(config.output_activation))


def _small_scales(config):
    """litert-torch's config with the observers' smallest scale lowered from 2**-12 to
    MIN_SCALE. At 2**-12 a tensor spanning less than 255 * 2**-12 (0.06) gets a coarser
    scale than its range needs, and one within +-2**-13 rounds to zero entirely (the late
    activations of random-weight MobileNetV2 span 1e-8, EfficientNet-B0's 1e-14: their int8
    outputs were all zeros).
    Wider ranges are untouched, so the usual models give the same file as before."""
    import dataclasses

    def lowered(spec):
        ctr = getattr(spec, "observer_or_fake_quant_ctr", None)
        if ctr is None or not hasattr(ctr, "p"):
            return spec
        # One level of partial: torchao's prepare reads the observer class off ctr.p.func.
        return dataclasses.replace(spec, observer_or_fake_quant_ctr=ctr.p.func.with_args(
            **{**ctr.p.keywords, "eps": MIN_SCALE}))

    return dataclasses.replace(config, input_activation=lowered(config.input_activation),
                               output_activation=lowered(config.output_activation), weight=lowered(config.weight))


def compact_file(path: Path) -> dict:
    from targets.tflite import flatbuf

    before = path.stat().st_size
    m = flatbuf.read(path)
    stats = flatbuf.compact(m)
    after = flatbuf.write(m, path)
    return {**stats, "bytes_saved": before - after}


def _prepared(model, channels_last: bool):
    """The module and example args litert-torch traces; NHWC wraps 4-D inputs and outputs."""
    args = model.example_inputs()
    module = model.module.eval()
    if not channels_last:
        return module, args
    four_d = [i for i, a in enumerate(args) if a.ndim == 4]
    outs = model.run({s.name: a.numpy() for s, a in zip(model.inputs, args)})
    out_4d = [i for i, o in enumerate(outs) if o.ndim == 4]
    wrapped = _litert().to_channel_last_io(module, args=four_d, outputs=out_4d)
    return wrapped, tuple(_nhwc(a) if i in four_d else a for i, a in enumerate(args))


def _nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def _rename_io(path: Path, model) -> dict:
    """Give the signature the recipe's input and output names (litert-torch writes
    args_N / output_N), so that feeds and reports use the same names as the other targets."""
    from targets.tflite import flatbuf

    m = flatbuf.read(path)
    outs = model.output_names or _default_output_names(model)
    for sig in m.signatureDefs or []:
        for tmap, names in ((sig.inputs, model.input_names), (sig.outputs, outs)):
            for t in tmap:
                k = re.search(r"(\d+)$", (t.name or b"").decode())
                if k and int(k.group(1)) < len(names):
                    t.name = names[int(k.group(1))].encode()
        for t in sig.inputs + sig.outputs:
            m.subgraphs[sig.subgraphIndex].tensors[t.tensorIndex].name = t.name
    flatbuf.write(m, path)
    return {"input_names": list(model.input_names), "output_names": list(outs)}


def _default_output_names(model) -> list[str]:
    outs = model.run({s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs())})
    return ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]


def _classify(e: Exception, precision: str, model, fp32_works: bool = False) -> Exception:
    text = f"{e}\n{e.__cause__ or ''}"
    if _DATA_DEPENDENT.search(text):
        from targets.elsewhere import exporting_target

        call = _USER_CALL.search(text)
        where = f" at {Path(call.group(1)).name}:{call.group(2)} ({call.group(3).strip()})" if call else ""
        return UnsupportedOpError(f"TFLite {precision} conversion failed: the model reads a tensor's value{where} "
                                  "to decide a shape or a branch, which torch.export cannot follow; "
                                  f"{exporting_target(model, 'tflite')}; or compute it with tensor operations")
    op = next((m.group(1) for p in _OP_PATTERNS if (m := p.search(text))), None)
    if op is None:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        return ExportError(f"TFLite {precision} conversion failed: {first[:300]}")
    if fp32_works:
        works = "the fp32, fp16 and dynamic int8 TFLite artifacts of this model convert"
    else:
        from targets.elsewhere import exporting_target

        works = exporting_target(model, "tflite")
    return UnsupportedOpError(f"TFLite {precision} conversion failed: operator {op!r} has no LiteRT lowering; "
                              f"{works}; or replace the operator in the model")


def _litert():
    from compressor.logs import native_stderr

    with native_stderr(log_as="native.tensorflow"), _quiet():  # TensorFlow's absl/oneDNN lines at import
        import litert_torch
    return litert_torch


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress lines and absl logs; keep the CLI's output to our own."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.level
        logging.root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.root.setLevel(level)


def export_prequantized(model, variant, path: Path, channels_last: bool, io_type: str) -> dict:
    """A model converted by PT2E under litert-torch's quantizer (the qat step): its Q/DQ
    pairs carry the learned scales; litert-torch lowers them to int8 kernels as they are."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    module, args = _prepared(model, channels_last)
    # litert-torch reads only whether the quantizer is static or dynamic from it.
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=variant.per_channel))
    with _quiet():
        try:
            edge = _litert().convert(module, args, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        except Exception as e:
            raise _classify(e, "QAT int8", model, True) from None
        edge.export(str(path))
    meta, wrapped = _finish_int8(path, model, io_type)
    return {**meta, "engine": f"litert-torch PT2EQuantizer (QAT or its PTQ twin; torch {torch.__version__})",
            "io": io_type, "float_io_tensors": wrapped, "channels_last": channels_last,
            "excluded": list(variant.exclude)}


def _finish_int8(path: Path, model, io_type: str) -> tuple[dict, int]:
    """Name the io tensors after the model's inputs and outputs; with io 'float', wrap
    the int8 interface in QUANTIZE/DEQUANTIZE so the artifact takes and gives floats."""
    from targets.tflite import flatbuf

    meta = _rename_io(path, model)
    wrapped = 0
    if io_type == "float":
        m = flatbuf.read(path)
        wrapped = flatbuf.float_io(m)
        flatbuf.write(m, path)
    return meta, wrapped
