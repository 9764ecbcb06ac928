"""The device runner's OpenVINO and ExecuTorch sessions (standard library, numpy and the
runtime: nothing of this project on a device), against the host's own sessions of the
same files, and an OpenVINO IR measured over a real SSH server as a device would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sshd import write_devices_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli  # noqa: E402


@pytest.fixture(scope="module")
def irs(tmp_path_factory, digits_model, calibration_data) -> dict:
    import targets
    from compressor.config.quantize import QuantVariant

    out = tmp_path_factory.mktemp("ov-device")
    ov = targets.get("openvino")
    base = ov.export(digits_model, None, out / "digits.fp32", {}, None)
    return {"fp32": base, "int8": ov.export(digits_model, QuantVariant(mode="static"), out / "digits.int8", {},
                                            calibration_data, base=base)}


def test_the_runner_runs_an_openvino_ir_as_the_host_does(irs, digits_test):
    import targets
    from benchmarks.devices.runner.sessions import open_session
    from targets.base import Device

    x = digits_test[0][:70]
    for art in irs.values():
        there = open_session("openvino", str(art.path), 1)
        here = targets.get("openvino").open_artifact(art, Device(), 1)
        assert [(n, d) for n, _, d in there.inputs] == [("pixels", "float32")]
        assert there.inputs[0][1] == ("batch", 1, 8, 8) and there.output_names == ["logits"]
        assert there.runtime.startswith("openvino 20")
        for batch in (1, 70):  # a dynamic batch compiled for the feed's shape, twice
            got, want = there.run({"pixels": x[:batch]})[0], here.run({"pixels": x[:batch]})[0]
            assert got.shape == (batch, 10) and np.abs(got - want).max() < 1e-5


@pytest.mark.slow
def test_the_runner_runs_an_executorch_program_as_the_host_does(tmp_path, digits_model, calibration_data,
                                                                 digits_test):
    import targets
    from benchmarks.devices.runner.sessions import open_session
    from compressor.config.quantize import QuantVariant
    from targets.base import Device

    et = targets.get("executorch")
    base = et.export(digits_model, None, tmp_path / "d.fp32", {}, None)
    int8 = et.export(digits_model, QuantVariant(mode="static"), tmp_path / "d.int8", {}, calibration_data, base=base)
    x = digits_test[0][:150]  # past max_batch (64): the runner runs it in chunks, as the host does
    for art in (base, int8):
        there = open_session("executorch", str(art.path), 1)
        here = et.open_artifact(art, Device(), 1)
        assert there.inputs[0][0] == "pixels" and there.output_names == ["logits"]
        assert there.runtime.startswith("executorch ") and there.max_batch == 64
        got, want = there.run({"pixels": x})[0], here.run({"pixels": x})[0]
        assert got.shape == (150, 10) and np.abs(got - want).max() < 1e-5


def test_an_openvino_ir_over_ssh_matches_this_machine(capsys, tmp_path, separate_user, irs, digits_test):
    x, y = digits_test
    np.savez(tmp_path / "eval.npz", pixels=x, labels=y)
    work = separate_user.device_dir(f"ov-{tmp_path.name[:10]}")
    devices = write_devices_yaml(tmp_path / "devices.yaml", separate_user, workdir=str(work), threads=1)
    out = tmp_path / "bench.json"
    code, _, err = cli(capsys, "bench", irs["int8"].path, "--device", "loop", "--device", "local", "--devices",
                       devices, "--eval-data", tmp_path / "eval.npz", "--threads", "1", "--runs", "20",
                       "--warmup", "2", "--json", out)
    assert code == 0, err
    rows = {r["device"]: r for r in json.loads(out.read_text())["results"]}
    there, here = rows["loop"], rows["local"]
    assert there["metrics"]["runtime"].startswith("openvino ")
    assert there["metrics"]["size_bytes"] == here["metrics"]["size_bytes"] == irs["int8"].size_bytes  # .xml + .bin
    assert there["metrics"]["accuracy"] == pytest.approx(here["metrics"]["accuracy"], abs=1e-9)
    assert here["metrics"]["accuracy"] > 0.9
    assert there["vs_local"]["cosine_mean"] > 0.99999
    assert list(work.iterdir()) == []
