"""Hostile catalog, `compressor bench`: flags no machine can honour, output paths that
cannot be written, evaluation data that is junk or does not fit, artifact files that are
cut, empty or of another format, and a benchmark worker that dies. Every case is exit 2
with one line naming the problem, decided before anything is measured (or, for what
only the loaded artifact can tell, before its timing starts).

Categories: flags, the --json output, evaluation data, artifact files, the worker."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from hostile_cli import cli, cli_process, debris, one_line, refused

FAST = ["--runs", "3", "--warmup", "0", "--warmup-s", "0"]
LOCAL = [*FAST, "--no-isolate"]


@pytest.fixture(scope="session")
def art(tmp_path_factory, digits_model, calibration_data, digits_test) -> dict[str, Path]:
    """The digits CNN as fp32 ONNX (dynamic batch) and fp32 TFLite (batch 1), exported
    once, and its real held-out digits as evaluation data."""
    import targets

    out = tmp_path_factory.mktemp("hostile-bench")
    paths = {t: targets.get(t).export(digits_model, None, out / f"digits.{t}", {}, calibration_data).path
             for t in ("onnx", "tflite")}
    x, y = digits_test
    np.savez(out / "eval.npz", pixels=x, labels=y)
    return {**paths, "eval": out / "eval.npz", "dir": out}


# --- flags -----------------------------------------------------------------------

FLAGS = {
    "negative warm-up runs": (["--warmup", "-5"], "--warmup -5: use 0 to 1000000 warm-up runs"),
    "a billion warm-up runs": (["--warmup", "1000000000"], "--warmup 1000000000: use 0 to 1000000 warm-up runs"),
    "negative warm-up time": (["--warmup-s", "-1"], "--warmup-s -1.0: use 0.0 to 3600.0 seconds"),
    "infinite warm-up time": (["--warmup-s", "inf"], "--warmup-s inf: use 0.0 to 3600.0 seconds"),
    "NaN warm-up time": (["--warmup-s", "nan"], "--warmup-s nan: use 0.0"),
    "NaN minimum time": (["--min-time-s", "nan"], "--min-time-s nan: use 0.0 to 3600.0 seconds"),
    "infinite minimum time": (["--min-time-s", "inf"], "--min-time-s inf: use 0.0"),
    "negative minimum time": (["--min-time-s", "-0.5"], "--min-time-s -0.5: use 0.0"),
    "a day of minimum time": (["--min-time-s", "86400"], "--min-time-s 86400.0: use 0.0 to 3600.0"),
    "10**9 timed runs": (["--runs", "1000000000"], "--runs 1000000000: use 1 to 10000000 timed runs"),
    "10**20 threads": (["--threads", str(10**20)], (f"--threads {10**20}: use 1 to 1024 threads",
                                                   "this machine has")),
    "2000 threads": (["--threads", "2000"], "--threads 2000: use 1 to 1024 threads"),
    "batch 10**9": (["--batch", "1000000000"], "--batch 1000000000: use 1 to 65536"),
    "one batch of several too big": (["--batch", "1,8,100000"], "--batch 100000: use 1 to 65536"),
    "a 30-billion-element shape": (["--shape", "pixels=1x3x100000x100000"],
                                   ("--shape pixels=1x3x100000x100000 is 30,000,000,000 elements",
                                    "at most 2,147,483,648")),
    "a shape with a zero dim": (["--shape", "pixels=0x1x8x8"], "--shape pixels=0x1x8x8: every dimension is at least 1"),
    "one input shaped twice": (["--shape", "pixels=1x1x8x8", "--shape", "pixels=2x1x8x8"],
                               "--shape pixels=2x1x8x8: input 'pixels' of absent.onnx is already given by another --shape"),
    "an unknown device": (["--device", "tpu"], "device 'tpu' is not in the inventory"),
    "a device index that is no number": (["--device", "cuda:first"], "--device cuda:first: use local, cpu"),
}


@pytest.mark.parametrize("case", FLAGS)
def test_flag_no_machine_can_honour_is_refused_before_any_file_is_loaded(tmp_path, capsys, case):
    argv, says = FLAGS[case]
    # The artifact does not exist: the flag being named proves it was judged first.
    refused(capsys, "bench", tmp_path / "absent.onnx", *FAST, *argv, says=says)


def test_shape_for_an_input_the_model_lacks_names_its_inputs(art, capsys):
    refused(capsys, "bench", art["onnx"], *LOCAL, "--shape", "tokens=1x16",
            says=(str(art["onnx"]), "--shape names 'tokens', but the model's inputs are ['pixels']"))


@pytest.mark.parametrize("shape", ["1x3x10000x10000", "1x64", "1x1x8x8x1"])
def test_shape_that_contradicts_the_fixed_dims_is_refused_before_allocating(art, capsys, shape):
    refused(capsys, "bench", art["onnx"], *LOCAL, "--shape", f"pixels={shape}",
            says=(f"--shape pixels={shape} does not fit the input, whose shape is ['batch', 1, 8, 8]",))


@pytest.fixture(scope="session")
def relu_models(tmp_path_factory) -> dict[str, Path]:
    """Relu graphs built with onnx.helper: `image` on x:[batch, 3, 224, 224] float, and
    `wide` on eight float64 inputs x0..x7:[batch, n] (n dynamic)."""
    import onnx
    from onnx import TensorProto, helper

    out = tmp_path_factory.mktemp("relu")

    def save(name, inputs):
        graph = helper.make_graph(
            [helper.make_node("Relu", [i.name], [f"y{k}"]) for k, i in enumerate(inputs)], name, inputs,
            [helper.make_tensor_value_info(f"y{k}", i.type.tensor_type.elem_type,
                                           [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
             for k, i in enumerate(inputs)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        onnx.save(model, str(out / f"{name}.onnx"))
        return out / f"{name}.onnx"

    return {"image": save("image", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 224, 224])]),
            "wide": save("wide", [helper.make_tensor_value_info(f"x{k}", TensorProto.DOUBLE, ["batch", "n"])
                                  for k in range(8)])}


def test_a_batch_that_makes_an_input_too_large_is_refused_before_allocating(relu_models, capsys):
    refused(capsys, "bench", relu_models["image"], *LOCAL, "--batch", "65536",
            says=("input 'x' at batch 65536 would be [65536, 3, 224, 224], 9,865,003,008 elements",
                  "at most 2,147,483,648 (2**31) per input"))


def test_inputs_larger_than_half_the_free_memory_are_refused_before_allocating(relu_models, capsys):
    # Eight float64 inputs of 2**31 elements: 128 GiB, each within the per-input bound.
    shapes = [a for k in range(8) for a in ("--shape", f"x{k}=1x{2**31}")]
    refused(capsys, "bench", relu_models["wide"], *LOCAL, *shapes,
            says=("the inputs at batch 1 take 128.0 GiB, more than half of the", "GiB this machine has free"))


def test_cuda_on_a_machine_without_it_is_one_line(art, capsys):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal is for machines without it")
    refused(capsys, "bench", art["onnx"], *LOCAL, "--device", "cuda",
            says=(str(art["onnx"]), "has no CUDAExecutionProvider", "install onnxruntime-gpu"))


def test_cuda_for_a_tflite_file_is_one_line(art, capsys):
    refused(capsys, "bench", art["tflite"], *LOCAL, "--device", "cuda:0",
            says=(str(art["tflite"]), "device cuda:0: the TFLite target runs on the CPU here"))


def test_settings_at_their_bounds_are_accepted(art, capsys, tmp_path):
    out = tmp_path / "b.json"
    code, _, err = cli(capsys, "bench", art["onnx"], "--runs", "3", "--warmup", "0", "--warmup-s", "0",
                       "--min-time-s", "0", "--threads", "1", "--batch", "1,2", "--no-isolate", "--json", out)
    assert code == 0 and err == ""
    assert [lat["batch"] for lat in json.loads(out.read_text())["results"][0]["latency"]] == [1, 2]


# --- batch sizes a model cannot take ------------------------------------------------

def test_a_fixed_batch_file_is_not_timed_under_another_batch_and_throughput_is_the_batch_run(art, capsys,
                                                                                              tmp_path):
    # The TFLite export is [1, 8, 8, 1]; the ONNX one has a dynamic batch.
    out = tmp_path / "b.json"
    code, text, err = cli(capsys, "bench", art["onnx"], art["tflite"], *LOCAL, "--batch", "1,4", "--json", out)
    assert code == 0 and err == "", err
    by_file = {Path(r["path"]).suffix: r for r in json.loads(out.read_text())["results"]}
    assert [lat["batch"] for lat in by_file[".onnx"]["latency"]] == [1, 4]
    assert [lat["batch"] for lat in by_file[".tflite"]["latency"]] == [1]
    assert "takes batch 1 only" in by_file[".tflite"]["batches_refused"]["4"]
    assert by_file[".onnx"]["batches_refused"] == {}
    for lat in by_file[".onnx"]["latency"]:  # samples per second from the samples actually fed
        assert lat["throughput"] == pytest.approx(lat["batch"] * 1e3 / lat["p50_ms"])
    assert f"not run at batch 4: {art['tflite'].name}: the model takes batch 1 only" in " ".join(text.split())


def test_a_fixed_batch_file_at_no_batch_it_takes_is_one_line(art, capsys):
    refused(capsys, "bench", art["tflite"], *LOCAL, "--batch", "4",
            says=(art["tflite"].name, "the model takes batch 1 only", "ask for --batch 1"))


def test_a_shape_that_fixes_the_batch_does_not_time_batch_1_twice(art, capsys, tmp_path):
    out = tmp_path / "b.json"
    code, _, err = cli(capsys, "bench", art["onnx"], *LOCAL, "--shape", "pixels=1x1x8x8", "--batch", "1,8",
                       "--json", out)
    assert code == 0 and err == "", err
    row = json.loads(out.read_text())["results"][0]
    assert [lat["batch"] for lat in row["latency"]] == [1]
    assert "--shape pixels=1x1x8x8 fixes the batch axis at 1" in row["batches_refused"]["8"]


# --- the --json output -------------------------------------------------------------

@pytest.mark.parametrize("where, says", [
    ("missing/b.json", "missing does not exist; create it first"),
    ("eval.npz/b.json", "eval.npz is a file, not a folder"),
    (".", "is a folder; give a file name in it"),
])
def test_json_output_that_cannot_be_written_is_refused_before_any_file_is_loaded(tmp_path, capsys, where, says):
    (tmp_path / "eval.npz").write_bytes(b"x")
    out = tmp_path / where
    refused(capsys, "bench", tmp_path / "absent.onnx", *FAST, "--json", out, says=(f"--json {out}", says))
    assert debris(tmp_path) == []


def test_json_output_onto_the_artifact_is_refused_and_the_artifact_kept(art, capsys):
    before = art["onnx"].read_bytes()
    refused(capsys, "bench", art["onnx"], *LOCAL, "--json", art["onnx"], says="is the artifact")
    assert art["onnx"].read_bytes() == before


def test_json_output_onto_the_eval_data_is_refused(art, capsys):
    refused(capsys, "bench", art["onnx"], *LOCAL, "--eval-data", art["eval"], "--json", art["eval"],
            says="is the eval data this command reads")
    assert np.load(art["eval"])["labels"].shape == (450,)


# --- evaluation data ------------------------------------------------------------------

def _data(make):
    """make(x, y) -> the arrays of the .npz."""
    return lambda d, x, y: np.savez(d / "e.npz", **make(x, y))


def _bytes(make):
    return lambda d, x, y: (d / "e.npz").write_bytes(make(x, y))


def _nan(x, y):
    x = x.copy()
    x[7, 0, 3, 3] = np.nan
    return {"pixels": x, "labels": y}


def _inf(x, y):
    x = x.copy()
    x[2] = np.inf
    return {"pixels": x, "labels": y}


def _cut_npz(x, y):
    import io

    buf = io.BytesIO()
    np.savez(buf, pixels=x, labels=y)
    return buf.getvalue()[:-200]


def _pickle(x, y):
    import pickle

    return pickle.dumps({"pixels": x})


def _npy(x, y):
    import io

    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


EVAL = {
    "junk bytes": (_bytes(lambda x, y: os.urandom(4096)),
                   "is not a readable .npz archive: it is no zip of .npy arrays"),
    "an empty file": (_bytes(lambda x, y: b""), "is not a readable .npz archive: it is empty (0 bytes)"),
    "a pickle": (_bytes(_pickle), "is not a readable .npz archive: it is a pickle, which is never loaded"),
    "a single .npy": (_bytes(_npy), "is a single .npy array, not an .npz of named arrays"),
    "a truncated .npz": (_bytes(_cut_npz), "is not a readable .npz archive: truncated or corrupt ("),
    "strings": (_data(lambda x, y: {"pixels": np.array(["a", "b"]), "labels": np.array([1, 2])}),
                "array 'pixels' holds strings (<U1); give real numbers"),
    "bytes": (_data(lambda x, y: {"pixels": np.array([b"a", b"b"])}), "array 'pixels' holds bytes (|S1)"),
    "complex inputs": (_data(lambda x, y: {"pixels": x.astype(np.complex64)}),
                       "array 'pixels' holds complex numbers (complex64)"),
    "Python objects": (_data(lambda x, y: {"pixels": np.array([{"a": 1}, None], dtype=object)}),
                       "array 'pixels' holds Python objects, which are never unpickled"),
    "no arrays": (_data(lambda x, y: {}), "holds no arrays"),
    "only labels": (_data(lambda x, y: {"labels": y}), "holds only labels"),
    "unrelated keys": (_data(lambda x, y: {"images": x, "extra": x, "labels": y}),
                       "has no array for the model's input 'pixels' (it has 'extra', 'images')"),
    "a NaN input": (_data(_nan), "array 'pixels' holds 1 non-finite value (1 NaN, 0 inf), the first at sample 7 "
                                 "(index [7, 0, 3, 3])"),
    "inf inputs": (_data(_inf), "holds 64 non-finite values (0 NaN, 64 inf), the first at sample 2 "
                                "(index [2, 0, 0, 0])"),
    "zero samples": (_data(lambda x, y: {"pixels": x[:0]}), "array 'pixels' has shape [0, 1, 8, 8]: no samples"),
    "a scalar": (_data(lambda x, y: {"pixels": np.float32(1)}), "array 'pixels' has shape []: no samples"),
    "inputs of different lengths": (_data(lambda x, y: {"pixels": x, "more": x[:5]}),
                                    "the arrays hold different numbers of samples (450 and 5 in 'more')"),
    "samples of another shape": (_data(lambda x, y: {"pixels": x.reshape(450, 64)}),
                                 "array 'pixels' has samples of shape [64], the model's input takes [1, 8, 8]"),
    "channels-last samples": (_data(lambda x, y: {"pixels": np.repeat(x, 3, axis=1)}),
                              "has samples of shape [3, 8, 8]"),
    "fractional float labels": (_data(lambda x, y: {"pixels": x, "labels": y + 0.5}),
                                "labels must be integer class indices; sample 0 has"),
    "NaN labels": (_data(lambda x, y: {"pixels": x, "labels": np.full(len(y), np.nan)}),
                   "labels hold 450 non-finite values"),
    "complex labels": (_data(lambda x, y: {"pixels": x, "labels": y.astype(np.complex64)}),
                       "labels hold complex numbers (complex64); give integer class indices"),
    "boolean labels": (_data(lambda x, y: {"pixels": x, "labels": y > 4}), "labels hold booleans (bool)"),
    "text labels": (_data(lambda x, y: {"pixels": x, "labels": y.astype(str)}), "labels hold strings (<U"),
    "one-hot labels": (_data(lambda x, y: {"pixels": x, "labels": np.eye(10)[y]}),
                       "labels have shape [450, 10]; give one class index per sample"),
    "fewer labels than samples": (_data(lambda x, y: {"pixels": x, "labels": y[:10]}), "10 labels for 450 samples"),
    "more labels than samples": (_data(lambda x, y: {"pixels": x[:10], "labels": y}), "450 labels for 10 samples"),
    "a negative label": (_data(lambda x, y: {"pixels": x, "labels": np.where(np.arange(len(y)) == 3, -1, y)}),
                         "label -1 at sample 3 is negative"),
    "a label beyond the model's classes": (_data(lambda x, y: {"pixels": x, "labels": np.where(y == 9, 10, y)}),
                                           "label 10 is no class of the model, whose output scores 10 classes"),
}


@pytest.mark.parametrize("case", EVAL)
def test_eval_data_that_is_junk_or_does_not_fit_is_one_line(art, digits_test, tmp_path, capsys, case):
    make, says = EVAL[case]
    make(tmp_path, *digits_test)
    refused(capsys, "bench", art["onnx"], *LOCAL, "--eval-data", tmp_path / "e.npz",
            says=(f"evaluation data {tmp_path / 'e.npz'}", says))


@pytest.mark.parametrize("case", ["junk bytes", "strings", "a NaN input", "complex labels"])
def test_eval_data_judged_on_its_own_is_refused_before_any_file_is_loaded(digits_test, tmp_path, capsys, case):
    EVAL[case][0](tmp_path, *digits_test)
    refused(capsys, "bench", tmp_path / "absent.onnx", *FAST, "--eval-data", tmp_path / "e.npz",
            says=f"evaluation data {tmp_path / 'e.npz'}")


@pytest.mark.parametrize("where, says", [("missing.npz", "missing.npz: no such file"),
                                         (".", "is a directory; give the .npz file itself")])
def test_eval_data_that_is_missing_or_a_directory_is_one_line(art, tmp_path, capsys, where, says):
    refused(capsys, "bench", art["onnx"], *LOCAL, "--eval-data", tmp_path / where, says=says)


def test_eval_data_with_whole_number_float_labels_measures_accuracy(art, digits_test, tmp_path, capsys):
    x, y = digits_test
    np.savez(tmp_path / "e.npz", pixels=x.astype(np.float64), labels=y.astype(np.float32))
    code, _, err = cli(capsys, "bench", art["onnx"], *LOCAL, "--eval-data", tmp_path / "e.npz",
                       "--json", tmp_path / "b.json")
    result = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert code == 0 and err == "" and result["eval_samples"] == 450 and result["accuracy"] >= 0.97


def test_eval_data_that_does_not_fit_comes_back_from_the_isolated_worker_naming_the_artifact(art, digits_test,
                                                                                            tmp_path, capsys):
    x, y = digits_test
    np.savez(tmp_path / "e.npz", images=x, labels=y)
    refused(capsys, "bench", art["onnx"], *FAST, "--eval-data", tmp_path / "e.npz",
            says=(f"{art['onnx']}: evaluation data", "no array for the model's input 'pixels'"))


def test_eval_data_for_a_tflite_file_is_checked_the_same_way(art, digits_test, tmp_path, capsys):
    x, y = digits_test
    np.savez(tmp_path / "e.npz", pixels=x, labels=y.astype(np.complex128))
    refused(capsys, "bench", art["tflite"], *LOCAL, "--eval-data", tmp_path / "e.npz", says="labels hold complex")


# --- artifact files -----------------------------------------------------------------

def _cut(n):
    return lambda a: a["tflite"].read_bytes()[:-n]


ARTIFACTS = {
    "tflite with its last 64 bytes cut": ("m.tflite", _cut(64), "the TFLite interpreter cannot load it"),
    "tflite cut by half": ("m.tflite", lambda a: a["tflite"].read_bytes()[:130_000], "cannot load it"),
    "tflite of its first 8 bytes": ("m.tflite", lambda a: a["tflite"].read_bytes()[:8], "cannot load it"),
    "onnx truncated to half": ("m.onnx", lambda a: a["onnx"].read_bytes()[:134_000], "not an ONNX model"),
    "onnx truncated to 300 bytes": ("m.onnx", lambda a: a["onnx"].read_bytes()[:300], "not an ONNX model"),
    "zero-byte onnx": ("m.onnx", lambda a: b"", "the file is empty (0 bytes)"),
    "zero-byte tflite": ("m.tflite", lambda a: b"", "the file is empty (0 bytes)"),
    "onnx bytes named .tflite": ("m.tflite", lambda a: a["onnx"].read_bytes(), "not a TFLite model (no 'TFL3'"),
    "tflite bytes named .onnx": ("m.onnx", lambda a: a["tflite"].read_bytes(), "not an ONNX model"),
    "an npz named .onnx": ("m.onnx", lambda a: a["eval"].read_bytes(), "not an ONNX model"),
    "text named .tflite": ("m.tflite", lambda a: b"hello, model\n" * 10, "not a TFLite model"),
    "random bytes named .onnx": ("m.onnx", lambda a: np.random.default_rng(0).bytes(4096), "not an ONNX model"),
    "an unknown extension": ("m.pb", lambda a: a["onnx"].read_bytes(), "unknown artifact type; the benchmark loads"),
}


@pytest.mark.parametrize("case", ARTIFACTS)
def test_cut_empty_or_foreign_artifact_files_are_one_line(art, tmp_path, capsys, case):
    name, make, says = ARTIFACTS[case]
    (tmp_path / name).write_bytes(make(art))
    refused(capsys, "bench", tmp_path / name, *LOCAL, says=(f"{tmp_path / name}", says))


@pytest.mark.parametrize("case", ["tflite with its last 64 bytes cut", "onnx truncated to half"])
def test_a_bad_file_among_good_ones_is_refused_before_the_good_ones_are_measured(art, tmp_path, capsys, case):
    name, make, _ = ARTIFACTS[case]
    (tmp_path / name).write_bytes(make(art))
    start = time.monotonic()
    code, _, err = cli(capsys, "bench", art["onnx"], tmp_path / name, "--runs", "3", "--min-time-s", "60")
    assert code == 2 and str(tmp_path / name) in one_line(err)
    assert time.monotonic() - start < 30  # the good file was not timed for its 60 s first


def test_a_cut_tflite_in_a_real_process_is_exactly_one_line_on_stderr(art, tmp_path):
    """The runtime's C++ logging writes to descriptor 2 directly; only a real process shows it."""
    name, make, says = ARTIFACTS["tflite with its last 64 bytes cut"]
    (tmp_path / name).write_bytes(make(art))
    proc = cli_process("bench", tmp_path / name, *LOCAL)
    assert proc.returncode == 2 and says in one_line(proc.stderr)


@pytest.mark.parametrize("name", ["missing.onnx", "missing.tflite"])
def test_a_missing_artifact_is_one_line(tmp_path, capsys, name):
    refused(capsys, "bench", tmp_path / name, *LOCAL, says=f"{tmp_path / name}: no such file")


@pytest.mark.parametrize("name", ["folder.onnx", "folder.tflite"])
def test_a_directory_named_like_an_artifact_is_one_line(tmp_path, capsys, name):
    (tmp_path / name).mkdir()
    refused(capsys, "bench", tmp_path / name, *LOCAL, says=f"{tmp_path / name} is a directory, not an artifact file")


# --- the worker ----------------------------------------------------------------------

SITE = """\
import os, signal, sys
if sys.orig_argv[-2:] == ["-m", "benchmarks.worker"]:
    how = os.environ.get("HOSTILE_WORKER")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "abort":
        sys.stderr.write("fatal: the runtime gave up\\n")
        sys.stderr.flush()
        os.abort()
    elif how == "silent":
        sys.stdout.write("{half a line\\n")
        sys.stderr.write("worker: lost the result\\n")
        os._exit(0)
    elif how == "no-runtime":
        sys.modules["onnxruntime"] = None
"""


@pytest.mark.parametrize("how, says", [
    ("kill", "the benchmark worker was killed by SIGKILL (out of memory?)"),
    ("abort", ("the benchmark worker was killed by SIGABRT (the runtime crashed on this file)",
               "its last words: fatal: the runtime gave up")),
    ("silent", "exited with code 0 without a result; its last words: worker: lost the result"),
    ("no-runtime", ("the benchmark failed: ModuleNotFoundError: import of onnxruntime halted", "(at harness.py:")),
])
def test_a_worker_that_dies_or_fails_is_one_line_naming_the_artifact_and_its_reason(art, tmp_path, how, says):
    """The worker process really dies (killed as the OOM killer would, aborted as a crashing
    runtime would), or really cannot import its runtime; the parent reports it in one line."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), HOSTILE_WORKER=how)
    proc = cli_process("bench", art["onnx"], *FAST, env=env, cwd=tmp_path, timeout=120)
    line = one_line(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    for phrase in (f"{art['onnx']}: ", *((says,) if isinstance(says, str) else says)):
        assert phrase in line, (phrase, line)
    assert "Traceback" not in proc.stderr and "RuntimeError" not in proc.stderr
