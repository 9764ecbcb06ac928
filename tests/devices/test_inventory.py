"""The device inventory: strict like the recipe, found by name with the closest one
suggested, edited by `devices add/remove` without losing the user's comments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.devices.inventory import Inventory, user_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from hostile_cli import cli, one_line  # noqa: E402


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    """No user's devices file leaks in; ./devices.yaml is the test's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("COMPRESSOR_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "devices.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,needle", [
    ("version: 1\ndevices:\n  pi5:\n    url: ssh://pi@h\n    treads: 4\n",
     "devices.yaml:5: unknown key 'treads' in devices.pi5; did you mean 'threads'?"),
    ("version: 1\ndevices:\n  pi5: {url: 'http://h'}\n", "use ssh://[user@]host[:port] or local"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://h:0'}\n", "the port must be a number from 1 to 65535"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://u:secret@h'}\n", "no password"),
    ("version: 1\ndevices:\n  pi5: {url: 'adb://R58M'}\n", "adb:// devices are not supported yet"),
    ("version: 1\ndevices:\n  local: {url: local}\n", "'local' is this machine and cannot be redefined"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://h', threads: 0}\n", "threads"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://h', affinity: [0, 0]}\n", "lists each CPU once"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://h', workdir: tmp}\n", "an absolute path on the device"),
    ("version: 1\ndevices:\n  pi5: {url: 'ssh://h', cooldown: {mode: cool}}\n", "cooldown.mode"),
    ("version: 1\ndevices:\n  'bad name': {url: 'ssh://h'}\n", "bad name"),
    ("version: 2\ndevices: {}\n", "version: Input should be 1"),
    ("devices: [pi5]\n", "version"),
    ("version: 1\ndevices:\n  pi5: {url: ssh://h}\n  pi5: {url: ssh://g}\n", "appears twice"),
])
def test_a_broken_devices_file_is_one_line_exit_2(capsys, tmp_path, text, needle):
    devices = write(tmp_path, text)
    code, _, err = cli(capsys, "devices", "list", "--devices", devices)
    assert code == 2 and needle in one_line(err), err


def test_unknown_device_names_the_closest_and_how_to_add_it(tmp_path):
    write(tmp_path, "version: 1\ndevices:\n  jetson-orin: {url: 'ssh://nv@10.0.0.3'}\n")
    with pytest.raises(Exception) as e:
        Inventory().get("jetson-orn")
    assert "did you mean 'jetson-orin'?" in str(e.value) and "compressor devices add jetson-orn" in str(e.value)


def test_the_project_file_overrides_the_users_by_name(tmp_path):
    user_file().parent.mkdir(parents=True)
    user_file().write_text("version: 1\ndevices:\n  pi5: {url: 'ssh://pi@user'}\n  nano: {url: 'ssh://a@b'}\n")
    write(tmp_path, "version: 1\ndevices:\n  pi5: {url: 'ssh://pi@project', threads: 4}\n")
    inv = Inventory()
    assert inv.get("pi5").spec.url == "ssh://pi@project" and inv.get("pi5").spec.threads == 4
    assert inv.get("nano").source == user_file() and inv.get("local").is_local


def test_add_and_remove_keep_comments_and_read_back(capsys, tmp_path):
    devices = write(tmp_path, "# my lab\nversion: 1\ndevices:\n  # the old board\n  pi4: {url: 'ssh://pi@h4'}\n")
    code, out, err = cli(capsys, "devices", "add", "pi5", "ssh://pi@192.168.1.20", "--python", "/opt/venv/bin/python",
                         "--threads", "4", "--file", devices)
    assert code == 0 and "added pi5" in out, err
    text = devices.read_text()
    assert text.startswith("# my lab\n") and "# the old board" in text
    inv = Inventory(devices)
    assert inv.get("pi5").spec.python == "/opt/venv/bin/python" and inv.get("pi4").spec.url == "ssh://pi@h4"
    code, _, err = cli(capsys, "devices", "add", "pi5", "ssh://pi@other", "--file", devices)
    assert code == 2 and "already defined" in one_line(err) and "--replace" in err
    code, _, err = cli(capsys, "devices", "add", "pi6", "ftp://x", "--file", devices)
    assert code == 2 and "use ssh://" in one_line(err)
    assert "pi6" not in devices.read_text()  # a refused add leaves the file as it was
    code, _, _ = cli(capsys, "devices", "remove", "pi4", "--file", devices)
    assert code == 0 and "pi4" not in devices.read_text() and "# my lab" in devices.read_text()
    assert list(Inventory(devices).devices) == ["local", "pi5"]


def test_add_writes_the_users_file_by_default(capsys, tmp_path):
    code, out, _ = cli(capsys, "devices", "add", "box", "ssh://me@box:2200")
    assert code == 0 and user_file().is_file() and Inventory().get("box").spec.url == "ssh://me@box:2200"


def test_a_missing_devices_file_given_by_flag_is_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "bench", tmp_path / "x.onnx", "--device", "pi5", "--devices", tmp_path / "none.yaml")
    assert code == 2 and "no such file" in one_line(err)


def test_a_recipe_naming_an_unknown_device_is_refused_before_anything_runs(capsys, tmp_path):
    from recipes import digits_head

    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits_head("d", calibration=64, evaluation=64) + "steps: []\ntargets: [onnx]\n"
                      "benchmark: {devices: [local, pi9]}\n")
    write(tmp_path, "version: 1\ndevices:\n  pi5: {url: 'ssh://pi@h'}\n")
    code, _, err = cli(capsys, "run", recipe, "--out", tmp_path / "out")
    assert code == 2 and "device 'pi9' is not in the inventory" in one_line(err) and "pi5" in err
    assert not (tmp_path / "out").exists()
