"""`model: {onnx: model.onnx}`: the ONNX target compresses a file another exporter made
(torch's legacy TorchScript exporter, onnx.helper), validated against the file's own
fp32 outputs on ONNX Runtime, on the real digits."""

import json
import warnings

import numpy as np
import pytest

from compressor.config.recipe import load_recipe
from compressor.data import digits_arrays
from compressor.flows.run import run

RECIPE = """
version: 1
name: {name}
model:
  onnx: {file}
{extra}data:
  calibration: {{source: train.npz, limit: 128}}
  evaluation: {{source: test.npz}}
steps:
  - quantize:
      variants: {variants}
targets: {{onnx: {{}}}}
benchmark: {{threads: 1, batch_sizes: [1], warmup: 1, warmup_s: 0, runs: 5, memory: false}}
"""


def legacy_export(module, path, dynamic=True, **kw):
    """torch's TorchScript-based exporter: node names like '/features/features.0/Conv', no module scopes."""
    import torch

    x = torch.zeros(1, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["pixels"], output_names=["logits"],
                          opset_version=17, dynamic_axes={"pixels": {0: "N"}, "logits": {0: "N"}} if dynamic else None,
                          **kw)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """The shipped (trained) digits CNN as a legacy-exported .onnx, with the digits as .npz."""
    from compressor.zoo.digits import WEIGHTS_PATH, digits_cnn
    from safetensors.torch import load_file

    d = tmp_path_factory.mktemp("onnx-source")
    for split in ("train", "test"):
        x, y = digits_arrays(split)
        np.savez(d / f"{split}.npz", pixels=x, labels=y)
    module = digits_cnn()
    module.load_state_dict(load_file(str(WEIGHTS_PATH)))
    legacy_export(module.eval(), d / "digits.onnx")
    return d


def helper_mlp(path, rng, external=None, opset=17, act="Relu"):
    """An MLP built with onnx.helper (no exporter at all, unnamed nodes) fitted by least squares
    on the digits: MatMul -> Add -> Relu -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x, y = digits_arrays("train")
    x = x.reshape(len(x), -1)
    w1 = rng.standard_normal((64, 48)).astype(np.float32) / 8
    b1 = np.zeros(48, np.float32)
    h = np.maximum(x @ w1 + b1, 0) if act == "Relu" else np.tanh(x @ w1 + b1)
    target = np.eye(10, dtype=np.float32)[y]
    w2 = np.linalg.lstsq(np.c_[h, np.ones(len(h))], target, rcond=None)[0].astype(np.float32)
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w1"], ["h0"]),
             helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node(act, ["h1"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(np.ascontiguousarray(w2[:-1]), "w2"), numpy_helper.from_array(w2[-1], "b2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path), save_as_external_data=external is not None, location=external,
              size_threshold=0, all_tensors_to_one_file=True)
    return model


def run_recipe(folder, tmp_path, file="digits.onnx", variants="[{mode: static}]", extra="", name="src"):
    path = folder / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, file=file, variants=variants, extra=extra))
    return run(load_recipe(path), tmp_path / "run", show_progress=False)


def rows_of(report):
    return {r["label"]: r for r in report["artifacts"]}


def test_legacy_export_in_four_precisions(digits_dir, tmp_path):
    report = run_recipe(digits_dir, tmp_path, variants="[{mode: static}, {mode: dynamic}, {mode: fp16}, "
                        "{mode: weight_only, group_size: 32}]")
    rows = rows_of(report)
    assert sorted(rows) == ["fp16", "fp32", "int8-dynamic", "int8-static", "int4-weight-only"] or \
        len(rows) == 5, sorted(rows)
    assert all(r["status"] == "ok" for r in rows.values()), {k: r.get("notes") for k, r in rows.items()}
    ref = report["reference"]
    assert ref["framework"] == "onnx" and ref["accuracy"] > 0.9 and report["model"]["parameters"] > 1000
    fp32 = rows["fp32"]
    assert fp32["fidelity"]["max_abs"] < 1e-5  # the file itself: exact
    assert fp32["export"]["output_names"] == ["logits"] and fp32["export"]["dynamic_batch"] is True
    assert "quant_pre_process" in fp32["export"]["preprocess"] and "pytorch" in fp32["export"]["producer"]
    assert rows["fp16"]["fidelity"]["cosine_mean"] > 0.999
    static = rows["int8-static"]
    assert static["fidelity"]["cosine_mean"] > 0.99
    assert abs(static["metrics"]["accuracy"] - ref["accuracy"]) <= 0.02
    assert static["size_ratio_vs_fp32"] < 0.4
    # Dynamic int8 lowers the linear head only (ConvInteger is slow on ORT's CPU): smaller still.
    dyn = rows["int8-dynamic"]
    assert dyn["size_ratio_vs_fp32"] < 1.0 and dyn["fidelity"]["cosine_mean"] > 0.99
    assert dyn["export"]["op_types"].get("DynamicQuantizeLinear", 0) >= 1, dyn["export"]["op_types"]
    assert static["export"]["op_types"].get("QuantizeLinear", 0) > 0
    assert "Gemm" not in static["export"]["float_op_types"]
    wo = next(r for k, r in rows.items() if "weight" in k)
    assert wo["fidelity"]["cosine_mean"] > 0.99 and wo["export"]["op_types"].get("MatMulNBits") == 1


def test_exclude_by_node_name_and_op_type_keeps_them_float(digits_dir, tmp_path):
    import onnx

    convs = [n.name for n in onnx.load(str(digits_dir / "digits.onnx")).graph.node if n.op_type == "Conv"]
    report = run_recipe(digits_dir, tmp_path, variants=f"[{{mode: static, name: by-node, exclude: [{convs[0]}]}}, "
                        "{mode: static, name: by-op, exclude_ops: [Gemm]}, {mode: static}]")
    rows = rows_of(report)
    assert all(r["status"] == "ok" for r in rows.values())
    full, by_node, by_op = (rows[k]["export"]["op_types"] for k in ("int8-static", "by-node", "by-op"))
    # One Q/DQ pair fewer around the float conv; none around the float Gemm.
    assert by_node["DequantizeLinear"] < full["DequantizeLinear"]
    assert by_op["DequantizeLinear"] < full["DequantizeLinear"]
    assert rows["by-node"]["export"]["float_nodes"] >= 1
    assert rows["by-node"]["metrics"]["size_bytes"] > rows["int8-static"]["metrics"]["size_bytes"]


@pytest.mark.parametrize("act", ["Relu", "Tanh"])
def test_helper_built_graph_with_unnamed_nodes_and_a_symbolic_batch(tmp_path, act):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        x, y = digits_arrays(split)
        np.savez(tmp_path / f"{split}.npz", pixels=x, labels=y)
    helper_mlp(tmp_path / "mlp.onnx", rng, act=act)
    report = run_recipe(tmp_path, tmp_path, file="mlp.onnx", extra="  outputs: [scores]\n",
                        variants="[{mode: static, exclude: [Gemm_4]}, {mode: dynamic}]")
    rows = rows_of(report)
    assert all(r["status"] == "ok" for r in rows.values()), {k: r.get("notes") for k, r in rows.items()}
    assert report["reference"]["accuracy"] > 0.85
    assert rows["fp32"]["export"]["output_names"] == ["scores"]
    assert report["model"]["inputs"] == [{"name": "pixels", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert rows["int8-static"]["fidelity"]["cosine_mean"] > 0.99
    assert rows["int8-static"]["export"]["float_nodes"] >= 1
    assert rows["int8-dynamic"]["size_ratio_vs_fp32"] < 0.5
    # ONNX Runtime's quantizer has no int8 Tanh: it stays float, and the artifact says so.
    assert ("Tanh" in rows["int8-static"]["export"]["float_op_types"]) == (act == "Tanh")


def test_external_data_inside_the_folder_is_carried_into_the_artifacts(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        x, y = digits_arrays(split)
        np.savez(tmp_path / f"{split}.npz", pixels=x, labels=y)
    (tmp_path / "weights").mkdir()
    helper_mlp(tmp_path / "mlp.onnx", rng, external="weights/mlp.bin")
    report = run_recipe(tmp_path, tmp_path, file="mlp.onnx", variants="[{mode: static}, {mode: fp16}]")
    rows = rows_of(report)
    assert all(r["status"] == "ok" for r in rows.values()), {k: r.get("notes") for k, r in rows.items()}
    art = tmp_path / "run" / "artifacts"
    assert (art / "src.fp32.onnx.data").is_file() and rows["fp32"]["export"]["external_data"] is True
    assert rows["fp32"]["fidelity"]["max_abs"] < 1e-5
    assert rows["int8-static"]["fidelity"]["cosine_mean"] > 0.99
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    listed = json.dumps(manifest)
    assert "src.fp32.onnx.data" in listed


def test_fallback_keeps_the_graphs_own_nodes_float(digits_dir, tmp_path):
    import onnx

    report = run_recipe(digits_dir, tmp_path, variants="[{mode: static, calibration: minmax, "
                        "fallback: {min_cosine: 0.99999, max_seconds: 60}}]")
    row = rows_of(report)["int8-static"]
    section = row["fallback"]
    assert row["status"] == "ok" and row["fidelity"]["cosine_mean"] >= 0.99999
    assert section["sensitivity_mode"].startswith("real onnx lowering")
    # The candidates are the file's own weight-bearing nodes, ranked on ONNX Runtime.
    kinds = {n.name: n.op_type for n in onnx.load(str(digits_dir / "digits.onnx")).graph.node}
    kept = [f["name"] for f in section["float_layers"]]
    assert kept and all(kinds[n] in ("Conv", "Gemm") for n in kept) and len(kept) < 5
    assert section["attempts"][0]["cosine"] < 0.99999  # the plain lowering missed the budget
    bars = next(iter(report["per_layer"].values()))
    assert sorted(bars) == sorted(n for n, op in kinds.items() if op in ("Conv", "Gemm"))


def test_fixed_batch_file_and_dynamic_batch_turned_off(digits_dir, tmp_path):
    from compressor.zoo.digits import digits_cnn

    import torch

    torch.manual_seed(0)
    legacy_export(digits_cnn().eval(), digits_dir / "fixed.onnx", dynamic=False)
    report = run_recipe(digits_dir, tmp_path, file="fixed.onnx", name="fixed")
    rows = rows_of(report)
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["fp32"]["export"]["dynamic_batch"] is False and rows["fp32"]["fidelity"]["max_abs"] < 1e-5
    assert rows["int8-static"]["fidelity"]["cosine_mean"] > 0.98
    # The recipe fixes the batch axis of a dynamic file.
    path = digits_dir / "fixedaxis.yaml"
    path.write_text(RECIPE.format(name="fixedaxis", file="digits.onnx", variants="[{mode: fp16}]", extra="")
                    .replace("targets: {onnx: {}}", "targets: {onnx: {dynamic_batch: false}}"))
    report = run(load_recipe(path), tmp_path / "fixedaxis", show_progress=False)
    import onnx

    fp32 = onnx.load(str(tmp_path / "fixedaxis" / "artifacts" / "fixedaxis.fp32.onnx"), load_external_data=False)
    assert fp32.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert all(r["status"] == "ok" for r in report["artifacts"])


def test_dynamic_fallback_walks_the_graph_in_order(digits_dir, tmp_path):
    """No per-node lowering of dynamic int8 on the runtime and no PyTorch model to simulate:
    the candidates are searched in graph order, and the budget is still met."""
    report = run_recipe(digits_dir, tmp_path, name="dynfb", variants="[{mode: dynamic, "
                        "fallback: {min_cosine: 0.999999, max_seconds: 60}}]")
    row = rows_of(report)["int8-dynamic"]
    assert row["status"] == "ok" and row["fidelity"]["cosine_mean"] >= 0.999999
    assert row["fallback"]["sensitivity_mode"].startswith("model order")
    # Dynamic int8 lowers the Gemm only: that is the one candidate, not the convolutions.
    assert [f["name"] for f in row["fallback"]["float_layers"]] == ["/classifier/Gemm"]
