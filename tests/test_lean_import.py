"""Importing the toolchain stays cheap: no TensorFlow, no torch for the CLI and the
registry, and never an initialised CUDA context."""

import json
import subprocess
import sys


def run_python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_registry_and_harness_import_neither_tensorflow_nor_torch():
    got = run_python(
        "import json, sys\n"
        "import compressor, compressor.flows.cli, targets, benchmarks.harness\n"
        "print(json.dumps({m: m in sys.modules for m in ('tensorflow', 'torch', 'onnxruntime', 'openvino', 'nncf', "
        "'executorch')}))")
    assert got == {"tensorflow": False, "torch": False, "onnxruntime": False, "openvino": False, "nncf": False,
                   "executorch": False}


def test_pipeline_import_does_not_initialise_cuda_or_import_tensorflow():
    got = run_python(
        "import json, sys\n"
        "import compressor.flows.run\n"
        "import torch\n"
        "print(json.dumps({'cuda': torch.cuda.is_initialized(), 'tf': 'tensorflow' in sys.modules}))")
    assert got == {"cuda": False, "tf": False}
