"""Edits of a .tflite flatbuffer: float input/output around a full-integer model, and an
exact compaction. Works on the schema's object API (ai-edge-litert ships it); no torch,
no TensorFlow.

Compaction changes no number the interpreter computes with: it shortens generated
tensor names (keeping every input, output and signature name), lets tensors with
byte-identical constants share one buffer, and writes each distinct zero-point vector
once (TFLite needs as many zero points as scales, and per-channel int8 weights and
int32 biases carry one all-zero int64 per channel: 12 bytes a channel, 2 of them per
layer, which is what keeps MobileNetV2 int8 above a quarter of its fp32 size).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"
BUFFER_ALIGN = 16  # what the converter's C++ writer gives constant data; kernels may read it as int32/float


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read(path: Path):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))


def write(model, path: Path) -> int:
    """Serialise `model` to `path` with shared zero points and aligned buffers."""
    import flatbuffers

    shared: dict[bytes, int] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.quantization is not None and not getattr(t.quantization, "_shared_zero_points", False):
                t.quantization = _SharedQuant.wrap(t.quantization, shared)
    model.buffers = [_AlignedBuffer.wrap(b) for b in model.buffers]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    data = builder.Output()
    Path(path).write_bytes(data)
    return len(data)


class _SharedQuant:
    """QuantizationParametersT whose zero-point vector is written once per distinct value.

    A flatbuffer offset may point at a vector that an earlier table already uses: the
    format allows sharing, and the verifier only checks bounds and alignment."""

    @classmethod
    def wrap(cls, q, shared: dict):
        schema = _schema()

        class Shared(schema.QuantizationParametersT):
            def Pack(self, builder):  # noqa: N802 (flatbuffers' name)
                zp = self.zeroPoint
                offset = None
                if zp is not None and len(zp):
                    arr = np.asarray(zp, dtype=np.int64)
                    key = arr.tobytes()
                    offset = shared.get(key)
                    if offset is None:
                        offset = shared[key] = builder.CreateNumpyVector(arr)
                self.zeroPoint = None
                try:
                    return _pack_quant(self, builder, offset)
                finally:
                    self.zeroPoint = zp

        obj = Shared()
        obj.__dict__.update(q.__dict__)
        obj._shared_zero_points = True
        return obj


def _pack_quant(q, builder, zero_point_offset):
    schema = _schema()
    vecs = {}
    for field in ("min", "max", "scale"):
        v = getattr(q, field)
        if v is not None:
            vecs[field] = builder.CreateNumpyVector(np.asarray(v, dtype=np.float32))
    details = q.details.Pack(builder) if q.details is not None else None
    schema.QuantizationParametersStart(builder)
    if "min" in vecs:
        schema.QuantizationParametersAddMin(builder, vecs["min"])
    if "max" in vecs:
        schema.QuantizationParametersAddMax(builder, vecs["max"])
    if "scale" in vecs:
        schema.QuantizationParametersAddScale(builder, vecs["scale"])
    if zero_point_offset is not None:
        schema.QuantizationParametersAddZeroPoint(builder, zero_point_offset)
    schema.QuantizationParametersAddDetailsType(builder, q.detailsType)
    if details is not None:
        schema.QuantizationParametersAddDetails(builder, details)
    schema.QuantizationParametersAddQuantizedDimension(builder, q.quantizedDimension)
    return schema.QuantizationParametersEnd(builder)


class _AlignedBuffer:
    @classmethod
    def wrap(cls, b):
        schema = _schema()

        class Aligned(schema.BufferT):
            def Pack(self, builder):  # noqa: N802
                data = None
                if self.data is not None and len(self.data):
                    raw = np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
                    builder.StartVector(1, len(raw), BUFFER_ALIGN)
                    builder.head = builder.head - len(raw)
                    builder.Bytes[builder.head:builder.head + len(raw)] = raw
                    data = builder.EndVector(len(raw))
                schema.BufferStart(builder)
                if data is not None:
                    schema.BufferAddData(builder, data)
                return schema.BufferEnd(builder)

        obj = Aligned()
        obj.__dict__.update(b.__dict__)
        return obj


def compact(model) -> dict:
    """Shorten generated tensor names and share identical constant buffers, in place."""
    keep = set()
    for sg_index, sg in enumerate(model.subgraphs):
        keep |= {(sg_index, i) for i in [*sg.inputs, *sg.outputs]}
    for sig in model.signatureDefs or []:
        keep |= {(sig.subgraphIndex, t.tensorIndex) for t in [*sig.inputs, *sig.outputs]}
    renamed = 0
    for sg_index, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors):
            if (sg_index, i) not in keep and t.name and len(t.name) > 6:
                t.name, renamed = f"t{i}".encode(), renamed + 1
    first: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    for i, b in enumerate(model.buffers):
        if b.data is not None and len(b.data):
            digest = hashlib.sha256(np.asarray(b.data, dtype=np.uint8).tobytes()).digest()
            remap[i] = first.setdefault(digest, i)
    shared = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if remap.get(t.buffer, t.buffer) != t.buffer:
                t.buffer, shared = remap[t.buffer], shared + 1
    used = {t.buffer for sg in model.subgraphs for t in sg.tensors} | {m.buffer for m in model.metadata or []}
    for i, b in enumerate(model.buffers):  # a buffer no tensor uses any more is emptied, not removed
        if i not in used and b.data is not None:
            b.data = None
    return {"renamed_tensors": renamed, "shared_buffers": shared}


def _opcode(model, builtin: int, version: int) -> int:
    schema = _schema()
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin and oc.version >= version:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _is_quantized_int(t) -> bool:
    schema = _schema()
    q = t.quantization
    return (t.type in (schema.TensorType.INT8, schema.TensorType.UINT8) and q is not None
            and q.scale is not None and len(q.scale) == 1)


def float_io(model) -> int:
    """Give every int8 input a float twin feeding a QUANTIZE op, and every int8 output a
    DEQUANTIZE op into a float twin, so the model takes and returns float like its fp32
    artifact. Signature names stay on the float tensors. Returns how many were wrapped."""
    schema = _schema()
    wrapped = 0
    for sg_index, sg in enumerate(model.subgraphs):
        front, back, moved = [], [], {}
        for pos, ti in enumerate(list(sg.inputs)):
            if _is_quantized_int(sg.tensors[ti]):
                fi = _float_twin(sg, ti)
                front.append(_op(_opcode(model, schema.BuiltinOperator.QUANTIZE, 2), fi, ti))
                sg.inputs[pos], moved[ti] = fi, fi
        for pos, ti in enumerate(list(sg.outputs)):
            if _is_quantized_int(sg.tensors[ti]):
                fo = _float_twin(sg, ti)
                back.append(_op(_opcode(model, schema.BuiltinOperator.DEQUANTIZE, 2), ti, fo))
                sg.outputs[pos], moved[ti] = fo, fo
        sg.operators = [*front, *sg.operators, *back]
        for sig in model.signatureDefs or []:
            if sig.subgraphIndex == sg_index:
                for t in [*sig.inputs, *sig.outputs]:
                    t.tensorIndex = moved.get(t.tensorIndex, t.tensorIndex)
        wrapped += len(moved)
    return wrapped


def _float_twin(sg, index: int) -> int:
    schema = _schema()
    src = sg.tensors[index]
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = list(src.shape), (list(src.shapeSignature) if src.shapeSignature is not None else None)
    twin.type, twin.buffer, twin.name = schema.TensorType.FLOAT32, 0, src.name
    src.name = (src.name or b"") + b"_int8"
    sg.tensors.append(twin)
    return len(sg.tensors) - 1


def _op(opcode_index: int, src: int, dst: int):
    op = _schema().OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode_index, [src], [dst]
    return op
