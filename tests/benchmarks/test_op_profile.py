"""Per-operator profiles from ONNX Runtime's own profiler on the digits CNN's artifacts,
and which rows a run profiles."""

from __future__ import annotations

from benchmarks.op_profile import chosen, onnx_profile, profile
from html_reports import sectioned


def test_onnx_profile_names_the_operators_that_take_the_time(onnx_artifacts):
    fp32 = onnx_profile(onnx_artifacts["fp32"].path, batch=1, threads=1)
    ops = {o["op"]: o for o in fp32["by_op_type"]}
    assert "Conv" in ops and ops["Conv"]["count"] >= 2
    assert fp32["runs"] == 50 and fp32["total_ms"] > 0
    assert abs(sum(o["share"] for o in fp32["by_op_type"]) - 1.0) < 1e-9
    assert fp32["by_op_type"][0]["ms"] >= fp32["by_op_type"][-1]["ms"]  # the heaviest first
    static = next(a for label, a in onnx_artifacts.items() if "static" in label)
    int8 = {o["op"] for o in onnx_profile(static.path, batch=4, threads=1)["by_op_type"]}
    assert int8 & {"QLinearConv", "ConvInteger", "QuantizeLinear", "DequantizeLinear"}
    assert "Conv" not in int8 or "QuantizeLinear" in int8


def test_a_runtime_without_a_profiler_says_so(tmp_path):
    got = profile(tmp_path / "m.tflite", 1, 1)
    assert got == {"error": "LiteRT's Python interpreter offers no per-operator profiler"}


def test_the_slowest_and_the_recommended_are_profiled():
    r = sectioned()
    for row in r["artifacts"]:
        row["file"] = f"artifacts/{row['label']}.onnx"
    assert chosen(r) == {"tflite/fp32": ["slowest"], "onnx/int8-static": ["recommended"]}


def test_openvino_profile_from_its_own_counters(onnx_artifacts, tmp_path):
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_artifacts["fp32"].path)), str(tmp_path / "m.xml"))
    got = profile(tmp_path / "m.xml", batch=2, threads=1)
    assert got["runtime"].startswith("OpenVINO") and got["runs"] == 50
    assert "Convolution" in {o["op"] for o in got["by_op_type"]}
    assert got["top_nodes"] and got["total_ms"] >= got["top_nodes"][0]["ms"] > 0
