"""What machine and libraries a run used: recorded in every manifest and report."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from importlib import metadata

LIBRARIES = ("compressor", "torch", "torchvision", "torchao", "onnx", "onnxscript", "onnxruntime",
             "onnxruntime-gpu", "numpy", "scikit-learn", "safetensors", "pydantic", "pyyaml",
             "tensorflow", "tensorflow-cpu", "ai-edge-litert", "litert-torch", "torch-pruning",
             "neural-compressor-pt", "optuna", "openvino", "nncf", "executorch")
# The CPU flags that decide which int8/fp16 kernels a runtime can use.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "amx_int8", "amx_bf16", "avx512_fp16", "f16c", "asimd", "asimddp", "i8mm", "sve")


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "arch": platform.machine(), "logical_cores": os.cpu_count(),
            "kernel_flags": [f for f in KERNEL_FLAGS if f in flags]}


def machine() -> dict:
    return {"cpu": cpu_info(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "host": hashlib.sha256(platform.node().encode()).hexdigest()[:12]}
