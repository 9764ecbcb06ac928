"""`compressor bench` on ONNX files that someone else made (here: built with onnx.helper)."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compressor.flows.cli import main

FAST = ["--runs", "5", "--warmup", "1", "--warmup-s", "0", "--no-isolate"]


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def mixed_dtype_model(tmp_path_factory):
    """y = Cast(a:int32 -> float) + b:float, plus Gather(embedding, ids:int64); batch is dynamic."""
    emb = helper.make_tensor("emb", TensorProto.FLOAT, [100, 4], np.arange(400, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["af", "b"], ["sum"]),
         helper.make_node("Gather", ["emb", "ids"], ["vec"])],
        "mixed",
        [helper.make_tensor_value_info("a", TensorProto.INT32, ["batch", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("vec", TensorProto.FLOAT, ["batch", 5, 4])],
        initializer=[emb])
    return save(graph, tmp_path_factory.mktemp("bench") / "mixed.onnx")


@pytest.fixture(scope="module")
def seq_model(tmp_path_factory):
    """Relu over x:[batch, seq, 8] with a symbolic sequence length."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])])
    return save(graph, tmp_path_factory.mktemp("bench") / "seq.onnx")


def test_bench_runs_int64_int32_and_float_inputs_at_two_batch_sizes(mixed_dtype_model, tmp_path):
    out = tmp_path / "m.json"
    assert main(["bench", str(mixed_dtype_model), "--batch", "1,8", "--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert {i["name"]: i["dtype"] for i in result["inputs"]} == {"a": "int32", "b": "float32", "ids": "int64"}
    assert [lat["batch"] for lat in result["latency"]] == [1, 8]
    for lat in result["latency"]:
        assert lat["runs"] == 5 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert 0 < result["gzip_bytes"] < result["size_bytes"] == mixed_dtype_model.stat().st_size


def test_generated_segment_ids_fit_a_two_row_table_as_bert_has(tmp_path):
    # A BERT-style export without data: word ids into a 100-row table, token_type_ids
    # into a 2-row one (ORT refuses an index past a Gather table).
    words = helper.make_tensor("words", TensorProto.FLOAT, [100, 4], np.ones(400, np.float32).tolist())
    types = helper.make_tensor("types", TensorProto.FLOAT, [2, 4], np.ones(8, np.float32).tolist())
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", 16])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["words", "input_ids"], ["w"]),
         helper.make_node("Gather", ["types", "token_type_ids"], ["t"]),
         helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
         helper.make_node("Add", ["w", "t"], ["wt"]), helper.make_node("Mul", ["wt", "m3"], ["hidden"])],
        "bert_like", ids, [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 16, 4])],
        initializer=[words, types, helper.make_tensor("axis", TensorProto.INT64, [1], [2])])
    path = save(graph, tmp_path / "bert_like.onnx")
    out = tmp_path / "b.json"
    assert main(["bench", str(path), "--batch", "1,4", "--json", str(out), *FAST]) == 0
    assert [lat["batch"] for lat in json.loads(out.read_text())["results"][0]["latency"]] == [1, 4]


def test_bench_json_records_schema_config_machine_and_libraries(mixed_dtype_model, tmp_path):
    out = tmp_path / "m.json"
    assert main(["bench", str(mixed_dtype_model), "--json", str(out), "--threads", "1", *FAST]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "compressor.bench" and doc["schema_version"] == 1
    assert doc["config"]["threads"] == 1 and doc["config"]["runs"] == 5
    assert "onnxruntime" in doc["libraries"] and doc["machine"]["cpu"]["logical_cores"] >= 1


def test_dynamic_non_batch_dim_without_shape_asks_for_shape(seq_model, capsys):
    assert main(["bench", str(seq_model), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'x'" in err and "dynamic dimension 'seq'" in err and "--shape x=" in err


def test_shape_option_fixes_the_dynamic_dim(seq_model, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["bench", str(seq_model), "--shape", "x=2x16x8", "--batch", "2", "--json", str(out), *FAST]) == 0
    latency = json.loads(out.read_text())["results"][0]["latency"]
    assert [l["batch"] for l in latency] == [2] and latency[0]["p50_ms"] > 0
    # without --batch the shape's batch is the one timed; another --batch is refused by name
    assert main(["bench", str(seq_model), "--shape", "x=2x16x8", "--json", str(out), *FAST]) == 0
    assert [l["batch"] for l in json.loads(out.read_text())["results"][0]["latency"]] == [2]
    assert main(["bench", str(seq_model), "--shape", "x=2x16x8", "--batch", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "fixes the batch axis at 2" in err and "--batch 2" in err and "Traceback" not in err


def test_shape_that_does_not_fit_the_model_is_one_line_error(seq_model, capsys):
    assert main(["bench", str(seq_model), "--shape", "x=2x16x9", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compressor: error: ") and "Traceback" not in err
    assert "--shape x=2x16x9 does not fit the input, whose shape is ['batch', 'seq', 8]" in err


def test_shape_for_an_unknown_input_names_the_real_inputs(seq_model, capsys):
    assert main(["bench", str(seq_model), "--shape", "tokens=2x16x8", *FAST]) == 2
    assert "--shape names 'tokens', but the model's inputs are ['x']" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", "truncated", "random"])
def test_bad_onnx_files_are_refused_before_benchmarking(mixed_dtype_model, tmp_path, capsys, content):
    data = {"truncated": mixed_dtype_model.read_bytes()[:300],
            "random": np.random.default_rng(1).bytes(4096)}.get(content, content)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data)
    assert main(["bench", str(mixed_dtype_model), str(bad), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"compressor: error: {bad}: ")
    assert ("empty (0 bytes)" if content == b"" else "not an ONNX model") in err


def test_unknown_file_type_lists_what_bench_loads(tmp_path, capsys):
    (tmp_path / "m.pb").write_bytes(b"x")
    assert main(["bench", str(tmp_path / "m.pb"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "m.pb: unknown artifact type; the benchmark loads " in err
    assert ".onnx" in err.split("loads", 1)[1]


def test_bench_measures_accuracy_with_eval_data(onnx_artifacts, digits_test, tmp_path):
    x, y = digits_test
    np.savez(tmp_path / "eval.npz", pixels=x, labels=y)
    out = tmp_path / "acc.json"
    assert main(["bench", str(onnx_artifacts["fp32"].path), "--eval-data", str(tmp_path / "eval.npz"),
                 "--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["eval_samples"] == len(y) and result["accuracy"] >= 0.98
