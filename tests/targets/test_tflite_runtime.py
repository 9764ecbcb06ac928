"""`compressor bench` on .tflite files the project did not make (built here with
TensorFlow), multi-signature models, and files that must be refused with one line."""

import json

import numpy as np
import pytest

from compressor.flows.cli import main
from compressor.errors import ArtifactError, RecipeError
from targets.base import Device
from targets.tflite import flatbuf
from targets.tflite.keras import tensorflow
from targets.tflite.runtime import LiteSession, check_tflite_file

FAST = ["--runs", "5", "--warmup", "1", "--warmup-s", "0", "--no-isolate"]


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Two TF-converted models: `two_inputs` (a:[1,3] float, ids:[1,4] int32 -> two outputs)
    and `two_signatures` (add_one and times_two, on x:[1,4])."""
    tf = tensorflow()
    out = tmp_path_factory.mktemp("foreign")

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32, name="a"),
                                      tf.TensorSpec([1, 4], tf.int32, name="ids")])
        def __call__(self, a, ids):
            return {"total": tf.reduce_sum(a, axis=1), "scaled": tf.cast(ids, tf.float32) * 2.0}

    class TwoSignatures(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def add_one(self, x):
            return {"y": x + 1.0}

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def times_two(self, x):
            return {"y": x * 2.0}

    m = TwoInputs()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    (out / "two_inputs.tflite").write_bytes(conv.convert())
    s = TwoSignatures()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [s.add_one.get_concrete_function(), s.times_two.get_concrete_function()], s)
    (out / "two_signatures.tflite").write_bytes(conv.convert())
    return out


def test_bench_runs_a_foreign_multi_input_model_with_inputs_from_its_details(foreign, tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", str(foreign / "two_inputs.tflite"), "--json", str(out), *FAST]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert {i["name"]: (i["shape"], i["dtype"]) for i in result["inputs"]} == {
        "a": ([1, 3], "float32"), "ids": ([1, 4], "int32")}
    assert result["runtime"].startswith("ai-edge-litert") and result["latency"][0]["runs"] == 5


def test_foreign_model_outputs_are_right(foreign):
    s = LiteSession(foreign / "two_inputs.tflite", Device(), 1)
    outs = dict(zip(s.output_names, s.run({"a": np.array([[1, 2, 3]], np.float32),
                                            "ids": np.array([[1, 2, 3, 4]], np.int32)})))
    np.testing.assert_allclose(outs["total"], [6.0])
    np.testing.assert_allclose(outs["scaled"], [[2, 4, 6, 8]])


def test_multi_signature_model_runs_the_first_signature_unless_told(foreign):
    path = foreign / "two_signatures.tflite"
    x = {"x": np.ones((1, 4), np.float32)}
    first = LiteSession(path, Device(), 1)
    assert first.signature == "add_one" and first.run(x)[0].tolist() == [[2.0] * 4]
    other = LiteSession(path, Device(), 1, signature="times_two")
    assert other.run(x)[0].tolist() == [[2.0] * 4] and other.run({"x": x["x"] * 3})[0][0, 0] == 6.0
    with pytest.raises(RecipeError, match="no signature 'nope'; it has"):
        LiteSession(path, Device(), 1, signature="nope")
    assert main(["bench", str(path), *FAST]) == 0


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "random-with-identifier"])
def test_bench_refuses_a_damaged_tflite_with_one_line_and_exit_2(foreign, tmp_path, capsys, damage):
    good = (foreign / "two_inputs.tflite").read_bytes()
    rng = np.random.default_rng(0)
    data = {"empty": b"", "truncated": good[: len(good) // 2], "random": rng.bytes(4096),
            "random-with-identifier": rng.bytes(4) + b"TFL3" + rng.bytes(4088)}[damage]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data)
    assert main(["bench", str(bad), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert ("empty (0 bytes)" if damage == "empty" else "TFL") in err


def test_a_custom_op_is_named_at_load_time(foreign, tmp_path, capsys):
    from ai_edge_litert import schema_py_generated as schema

    m = flatbuf.read(foreign / "two_signatures.tflite")
    for oc in m.operatorCodes:  # make every operator a custom op the runtime does not have
        oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        oc.customCode = b"AcmeFusedThing"
    path = tmp_path / "custom.tflite"
    flatbuf.write(m, path)
    with pytest.raises(ArtifactError, match="custom operator 'AcmeFusedThing'"):
        check_tflite_file(path)
    assert main(["bench", str(path), *FAST]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_measure_in_a_worker_process_reports_xnnpack(foreign):
    from benchmarks.harness import BenchConfig, measure

    m = measure(foreign / "two_inputs.tflite", BenchConfig(runs=5, warmup=1, warmup_s=0, isolate=True))
    assert m.runtime.endswith("(XNNPACK)") and m.peak_rss_mb > 0
