"""Weight-only int4/int8 on ONNX: the weights of every MatMul (and Gemm, rewritten as a
MatMul) in blocks along K as ONNX Runtime's MatMulNBits, and embedding tables as its
GatherBlockQuantized (int8 blocks by default, or int4); activations stay float.

Engines: ONNX Runtime's MatMulNBitsQuantizer for rtn (its C++ round-to-nearest) and hqq;
our GPTQ (targets.onnx.gptq) for gptq, since ONNX Runtime 1.32's gives RTN's weights.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from compressor.config.quantize import QuantVariant
from compressor.data import Dataset
from compressor.errors import DataError, ExportError, UnsupportedOpError, first_line

INT8_COMPUTE = 4  # MatMulNBits' accuracy_level: activations quantized to int8 per block, int8 dot products
GATHER_OPSET = 21  # GatherBlockQuantized's 4-bit tables are int4 tensors: opset 21 and IR 10


def lower_weight_only(src: Path, dst: Path, v: QuantVariant, calibration: Dataset | None, batch_dynamic: bool,
                      external_data: bool) -> dict:
    """Write the weight-only variant `v` of the float graph `src` to `dst`; return notes."""
    import onnx

    from targets.onnx.scopes import nodes_to_exclude

    if v.group_size == "channel":
        raise UnsupportedOpError(f"ONNX weight-only ({v.label}): MatMulNBits quantizes blocks along K; give "
                                 "group_size 32, 64, 128 or 256 (group_size: channel is the tflite weight-only "
                                 "layout)")
    skip = set(nodes_to_exclude(src, v.exclude, v.exclude_ops))
    model = onnx.load(str(src))
    rewritten = _gemms_as_matmuls(model)
    linear = [n.name for n in _weight_matmuls(model) if n.name not in skip]
    if not linear:
        raise UnsupportedOpError(f"ONNX weight-only ({v.label}): the graph has no MatMul or Gemm with a constant "
                                 "weight to quantize" + (" outside 'exclude'" if skip else "") +
                                 " (MatMulNBits covers linear layers, not convolutions): use mode: dynamic or "
                                 "static")
    tables = _embedding_tables(model, skip, v.group_size) if v.embeddings != "float" else []
    if tables and v.embeddings == "int4":
        model = _at_opset(model, GATHER_OPSET)
    fp32 = _weight_bytes(model, linear, tables)
    notes: dict = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()), _quiet_quantizer():
            if v.algorithm == "gptq":
                notes = _gptq(model, src, linear, v, calibration, batch_dynamic)
            else:
                model = _ort_quantize(model, linear, v)
            if tables and v.embeddings == "int4":
                model = _ort_quantize(model, tables, v, gather=True)
            elif tables:
                _int8_tables(model, tables, v.group_size, v.symmetric)
    except (DataError, UnsupportedOpError):
        raise
    except Exception as e:
        raise ExportError(f"ONNX weight-only ({v.label}) failed in {_engine(v)}: {first_line(e)}") from None
    if v.compute == "int8":
        for node in model.graph.node:
            if node.op_type == "MatMulNBits":
                _set_int_attr(node, "accuracy_level", INT8_COMPUTE)
    onnx.save(model, str(dst), save_as_external_data=external_data,
              location=dst.name + ".data" if external_data else None)
    return {**_notes(model, v, linear, tables, fp32, len(skip), rewritten), **notes}


def _engine(v: QuantVariant) -> str:
    return {"rtn": "onnxruntime MatMulNBitsQuantizer (round to nearest)",
            "hqq": "onnxruntime MatMulNBitsQuantizer (HQQ)",
            "gptq": "GPTQ (targets.onnx.gptq)"}[v.algorithm]


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs every node at INFO and warns about the opset it raises; its numpy
    block quantizer divides by the zero scale of an all-zero block before discarding it, and
    HQQ hands torch a read-only array."""
    import warnings

    log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        log.setLevel(level)


def _ort_quantize(model, nodes: list[str], v: QuantVariant, gather: bool = False):
    """ONNX Runtime's quantizer on exactly `nodes` (MatMul, or with `gather` Gather)."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    op = "Gather" if gather else "MatMul"
    others = [n.name for n in model.graph.node if n.op_type == op and n.name not in set(nodes)]
    algo = None
    if v.algorithm == "hqq" and not gather:
        algo = mnq.HQQWeightOnlyQuantConfig(block_size=v.group_size, bits=4, op_types_to_quantize=(op,))
    quantizer = mnq.MatMulNBitsQuantizer(model, bits=4 if gather else v.bits, block_size=v.group_size,
                                         is_symmetric=v.symmetric,
                                         nodes_to_exclude=others, op_types_to_quantize=(op,),
                                         quant_axes=(("MatMul", 0), ("Gather", 1)), algo_config=algo)
    quantizer.process()
    return quantizer.model.model


def _gptq(model, src: Path, linear: list[str], v: QuantVariant, calibration: Dataset | None,
          batch_dynamic: bool) -> dict:
    """Our GPTQ of `linear`, each MatMul replaced in `model` by a MatMulNBits."""
    import onnx
    from onnx import numpy_helper

    from targets.onnx import gptq

    if calibration is None or len(calibration) == 0:
        raise DataError(f"weight-only gptq ({v.label}) calibrates on data: add 'data: {{calibration: ...}}' to the "
                        "recipe, or use algorithm: rtn or hqq")
    data = calibration.take(v.calibration_samples)
    nodes = {n.name: n for n in model.graph.node if n.name in set(linear)}
    inits = {t.name: t for t in model.graph.initializer}
    # Activations come from `src` (float, unrewritten): a Gemm's input is its MatMul's too.
    hessians, rows = gptq.hessians(src, sorted({n.input[0] for n in nodes.values()}), data, batch_dynamic)
    for name, node in nodes.items():
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        k, n = weight.shape
        codes, scales, zeros = gptq.quantize(weight, hessians[node.input[0]], v.group_size, v.symmetric)
        tensors = gptq.pack(codes, scales, zeros, v.group_size, v.symmetric)
        names = [f"{node.input[1]}_Q4", f"{node.input[1]}_scales", f"{node.input[1]}_zero_points"][:len(tensors)]
        model.graph.initializer.extend(numpy_helper.from_array(t, nm) for t, nm in zip(tensors, names))
        new = onnx.helper.make_node("MatMulNBits", [node.input[0], *names], list(node.output), name=f"{name}_Q4",
                                    domain="com.microsoft", K=k, N=n, bits=4, block_size=v.group_size)
        _replace(model.graph, node, new)
    _drop_unused_initializers(model.graph)
    _ms_domain(model)
    return {"calibration_samples": len(data), "calibration_tokens": rows,
            "gptq": {"damp": gptq.DAMP, "block": gptq.BLOCK, "padding_tokens": f"left out ({gptq.PAD_MASK} == 0)"}}


def _ms_domain(model) -> None:
    import onnx

    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))


def _replace(graph, old, new) -> None:
    nodes = list(graph.node)
    nodes[nodes.index(old)] = new
    graph.ClearField("node")
    graph.node.extend(nodes)


def _drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)


def _weight_matmuls(model) -> list:
    inits = {t.name: t for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits
            and len(inits[n.input[1]].dims) == 2 and inits[n.input[1]].data_type == 1]  # FLOAT


def _embedding_tables(model, skip: set[str], group: int) -> list[str]:
    """Gathers that look up rows of a constant float table (embeddings) whose rows are whole
    blocks, by node name."""
    inits = {t.name: t for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Gather" and n.name not in skip
            and n.input[0] in inits and len(inits[n.input[0]].dims) == 2 and inits[n.input[0]].data_type == 1
            and _axis(n) == 0 and inits[n.input[0]].dims[1] % group == 0]


def _int8_tables(model, tables: list[str], group: int, symmetric: bool) -> None:
    """Each table of `tables` as GatherBlockQuantized with 8-bit codes (uint8, a zero point
    a block: 128 when symmetric) in blocks of `group` along the embedding axis. ONNX
    Runtime's quantizer writes 4-bit tables only; its CPU kernel reads 8 bits too."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for node in [n for n in model.graph.node if n.name in set(tables)]:
        table = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        rows, width = table.shape
        blocks = table.reshape(rows, width // group, group)
        if symmetric:
            scale = np.abs(blocks).max(-1) / 127.0
            zero = np.full(scale.shape, 128.0)
        else:
            lo, hi = np.minimum(blocks.min(-1), 0), np.maximum(blocks.max(-1), 0)
            scale = (hi - lo) / 255.0
            zero = np.clip(np.round(-lo / np.where(scale == 0, 1, scale)), 0, 255)
        scale = np.where(scale == 0, 1, scale).astype(np.float32)
        codes = np.clip(np.round(blocks / scale[..., None]) + zero[..., None], 0, 255).astype(np.uint8)
        name = node.input[0]
        model.graph.initializer.extend([numpy_helper.from_array(codes.reshape(rows, width), f"{name}_Q8"),
                                        numpy_helper.from_array(scale, f"{name}_scales"),
                                        numpy_helper.from_array(zero.astype(np.uint8), f"{name}_zero_points")])
        new = onnx.helper.make_node("GatherBlockQuantized", [f"{name}_Q8", node.input[1], f"{name}_scales",
                                                              f"{name}_zero_points"], list(node.output),
                                    name=f"{node.name}_Q8", domain="com.microsoft", gather_axis=0, quantize_axis=1,
                                    block_size=group, bits=8)
        _replace(model.graph, node, new)
    _drop_unused_initializers(model.graph)
    _ms_domain(model)


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def _gemms_as_matmuls(model) -> int:
    """Gemm(A, B, C) with a constant B and plain alpha/beta (nn.Linear on 2-D inputs) as
    MatMul(A, B as [K, N]) + Add(C): MatMulNBits replaces MatMuls only. The MatMul keeps
    the Gemm's name, so that 'exclude' still finds it. Returns how many were rewritten."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    count, nodes = 0, []
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits or len(inits[node.input[1]].dims) != 2:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        name = f"{node.input[1]}_kn"
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.ascontiguousarray(weight.T if attrs.get("transB", 0) else weight),
                                                  name)
            model.graph.initializer.append(inits[name])
        has_bias = len(node.input) > 2 and node.input[2]
        out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(onnx.helper.make_node("MatMul", [node.input[0], name], [out], name=node.name))
        if has_bias:
            nodes.append(onnx.helper.make_node("Add", [out, node.input[2]], list(node.output),
                                               name=f"{node.name}_bias"))
        count += 1
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model.graph)
    return count


def _at_opset(model, opset: int):
    """The model converted to `opset` (ONNX's version converter) when it is older."""
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    return model if current >= opset else version_converter.convert_version(model, opset)


def _weight_bytes(model, linear: list[str], tables: list[str]) -> dict[str, int]:
    """Float bytes of the weights about to be quantized: the linear layers', the tables'."""
    import math

    inits = {t.name: t for t in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}

    def size(names: list[str], arg: int) -> int:
        return sum(4 * math.prod(inits[nodes[n].input[arg]].dims) for n in names)

    return {"linear": size(linear, 1), "embeddings": size(tables, 0)}


def _notes(model, v: QuantVariant, linear: list[str], tables: list[str], fp32: dict[str, int], skipped: int,
           rewritten: int) -> dict:
    inits = {t.name: t for t in model.graph.initializer}

    def stored(op: str, args: slice) -> int:
        return sum(_nbytes(inits[i]) for n in model.graph.node if n.op_type == op for i in n.input[args] if i in inits)

    linear_bytes = stored("MatMulNBits", slice(1, 4))
    table_bytes = stored("GatherBlockQuantized", slice(0, 1)) + stored("GatherBlockQuantized", slice(2, 4))
    quantized = sum(n.op_type == "MatMulNBits" for n in model.graph.node)
    if tables:
        embeddings = (f"{len(tables)} tables as GatherBlockQuantized {v.embeddings} "
                      f"{'symmetric' if v.symmetric else 'asymmetric'}, blocks of {v.group_size} along the "
                      "embedding axis (round to nearest)")
    else:
        embeddings = "float" + (" (embeddings: float)" if v.embeddings == "float" else " (no embedding table)")
    return {"engine": _engine(v), "format": "MatMulNBits (com.microsoft)",
            "weights": f"int{v.bits} {'symmetric' if v.symmetric else 'asymmetric'}, blocks of {v.group_size} along K",
            "compute": ("int8 (accuracy_level 4: activations quantized per block)" if v.compute == "int8"
                        else "float (weights dequantized block by block)"),
            "activations": "float", "quantized_matmuls": quantized, "float_nodes": skipped,
            "gemms_as_matmuls": rewritten, "embeddings": embeddings,
            "linear_weight_bytes": linear_bytes, "linear_weight_fp32_bytes": fp32["linear"],
            "linear_weight_ratio": round(linear_bytes / fp32["linear"], 4) if fp32["linear"] else None,
            "embedding_bytes": table_bytes if tables else None,
            "embedding_fp32_bytes": fp32["embeddings"] if tables else None,
            "excluded": list(v.exclude), "excluded_ops": list(v.exclude_ops)}


def _nbytes(t) -> int:
    import math

    from onnx import helper

    n = math.prod(t.dims)
    if t.data_type in (22, 21):  # INT4, UINT4: two a byte
        return (n + 1) // 2
    return n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def _set_int_attr(node, name: str, value: int) -> None:
    import onnx

    for a in node.attribute:
        if a.name == name:
            a.i = value
            return
    node.attribute.append(onnx.helper.make_attribute(name, value))
