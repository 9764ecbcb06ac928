"""Hostile cases, data: calibration and evaluation data a user gives (an .npz, or what
goes wrong with one) is read without unpickling, and anything that is not finite, numeric
data of the model's sample shapes with integer labels is refused in one line, exit 2,
when the recipe's data is loaded (before any export), naming what is wrong and where.

The data is scikit-learn's digits (the shipped CNN's), spoiled one way per case."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compressor.data import digits_arrays
from hostile_cli import cli, debris, refused
from recipes import DIGITS_MODEL

FAST = "targets: [onnx]\nbenchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n"
N = 40


@pytest.fixture(scope="module")
def digits():
    x, y = digits_arrays("test")
    return x[:N].copy(), y[:N].copy()


def recipe(tmp_path: Path, source: str, section: str = "calibration") -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"version: 1\nname: t\nmodel:\n{DIGITS_MODEL}data:\n  {section}: {{source: '{source}'}}\n{FAST}")
    return path


def refuses(tmp_path: Path, capsys, source: str, says, section: str = "calibration") -> str:
    line = refused(capsys, "run", recipe(tmp_path, source, section), "--out", tmp_path / "run", "--no-progress",
                   says=says)
    assert debris(tmp_path / "run") == [] and not (tmp_path / "run" / "report.json").exists()
    return line


def npz(tmp_path: Path, name: str = "d.npz", **arrays) -> Path:
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


# --- files that are no .npz of numbers -------------------------------------------------

def test_a_missing_file_is_named(tmp_path, capsys):
    refuses(tmp_path, capsys, "gone.npz", f"data file {tmp_path / 'gone.npz'}: no such file")


def test_a_directory_is_named_as_one(tmp_path, capsys):
    (tmp_path / "calib.npz").mkdir()
    refuses(tmp_path, capsys, "calib.npz",
            f"data file {tmp_path / 'calib.npz'} is a directory; give the .npz file itself")


def test_a_directory_without_the_npz_suffix_is_named_as_one(tmp_path, capsys):
    (tmp_path / "calib").mkdir()
    refuses(tmp_path, capsys, "calib", f"data file {tmp_path / 'calib'} is a directory")


def test_an_npy_where_an_npz_is_expected_says_how_to_make_one(tmp_path, capsys, digits):
    np.save(tmp_path / "x.npy", digits[0])
    refuses(tmp_path, capsys, "x.npy", ("is a single .npy array, not an .npz of named arrays",
                                        "np.savez(path, INPUT_NAME=inputs, labels=class_indices)"))


def test_an_npy_renamed_to_npz_is_named_as_an_npy(tmp_path, capsys, digits):
    np.save(tmp_path / "x.npy", digits[0])
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    refuses(tmp_path, capsys, "x.npz", f"data file {tmp_path / 'x.npz'} is a single .npy array")


@pytest.mark.parametrize("content, says", [
    (b"", "not a readable .npz archive: it is empty (0 bytes)"),
    (b"pixels,label\n0.1,3\n", "not a readable .npz archive: it is no zip of .npy arrays"),
])
def test_a_file_that_is_no_archive_says_what_it_is(tmp_path, capsys, content, says):
    (tmp_path / "d.npz").write_bytes(content)
    refuses(tmp_path, capsys, "d.npz", says)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_truncated_npz_is_a_zip_error_in_one_line(tmp_path, capsys, digits, save):
    save(tmp_path / "full.npz", pixels=digits[0], labels=digits[1])
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[:len(data) // 2])
    refuses(tmp_path, capsys, "d.npz", ("not a readable .npz archive: truncated or corrupt (BadZipFile: ",
                                        "write it again with np.savez"))


def test_an_npz_whose_compressed_member_is_damaged_is_refused(tmp_path, capsys, digits):
    np.savez_compressed(tmp_path / "d.npz", pixels=digits[0])
    data = bytearray((tmp_path / "d.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "d.npz") as z:
        info = z.getinfo("pixels.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 20:start + 60] = bytes(40)  # inside the deflate stream: the zip directory still reads
    (tmp_path / "d.npz").write_bytes(bytes(data))
    refuses(tmp_path, capsys, "d.npz", "not a readable .npz archive: truncated or corrupt (")


class _Touch:
    """Unpickling this creates `path` (as a malicious pickle would run anything else)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_an_npz_of_object_arrays_is_refused_and_never_unpickled(tmp_path, capsys, digits):
    marker = tmp_path / "pwned"
    objects = np.empty(N, dtype=object)
    objects[:] = [_Touch(marker)] * N
    np.savez(tmp_path / "d.npz", pixels=digits[0], labels=objects)
    refuses(tmp_path, capsys, "d.npz", f"data file {tmp_path / 'd.npz'}: array 'labels' holds Python objects, "
                                       "which are never unpickled")
    assert not marker.exists()


def test_a_pickle_named_npz_is_refused_and_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "d.npz").write_bytes(pickle.dumps({"pixels": _Touch(marker)}))
    refuses(tmp_path, capsys, "d.npz", "it is a pickle, which is never loaded (unpickling can run code)")
    assert not marker.exists()


def test_an_npz_of_strings_is_refused_even_when_they_read_as_numbers(tmp_path, capsys, digits):
    npz(tmp_path, pixels=digits[0].astype(str), labels=digits[1])
    refuses(tmp_path, capsys, "d.npz", "input 'pixels' holds strings (<U")


def test_an_npz_of_complex_pixels_is_refused(tmp_path, capsys, digits):
    npz(tmp_path, pixels=digits[0] + 1j)
    refuses(tmp_path, capsys, "d.npz", "input 'pixels' holds complex numbers (complex64)")


# --- archives that hold no data the model takes -----------------------------------------

def test_an_empty_npz_says_it_holds_no_arrays(tmp_path, capsys):
    np.savez(tmp_path / "d.npz")
    line = refuses(tmp_path, capsys, "d.npz", f"data file {tmp_path / 'd.npz'} holds no arrays")
    assert "needs calibration data" not in line


def test_an_npz_of_zero_samples_says_so(tmp_path, capsys):
    npz(tmp_path, pixels=np.zeros((0, 1, 8, 8), np.float32), labels=np.zeros(0, np.int64))
    line = refuses(tmp_path, capsys, "d.npz", "input 'pixels' holds 0 samples")
    assert "needs calibration data" not in line


def test_keys_that_name_no_input_list_the_models_inputs_and_the_files_keys(tmp_path, capsys, digits):
    npz(tmp_path, images=digits[0], masks=digits[0], labels=digits[1])
    refuses(tmp_path, capsys, "d.npz", "arrays ['images', 'masks'] do not name the model inputs ['pixels']")


def test_an_npz_of_labels_only_says_no_input_is_there(tmp_path, capsys, digits):
    npz(tmp_path, labels=digits[1])
    refuses(tmp_path, capsys, "d.npz", "arrays [] do not name the model inputs ['pixels']")


# --- values that are not finite ---------------------------------------------------------

@pytest.mark.parametrize("section", ["calibration", "evaluation"])
def test_nan_and_inf_are_refused_with_the_count_and_the_first_index(tmp_path, capsys, digits, section):
    x = digits[0].copy()
    x[5, 0, 2, 3] = np.nan
    x[9, 0, 0, 0] = np.nan
    x[30, 0, 7, 7] = -np.inf
    npz(tmp_path, pixels=x, labels=digits[1])
    refuses(tmp_path, capsys, "d.npz", "input 'pixels' holds 3 non-finite values (2 NaN, 1 inf), the first at "
                                       "sample 5 (index [5, 0, 2, 3]); replace or drop those samples", section)


def test_all_inf_data_is_the_non_finite_refusal_not_a_scale_issue(tmp_path, capsys, digits):
    npz(tmp_path, pixels=np.full_like(digits[0], np.inf))
    line = refuses(tmp_path, capsys, "d.npz", f"holds {digits[0].size} non-finite values (0 NaN, {digits[0].size} inf)"
                                              ", the first at sample 0")
    assert "scale" not in line


def test_float64_beyond_the_float32_input_is_refused_not_turned_to_inf(tmp_path, capsys, digits):
    x = digits[0].astype(np.float64)
    x[3, 0, 1, 1] = 1e300
    npz(tmp_path, pixels=x)
    refuses(tmp_path, capsys, "d.npz", "input 'pixels' holds values beyond float32's range (largest magnitude 1e+300)")


# --- labels ----------------------------------------------------------------------------

@pytest.mark.parametrize("labels, says", [
    (lambda y: y + 0j, "labels hold complex numbers (complex128); give integer class indices, one a sample"),
    (lambda y: y.astype(str), "labels hold strings (<U"),
    (lambda y: np.where(np.arange(N) == 3, 0.25, y), "labels must be integer class indices; sample 3 has 0.25 (1 "
                                                     "fractional in all)"),
    (lambda y: np.where(np.arange(N) == 4, np.nan, y), "labels hold 1 non-finite value (1 NaN, 0 inf), the first "
                                                       "at sample 4"),
    (lambda y: np.eye(10)[y], "labels have shape [40, 10]; give one class index per sample (shape [N]); for "
                              "one-hot labels use labels.argmax(1)"),
    (lambda y: y[:-3], "37 labels for 40 samples; give one label per sample"),
    (lambda y: np.where(np.arange(N) == 7, -1, y), "label -1 at sample 7 is negative; class indices start at 0"),
])
def test_labels_that_are_no_class_indices_are_refused(tmp_path, capsys, digits, labels, says):
    npz(tmp_path, pixels=digits[0], labels=labels(digits[1]))
    refuses(tmp_path, capsys, "d.npz", f"data file {tmp_path / 'd.npz'}: {says}", section="evaluation")


def test_labels_beyond_the_models_classes_are_refused_before_any_export(tmp_path, capsys, digits):
    """The digits CNN scores 10 classes: a label of 12 (labels of another dataset) would
    read as a silent 0% accuracy."""
    npz(tmp_path, pixels=digits[0], labels=np.where(np.arange(N) == 5, 12, digits[1]))
    refuses(tmp_path, capsys, "d.npz", ("evaluation labels go up to 12 (first at sample 5)", "scores 10 classes",
                                        "give labels 0..9"), section="evaluation")


def test_whole_number_float_labels_count_as_class_indices(tmp_path, capsys):
    """Labels read from CSV or pandas are often floats (7.0): accepted, as the classes they
    name, so the accuracy is the digits CNN's own, not 0%."""
    x, y = digits_arrays("test")
    np.savez(tmp_path / "d.npz", pixels=x, labels=y.astype(np.float64)[:, None])  # a column, as pandas gives
    code, out, err = cli(capsys, "run", recipe(tmp_path, "d.npz", "evaluation"), "--out", tmp_path / "run",
                         "--no-progress")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["reference"]["accuracy"] == pytest.approx(0.9933, abs=1e-3)


# --- shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape, says", [
    ((N, 1, 16, 16), "input 'pixels' has samples of shape [1, 16, 16], the model declares [1, 8, 8] (after the "
                     "batch axis; the array is [40, 1, 16, 16]); fix the data or the input's shape in the recipe"),
    ((N, 8, 8), "input 'pixels' has samples of shape [8, 8], the model declares [1, 8, 8] (after the batch axis; "
                "the array is [40, 8, 8]); reshape it with x.reshape(-1, 1, 8, 8)"),
    ((N, 64), "has samples of shape [64], the model declares [1, 8, 8] (after the batch axis; the array is "
              "[40, 64]); reshape it with x.reshape(-1, 1, 8, 8)"),
    ((N, 8, 8, 1), "has samples of shape [8, 8, 1], the model declares [1, 8, 8] (after the batch axis; the array "
                   "is [40, 8, 8, 1]); move the axes with x.transpose(0, 3, 1, 2)"),
    ((N,), "has samples of shape [], the model declares [1, 8, 8]"),
    ((), "has samples of shape [], the model declares [1, 8, 8] (after the batch axis; the array is [])"),
])
def test_arrays_whose_sample_shape_does_not_fit_name_the_input_and_both_shapes(tmp_path, capsys, shape, says):
    npz(tmp_path, pixels=np.zeros(shape, np.float32))
    refuses(tmp_path, capsys, "d.npz", says)


TWO_INPUTS = """\
import torch
from torch import nn


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, a, b):
        return self.fc(torch.cat([a, b], 1))


def make():
    return Pair()
"""


def two_input_recipe(tmp_path: Path) -> Path:
    (tmp_path / "hd_pair.py").write_text(TWO_INPUTS)
    path = tmp_path / "recipe.yaml"
    path.write_text("version: 1\nname: t\nmodel:\n  factory: hd_pair:make\n"
                    "  inputs: [{name: a, shape: [1, 4]}, {name: b, shape: [1, 4]}]\n"
                    f"data:\n  calibration: {{source: d.npz}}\n{FAST}")
    return path


@pytest.mark.parametrize("arrays, says", [
    ({"a": np.zeros((6, 4)), "b": np.zeros((5, 4))}, "inputs have different sample counts (6 and 5 for 'b')"),
    ({"a": np.zeros((6, 4)), "b": np.zeros((6, 5))}, "input 'b' has samples of shape [5], the model declares [4]"),
    ({"left": np.zeros((6, 4)), "right": np.zeros((6, 4))},
     "arrays ['left', 'right'] do not name the model inputs ['a', 'b']"),
    ({"a": np.zeros((6, 4))}, "arrays ['a'] do not name the model inputs ['a', 'b']"),
])
def test_a_two_input_model_names_the_input_that_does_not_fit(tmp_path, capsys, arrays, says):
    np.savez(tmp_path / "d.npz", **arrays)
    line = refused(capsys, "run", two_input_recipe(tmp_path), "--out", tmp_path / "run", "--no-progress", says=says)
    assert line.startswith(f"compressor: error: data file {tmp_path / 'd.npz'}: ")


TOKENS = """\
from torch import nn


def make():
    return nn.Sequential(nn.Embedding(50, 4), nn.Flatten(), nn.Linear(16, 3))
"""


@pytest.mark.parametrize("dtype, ids, says", [
    ("int64", np.full((6, 4), 2.5), "input 'ids' holds fractional values, but it is declared int64; give whole "
                                    "numbers"),
    ("int32", np.full((6, 4), 2.0 ** 40), "input 'ids' holds values from 1099511627776.0 to 1099511627776.0, "
                                          "outside int32's range [-2147483648, 2147483647]"),
])
def test_token_ids_that_do_not_survive_the_cast_to_the_declared_int_dtype_are_refused(tmp_path, capsys, dtype, ids,
                                                                                        says):
    (tmp_path / "hd_tokens.py").write_text(TOKENS)
    np.savez(tmp_path / "d.npz", ids=ids)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"version: 1\nname: t\nmodel:\n  factory: hd_tokens:make\n"
                    f"  inputs: [{{name: ids, shape: [1, 4], dtype: {dtype}}}]\n"
                    f"data:\n  calibration: {{source: d.npz}}\n{FAST}")
    refused(capsys, "run", path, "--out", tmp_path / "run", "--no-progress", says=says)
