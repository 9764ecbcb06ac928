"""`compressor bench --device` over a real OpenSSH server on loopback, logged in as a
separate user whose Python has only numpy and the runtimes: ONNX and TFLite artifacts of
the digits CNN measured there and here, outputs and accuracy compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sshd import write_devices_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli, one_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, digits_model, calibration_data) -> dict[str, Path]:
    """ONNX fp32 and static int8, TFLite fp32, int8 with float io and with int8 io."""
    import targets
    from compressor.config.quantize import QuantVariant

    out = tmp_path_factory.mktemp("device-artifacts")
    files = {}
    for tname in ("onnx", "tflite"):
        t = targets.get(tname)
        base = t.export(digits_model, None, out / f"{tname}.fp32", {}, calibration_data)
        files[f"{tname}-fp32"] = base.path
        files[f"{tname}-int8"] = t.export(digits_model, QuantVariant(mode="static"), out / f"{tname}.int8",
                                          {}, calibration_data, base=base).path
    lite = targets.get("tflite")
    files["tflite-int8io"] = lite.export(digits_model, QuantVariant(name="int8-io", mode="static"),
                                         out / "tflite.int8io", {"io": "int8"}, calibration_data,
                                         base=lite.export(digits_model, None, out / "b.fp32", {}, None)).path
    return files


@pytest.fixture(scope="module")
def eval_npz(tmp_path_factory, digits_test) -> Path:
    x, y = digits_test
    path = tmp_path_factory.mktemp("eval") / "digits.npz"
    np.savez(path, pixels=x, labels=y)
    return path


def inventory(tmp_path: Path, sshd, **extra) -> tuple[Path, Path]:
    """devices.yaml naming the server as 'loop', with a work folder we can look into."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    work = Path(extra.pop("workdir")) if "workdir" in extra else \
        sshd.device_dir(f"{tmp_path.parent.name[:30]}-{tmp_path.name[:10]}")
    return write_devices_yaml(tmp_path / "devices.yaml", sshd, workdir=str(work), **extra), work


def test_onnx_and_tflite_over_ssh_match_local_outputs_and_accuracy(capsys, tmp_path, separate_user, artifacts,
                                                                  eval_npz):
    devices, work = inventory(tmp_path, separate_user, threads=1)
    out = tmp_path / "bench.json"
    code, stdout, err = cli(capsys, "bench", *artifacts.values(), "--device", "loop", "--device", "local",
                            "--devices", devices, "--eval-data", eval_npz, "--threads", "1", "--runs", "30",
                            "--warmup", "3", "--json", out)
    assert code == 0, err
    report = json.loads(out.read_text())
    rows = {(Path(r["file"]).name, r["device"]): r for r in report["results"]}
    assert len(rows) == 2 * len(artifacts)
    for f in artifacts.values():
        here, there = rows[(f.name, "local")]["metrics"], rows[(f.name, "loop")]
        m = there["metrics"]
        # The same x86 kernels on both sides: the same predictions, outputs equal to float noise.
        assert m["accuracy"] == pytest.approx(here["accuracy"], abs=1e-9) and m["accuracy"] > 0.9
        assert m["eval_samples"] == here["eval_samples"] == 450
        assert there["vs_local"]["cosine_mean"] > 0.99999 and there["vs_local"]["max_abs"] < 1e-3
        lat = m["latency"][0]
        assert lat["runs"] >= 30 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert m["load_s"] > 0 and m["first_inference_ms"] > 0 and m["peak_rss_mb"] > m["baseline_rss_mb"] > 5
        assert m["size_bytes"] == here["size_bytes"] and m["threads"] == 1
        assert m["runtime"].startswith("onnxruntime " if f.suffix == ".onnx" else "ai-edge-litert ")
    loop = report["devices"]["loop"]
    assert loop["kind"] == "ssh" and loop["arch"] == "x86_64" and loop["emulated"] is False
    assert loop["python"] == ".".join(map(str, sys.version_info[:2])) or loop["python"].count(".") == 2
    assert "local and loop are one machine" in " ".join(loop["notes"])
    assert list(work.iterdir()) == []  # the work folder is gone
    assert "p50 ms at batch 1, side by side" in stdout


def test_probe_names_the_runtimes_and_the_machine(capsys, tmp_path, sshd):
    import onnxruntime

    devices, _ = inventory(tmp_path, sshd)
    code, stdout, err = cli(capsys, "devices", "probe", "loop", "--devices", devices, "--json")
    assert code == 0, err
    probe = json.loads(stdout)["loop"]
    assert probe["runtimes"]["onnxruntime"] == onnxruntime.__version__ and "numpy" in probe["runtimes"]
    assert probe["arch"] == "x86_64" and probe["cores"] == os.cpu_count() and probe["memory_gb"] > 0
    assert probe["python"].startswith("3.") and probe["os"].startswith("Linux ")
    assert "torch" not in probe["runtimes"] and "compressor" not in json.dumps(probe["runtimes"])
    code, stdout, err = cli(capsys, "devices", "probe", "loop", "--devices", devices)
    assert code == 0 and "loop" in stdout and "x86_64" in stdout


def refused(capsys, tmp_path, sshd, artifacts, *needles, code=2, **extra):
    devices, work = inventory(tmp_path, sshd, **extra)
    got, stdout, err = cli(capsys, "bench", artifacts["onnx-fp32"], "--device", "loop", "--devices", devices,
                           "--runs", "5", "--warmup", "1")
    assert got == code, (stdout, err)
    text = stdout + err
    for needle in needles:
        assert needle in text, text
    assert list(work.iterdir()) == []
    return err


def test_wrong_key_is_refused_in_one_line(capsys, tmp_path, sshd, artifacts):
    text = refused(capsys, tmp_path, sshd, artifacts, "refused the key", "ssh-copy-id",
                   identity_file=str(sshd.other_identity()))
    assert one_line(text).startswith("compressor: error: loop: compressor-dev@127.0.0.1 refused the key")


def test_unknown_host_key_is_refused_with_how_to_accept(capsys, tmp_path, sshd, artifacts):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    refused(capsys, tmp_path, sshd, artifacts, "is not in", "compressor devices trust loop", known_hosts=str(empty))


def test_changed_host_key_is_refused(capsys, tmp_path, sshd, artifacts):
    refused(capsys, tmp_path, sshd, artifacts, "has CHANGED", "ssh-keygen",
            known_hosts=str(sshd.wrong_known_hosts()))


def test_trust_adds_the_key_after_showing_its_fingerprint(capsys, tmp_path, sshd, artifacts):
    kh = tmp_path / "kh"
    kh.write_text("# mine\n")
    devices, _ = inventory(tmp_path, sshd, known_hosts=str(kh))
    code, stdout, err = cli(capsys, "devices", "trust", "loop", "--devices", devices, "--yes")
    assert code == 0 and "SHA256:" in stdout, err
    assert kh.read_text().startswith("# mine\n") and f"[127.0.0.1]:{sshd.port} ssh-ed25519" in kh.read_text()
    code, _, err = cli(capsys, "devices", "probe", "loop", "--devices", devices)
    assert code == 0, err


def test_unreachable_device_is_one_line(capsys, tmp_path, fresh_sshd, artifacts):
    fresh_sshd.kill()
    text = refused(capsys, tmp_path, fresh_sshd, artifacts, "loop: cannot reach 127.0.0.1", connect_timeout_s=3)
    assert "Traceback" not in text


def test_missing_python_numpy_and_runtime_name_what_to_install(capsys, tmp_path, sshd, artifacts):
    refused(capsys, tmp_path / "a", sshd, artifacts, "there is no /opt/nowhere/python3", python="/opt/nowhere/python3")
    refused(capsys, tmp_path / "b", sshd, artifacts, "numpy is missing", "-m pip install numpy",
            python=str(sshd.python_empty))
    refused(capsys, tmp_path / "c", sshd, artifacts, "onnxruntime is missing", "-m pip install onnxruntime",
            python=str(sshd.python_bare))


def test_full_disk_on_the_device(capsys, tmp_path, sshd, artifacts, tmpfs_workdir):
    small = tmpfs_workdir(96)  # the runner fits, the 270 KB artifact does not
    refused(capsys, tmp_path / "a", sshd, artifacts, "MB free", "free some space", workdir=str(small))
    tiny = tmpfs_workdir(8)  # not even the runner
    text = refused(capsys, tmp_path / "b", sshd, artifacts, "No space left on device", workdir=str(tiny))
    assert list(small.iterdir()) == [] and list(tiny.iterdir()) == []
    assert "Traceback" not in text


def test_a_device_not_in_the_inventory_names_the_closest(capsys, tmp_path, sshd, artifacts):
    devices, _ = inventory(tmp_path, sshd)
    code, _, err = cli(capsys, "bench", artifacts["onnx-fp32"], "--device", "lop", "--devices", devices)
    assert code == 2 and "device 'lop' is not in the inventory" in err and "did you mean 'loop'?" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # more than 15 s on 2 cores
def test_sshd_killed_mid_run_fails_that_device_and_the_others_finish(tmp_path, fresh_sshd, artifacts):
    """Two devices: 'loop' loses its server while it measures; 'here' (this machine, no
    network) finishes. Exit 2, loop's rows failed with the reason."""
    work = fresh_sshd.device_dir("killed")
    devices = write_devices_yaml(tmp_path / "devices.yaml", fresh_sshd, workdir=str(work), connect_timeout_s=3,
                                 affinity=[0])
    with open(devices, "a") as f:
        f.write("  here:\n    url: local\n    affinity: [1]\n")
    out = tmp_path / "b.json"
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "bench", artifacts["onnx-fp32"],
                             artifacts["tflite-fp32"], "--device", "loop", "--device", "here", "--devices", devices,
                             "--min-time-s", "6", "--runs", "10", "--json", out], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith("compressor-") for p in work.iterdir()), 60)
    time.sleep(3)  # measuring by now
    fresh_sshd.kill_all()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, (stdout, stderr)
    report = json.loads(out.read_text())
    rows = {(Path(r["file"]).suffix, r["device"]): r for r in report["results"]}
    assert all(rows[(s, "here")]["metrics"] for s in (".onnx", ".tflite"))
    for s in (".onnx", ".tflite"):
        err = rows[(s, "loop")]["error"]
        assert err.startswith("loop: ") and ("dropped" in err or "cannot reach" in err), err
    assert "Traceback" not in stderr


def test_a_dropped_connection_is_retried_once_and_the_device_finishes(tmp_path, fresh_sshd, artifacts):
    work = fresh_sshd.device_dir("retried")
    devices = write_devices_yaml(tmp_path / "devices.yaml", fresh_sshd, workdir=str(work))
    out = tmp_path / "b.json"
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "bench", artifacts["onnx-fp32"], "--device", "loop",
                             "--devices", devices, "--min-time-s", "4", "--runs", "10", "--json", out], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith("compressor-") for p in work.iterdir()), 60)
    time.sleep(2)
    fresh_sshd.restart()  # every session cut; the server is back on the same port
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, (stdout, stderr)
    report = json.loads(out.read_text())
    assert report["results"][0]["metrics"]["latency"][0]["runs"] >= 10
    assert any("the connection dropped once" in n for n in report["devices"]["loop"]["notes"])
    assert list(work.iterdir()) == []


def test_a_pause_between_artifacts_is_kept(capsys, tmp_path, sshd, artifacts):
    """cooldown {mode: pause}: 2 artifacts x 2 rounds = 3 pauses of 1.5 s between rounds."""
    devices, _ = inventory(tmp_path, sshd, cooldown={"mode": "pause", "seconds": 1.5})
    start = time.perf_counter()
    code, _, err = cli(capsys, "bench", artifacts["onnx-fp32"], artifacts["onnx-int8"], "--device", "loop",
                       "--devices", devices, "--rounds", "2", "--runs", "4", "--warmup", "1", "--warmup-s", "0")
    assert code == 0, err
    assert time.perf_counter() - start > 4.5


@pytest.mark.slow  # over 30 s: `make test-slow` and CI run it
def test_ctrl_c_stops_and_leaves_nothing_on_the_device(tmp_path, sshd, artifacts):
    devices, work = inventory(tmp_path, sshd)
    proc = subprocess.Popen([sys.executable, "-m", "compressor", "bench", artifacts["onnx-fp32"], "--device", "loop",
                             "--devices", devices, "--min-time-s", "30"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith("compressor-") for p in work.iterdir()), 60)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    _wait_for(lambda: list(work.iterdir()) == [], 15)  # the runner removed its folder when its stdin closed
    left = subprocess.run(["pgrep", "-u", sshd.user, "-f", "runner.py"], capture_output=True, text=True).stdout
    assert left.strip() == ""


def _wait_for(condition, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_given_inputs_feed_the_remote_device_as_they_feed_this_machine(capsys, tmp_path, separate_user):
    """--inputs token ids and a --value scalar reach the device: the files (whose table
    refuses generated ids) run there, each with its own --shape FILE: time axis, with
    outputs equal to here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from given_models import VOCAB, audio_model

    rate, plain = audio_model(tmp_path / "audio.onnx"), audio_model(tmp_path / "plain.onnx", with_rate=False)
    ids = np.random.default_rng(2).integers(0, VOCAB, size=(3, 4))
    np.savez(tmp_path / "ids.npz", ids=ids, state=np.full((2, 3), 0.5, np.float32))
    devices, _ = inventory(tmp_path, separate_user, threads=1)
    out = tmp_path / "given.json"
    code, _, err = cli(capsys, "bench", rate, plain, "--device", "loop", "--device", "local", "--devices", devices,
                       "--inputs", tmp_path / "ids.npz", "--value", "sample_rate=16000",
                       "--shape", "audio.onnx:audio=1x64", "--shape", "plain.onnx:audio=1x32",
                       "--runs", "5", "--warmup", "1", "--json", out)
    assert code == 0, err
    rows = {(Path(r["file"]).name, r["device"]): r for r in json.loads(out.read_text())["results"]}
    assert len(rows) == 4 and all(r["error"] is None for r in rows.values()), rows
    for name in ("audio.onnx", "plain.onnx"):
        there = rows[(name, "loop")]
        assert there["metrics"]["latency"][0]["p50_ms"] > 0
        assert there["vs_local"]["max_abs"] < 1e-3
