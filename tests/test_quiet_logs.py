"""Third-party logs stay off the terminal and go to the run's log: Python records, Python
warnings and native writes to file descriptor 2, in fresh processes (a library imported
by an earlier test would not log again)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes import digits_head

ROOT = Path(__file__).resolve().parents[1]
COMPRESSOR = Path(sys.executable).with_name("compressor")

PROBE = """
import logging, os, warnings
from compressor.logs import cli_done, native_stderr, quiet_cli, run_log_text
quiet_cli()
assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
logging.basicConfig(level=logging.WARNING)   # what ExecuTorch's partitioner does at import
logging.getLogger("some.library").warning("a library's warning")
logging.getLogger("some.library").info("a library's notice")
warnings.warn("a deprecation, say")
with native_stderr(log_as="native"):
    os.write(2, b"I0000 00:00:17 port.cc:153] a native line\\n")
logging.getLogger("some.library").error("a real error")
print(run_log_text("probe"))
cli_done()
assert run_log_text("after") is None
"""


def test_records_warnings_and_native_lines_go_to_the_log_and_only_errors_to_the_terminal():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "HF_HUB_DISABLE_PROGRESS_BARS")}
    got = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert got.returncode == 0, got.stderr
    assert got.stderr == "some.library: a real error\n"
    log = got.stdout
    assert log.startswith("# probe, written ")
    for text in ("WARNING some.library: a library's warning", "INFO some.library: a library's notice",
                 "WARNING py.warnings:", "a deprecation, say", "INFO native: I0000 00:00:17 port.cc:153] a native line",
                 "ERROR some.library: a real error"):
        assert text in log, (text, log)


def test_a_users_own_setting_of_a_library_variable_is_kept():
    code = "import os; from compressor.logs import quiet_cli; quiet_cli(); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"})
    assert got.stdout.strip() == "1"


@pytest.mark.slow
def test_a_tflite_run_prints_only_our_lines_and_keeps_tensorflow_s_in_run_log(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(digits_head("quiet", calibration=32, evaluation=100) + """\
steps:
  - quantize: {variants: [{mode: static}]}
targets: [tflite]
benchmark: {batch_sizes: [1], runs: 5, warmup: 1, warmup_s: 0, memory: false}
""")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TORCH_CPP_LOG_LEVEL")}
    got = subprocess.run([str(COMPRESSOR), "run", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert got.returncode == 0, got.stderr
    for noise in ("I0000", "absl::InitializeLog", "oneDNN", "WARNING:", "W1203", "UserWarning", "FutureWarning"):
        assert noise not in got.stderr and noise not in got.stdout, (noise, got.stderr)
    log = (tmp_path / "run" / "run.log").read_text()
    assert log.startswith("# compressor run quiet, written ")
    assert "oneDNN custom operations are on" in log                  # TensorFlow's import, kept
    assert "tflite/int8-static" in got.stdout                        # our own table is there
    import json

    listed = [r["file"] for r in json.loads((tmp_path / "run" / "manifest.json").read_text())["reports"]]
    assert "run.log" in listed
