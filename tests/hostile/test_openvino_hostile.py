"""Hostile catalog, OpenVINO IR files: an .xml or .bin that is cut, empty, missing or of
another format is refused with one line, by the target's check_file and by `compressor
bench FILE.xml` (exit 2, no traceback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import targets
from compressor.errors import ArtifactError
from hostile_cli import refused

FAST = ["--runs", "3", "--warmup", "0", "--warmup-s", "0", "--no-isolate"]


@pytest.fixture(scope="module")
def ir(tmp_path_factory, digits_model) -> Path:
    out = tmp_path_factory.mktemp("ov-hostile")
    return targets.get("openvino").export(digits_model, None, out / "digits", {}, None).path


def _damaged(ir: Path, tmp_path: Path, xml=None, weights=None, keep_bin=True) -> Path:
    """A copy of `ir` in tmp_path with its .xml and/or .bin bytes replaced."""
    xml_path, bin_path = tmp_path / "m.xml", tmp_path / "m.bin"
    xml_path.write_bytes(xml(ir.read_bytes()) if xml else ir.read_bytes())
    if keep_bin:
        src = ir.with_suffix(".bin").read_bytes()
        bin_path.write_bytes(weights(src) if weights else src)
    return xml_path


CASES = {
    "empty .xml": (dict(xml=lambda b: b""), "the file is empty"),
    "truncated .xml": (dict(xml=lambda b: b[: len(b) // 2]), "OpenVINO cannot read it"),
    "not an IR": (dict(xml=lambda b: b"<html><body>hello</body></html>"), "not an OpenVINO IR"),
    "binary junk .xml": (dict(xml=lambda b: bytes(range(256)) * 8), "not an OpenVINO IR"),
    "truncated .bin": (dict(weights=lambda b: b[: len(b) // 3]), "OpenVINO cannot read it"),
    "empty .bin": (dict(weights=lambda b: b""), "OpenVINO cannot read it"),
    "missing .bin": (dict(keep_bin=False), "its weights file 'm.bin' is missing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_file_refuses_a_damaged_ir_in_one_line(ir, tmp_path, case):
    kwargs, says = CASES[case]
    path = _damaged(ir, tmp_path, **kwargs)
    with pytest.raises(ArtifactError) as e:
        targets.get("openvino").check_file(path)
    assert len(str(e.value).splitlines()) == 1 and says in str(e.value), str(e.value)


@pytest.mark.parametrize("case", ["truncated .xml", "truncated .bin", "missing .bin", "empty .xml"])
def test_bench_refuses_a_damaged_ir_with_exit_2(ir, tmp_path, capsys, case):
    kwargs, says = CASES[case]
    refused(capsys, "bench", _damaged(ir, tmp_path, **kwargs), *FAST, says=says)


def test_bench_of_a_missing_xml_is_one_line(tmp_path, capsys):
    refused(capsys, "bench", tmp_path / "nothing.xml", *FAST, says="no such file")


def test_bench_measures_a_sound_ir(ir, tmp_path, capsys):
    from hostile_cli import cli

    copy = tmp_path / "ok.xml"
    shutil.copy(ir, copy)
    shutil.copy(ir.with_suffix(".bin"), copy.with_suffix(".bin"))
    code, out, err = cli(capsys, "bench", copy, *FAST)
    assert code == 0, err


def test_a_feed_of_the_wrong_rank_is_one_input_shape_line(ir):
    import numpy as np

    from compressor.errors import InputShapeError
    from targets.base import Device

    session = targets.get("openvino").open_session(ir, Device(), 1)
    with pytest.raises(InputShapeError) as e:
        session.run({"pixels": np.zeros((2, 8, 8), np.float32)})
    assert len(str(e.value).splitlines()) == 1 and "inputs do not fit the model" in str(e.value)
    with pytest.raises(InputShapeError, match="it takes \\['pixels'\\]"):
        session.run({"image": np.zeros((1, 1, 8, 8), np.float32)})
