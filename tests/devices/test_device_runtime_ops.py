"""`compressor bench --device` where the device's runtime cannot load the artifact: a real
onnxruntime 1.16.3 (the 'old' device env: ai.onnx up to opset 19, IR version up to 9, no
DeformConv kernel) refuses tiny ONNX models that this side's onnxruntime runs and
onnx.checker accepts, and a real tflite-runtime 2.14.0 (FULLY_CONNECTED up to version 10)
refuses a TFLite model that this side's ai-edge-litert runs. Each row fails with one line
naming the device, the runtime's version there and the operator it lacks (or the IR
version it cannot read), and the run exits 2. A device without onnxruntime names it and
the pip command instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sshd import SshdUnavailable, write_devices_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli  # noqa: E402

OLD_ORT = "1.16.3"
OLD_LITE = "2.14.0"


@pytest.fixture(scope="module")
def python_old(sshd) -> Path:
    try:
        return sshd.python_old
    except SshdUnavailable as e:
        pytest.skip(str(e))


def _save(path: Path, node, inputs, output, opset: int, ir: int, inits=()) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph([node], path.stem, inputs, [output], initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir,
                              producer_name="compressor-test")
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def too_new(tmp_path_factory) -> dict[str, Path]:
    """Three models onnxruntime 1.16.3 cannot load, each for another reason:
    DeformConv (opset 19, which it knows but has no kernel for), Gelu (new in opset 20,
    IR 9: an opset it does not support) and Gelu at IR version 10 (what torch.onnx writes)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    out = tmp_path_factory.mktemp("too-new")

    def t(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    files = {
        "deform": _save(out / "deform.onnx", helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], name="dc"),
                        [t("x", [1, 1, 4, 4])], t("y", [1, 1, 3, 3]), 19, 9,
                        [numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), "w"),
                         numpy_helper.from_array(np.zeros((1, 8, 3, 3), np.float32), "offset")]),
        "gelu": _save(out / "gelu.onnx", helper.make_node("Gelu", ["x"], ["y"], name="act"),
                      [t("x", [1, 8])], t("y", [1, 8]), 20, 9),
        "ir10": _save(out / "gelu-ir10.onnx", helper.make_node("Gelu", ["x"], ["y"], name="act"),
                      [t("x", [1, 8])], t("y", [1, 8]), 20, 10),
    }
    for path in files.values():  # this side's runtime runs every one of them
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
        assert np.isfinite(sess.run(None, feeds)[0]).all()
    return files


def _bench(capsys, tmp_path: Path, sshd, name: str, python: Path, files: list[Path]) -> tuple[int, str, dict]:
    # The device's own temp folder, as on a board: onnxruntime's message starts with the
    # artifact's path there, and the runner keeps 400 characters of it (a long workdir
    # would cut the words that matter).
    devices = write_devices_yaml(tmp_path / "devices.yaml", sshd.ensure_running(), name=name, python=python)
    out = tmp_path / "bench.json"
    code, stdout, err = cli(capsys, "bench", *files, "--device", name, "--devices", devices,
                            "--runs", "5", "--warmup", "1", "--json", out)
    rows = {Path(r["file"]).name: r for r in json.loads(out.read_text())["results"]}
    return code, stdout + err, rows


def test_old_runtime_names_the_operator_it_lacks(capsys, tmp_path, sshd, python_old, too_new):
    code, text, rows = _bench(capsys, tmp_path, sshd, "old", python_old, list(too_new.values()))
    assert code == 2, text
    assert set(rows) == {p.name for p in too_new.values()}
    for row in rows.values():
        assert row["device"] == "old" and row["metrics"] is None
        error = row["error"]
        assert "\n" not in error and len(error) < 300, error
        assert error.startswith(f"old: onnxruntime {OLD_ORT} on the device cannot run "), error
        assert "upgrade onnxruntime there" in error and "onnxruntime_src" not in error, error
        assert error in text  # the row's line is printed as is
    assert "it lacks operator DeformConv (opset 19);" in rows["deform.onnx"]["error"]
    assert "it lacks operator Gelu (opset 20): the artifact is ai.onnx opset 20" in rows["gelu.onnx"]["error"]
    assert "export with opset 19" in rows["gelu.onnx"]["error"]
    assert ("it reads ONNX IR version up to 9 only, the artifact is IR version 10;"
            in rows["gelu-ir10.onnx"]["error"])
    assert "Traceback" not in text


def test_device_without_onnxruntime_names_the_pip_command(capsys, tmp_path, sshd, too_new):
    code, text, rows = _bench(capsys, tmp_path, sshd, "bare", sshd.python_bare, [too_new["gelu"]])
    assert code == 2, text
    error = rows["gelu.onnx"]["error"]
    assert rows["gelu.onnx"]["metrics"] is None and "\n" not in error
    assert f"onnxruntime is missing for {sshd.python_bare} on the device" in error
    assert f"install it there: {sshd.python_bare} -m pip install onnxruntime" in error


def test_the_old_runtimes_own_words_whole_and_cut(python_old, too_new):
    """What onnxruntime 1.16.3 itself says (run here, not over ssh), whole and cut where
    the runner cuts a child's last words (400 characters), gives the same kind of line."""
    from benchmarks.devices.failures import load_failure as _load_failure
    from benchmarks.devices.remote import Job

    probe = ("import sys, onnxruntime as ort\nort.set_default_logger_severity(3)\n"
             "try:\n    ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
             "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e).strip())\n")
    info = {"runtimes": {"onnxruntime": OLD_ORT, "numpy": "1.26.4"}}
    said = {}
    for key, path in too_new.items():
        got = subprocess.run([str(python_old), "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
        said[key] = got.stdout.strip()
        job = Job(path.name, path, "onnx", [path])
        for words in (said[key], said[key][:400]):
            line = _load_failure("old", job, f"the runner on the device exited with code 1; its last words: {words}",
                                 info)
            assert line.startswith(f"old: onnxruntime {OLD_ORT} on the device cannot run {path.name}: "), line
            assert "onnxruntime_src" not in line, line
    assert "NOT_IMPLEMENTED : Could not find an implementation for DeformConv(19) node with name 'dc'" in said["deform"]
    assert "Opset 20 is under development" in said["gelu"]
    assert "Current official support for domain ai.onnx is till opset 19." in said["gelu"]
    assert "Unsupported model IR version: 10, max supported IR version: 9" in said["ir10"]
    whole = _load_failure("old", Job("gelu.onnx", too_new["gelu"], "onnx", [too_new["gelu"]]), said["gelu"], info)
    assert whole.endswith("it lacks operator Gelu (opset 20): the artifact is ai.onnx opset 20, the device's "
                          "runtime stops at opset 19; upgrade onnxruntime there or export with opset 19"), whole


def _fully_connected(path: Path, version: int) -> Path:
    """A TFLite model of one FULLY_CONNECTED (float, 4 -> 2) whose operator code says
    `version`: what a newer converter stamps on an op the older runtime has no kernel for."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    def tensor(name, shape, buffer):
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), shape, fb.TensorType.FLOAT32, buffer
        return t

    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT()
    graph = fb.SubGraphT()
    graph.tensors = [tensor("x", [1, 4], 0), tensor("w", [2, 4], 1), tensor("y", [1, 2], 0)]
    graph.inputs, graph.outputs, graph.operators, graph.name = [0], [2], [op], b"main"
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.FULLY_CONNECTED
    code.version = version
    weights = fb.BufferT()
    weights.data = list((np.arange(8, dtype=np.float32).reshape(2, 4) / 8).tobytes())
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [fb.BufferT(), weights]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def test_old_tflite_runtime_names_the_operator_version_it_lacks(capsys, tmp_path, sshd, python_old):
    from ai_edge_litert.interpreter import Interpreter

    new = _fully_connected(tmp_path / "fc-v11.tflite", 11)
    old = _fully_connected(tmp_path / "fc-v1.tflite", 1)
    for path in (new, old):  # this side's runtime runs both
        lite = Interpreter(model_path=str(path))
        lite.allocate_tensors()
        lite.set_tensor(lite.get_input_details()[0]["index"], np.ones((1, 4), np.float32))
        lite.invoke()
        assert lite.get_tensor(lite.get_output_details()[0]["index"]).shape == (1, 2)
    code, text, rows = _bench(capsys, tmp_path, sshd, "old", python_old, [new, old])
    assert code == 2, text
    error = rows["fc-v11.tflite"]["error"]
    assert rows["fc-v11.tflite"]["metrics"] is None and "\n" not in error and error in text
    assert error == (f"old: tflite-runtime {OLD_LITE} on the device cannot run {new}: it lacks operator "
                     "FULLY_CONNECTED version 11; upgrade the TFLite runtime there or convert with an older converter")
    # The same op at a version it has runs there, on the old runtime.
    measured = rows["fc-v1.tflite"]["metrics"]
    assert rows["fc-v1.tflite"]["error"] is None, rows["fc-v1.tflite"]
    assert measured["runtime"].startswith(f"tflite-runtime {OLD_LITE}"), measured
