"""Loading and running `.pt2` archives: an ExportedProgram (torch.export.load) or an
AOTInductor package (torch._inductor.aoti_load_package), ours or anybody's."""

from __future__ import annotations

import json
from pathlib import Path

from compressor.errors import ArtifactError, first_line
from targets.base import Device
from targets.torch_archive import META_NAME, TorchSession, open_zip, parse_meta, specs_from, \
    unrecorded_inputs


def check_program_file(path: Path) -> None:
    names = open_zip(path, ".pt2")
    if not any(n.endswith("archive_format") for n in names) or not any("/models/" in n for n in names):
        raise ArtifactError(f"{path}: not a torch.export archive (no archive_format or models/ entry)")


def check_package_file(path: Path) -> None:
    names = open_zip(path, "AOTInductor package")
    if not any("/data/aotinductor/" in n for n in names):
        raise ArtifactError(f"{path}: not an AOTInductor package (no data/aotinductor/ entry); "
                            "an ExportedProgram .pt2 is benchmarked under the name NAME.pt2")


def _register_quantized_ops() -> None:
    # A PT2E graph calls quantized_decomposed ops, which are registered on import;
    # torch.export.load fails to resolve them otherwise.
    import torch.ao.quantization.fx._decomposed  # noqa: F401


def open_program(path: Path, device: Device, threads: int) -> TorchSession:
    import torch

    from targets.pt2.export import quiet
    from targets.torch_archive import torch_device

    torch.set_num_threads(threads)
    _register_quantized_ops()
    extra = {META_NAME: ""}
    try:
        with quiet():
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:
        raise ArtifactError(f"{path}: torch.export.load cannot load it ({type(e).__name__}: {first_line(e)})") from None
    meta = parse_meta(extra[META_NAME])
    module = program.module().to(torch_device(device))
    if meta is not None:
        inputs, outputs = specs_from(meta), list(meta["output_names"])
    else:  # a program we did not make: shapes come from its example placeholders
        inputs, outputs = _program_inputs(program), [s.arg.name for s in program.graph_signature.output_specs]
    return TorchSession(module, inputs, outputs, device, runtime=f"torch.export {torch.__version__} (eager)",
                        provider="CPU" if device.kind == "cpu" else "CUDA")


def _program_inputs(program) -> list:
    from torch.export.graph_signature import InputKind

    from targets.base import TensorSpec

    user = {s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            shape = tuple(int(d) if str(d).isdigit() else "batch" if i == 0 else str(d)
                          for i, d in enumerate(getattr(val, "shape", ())))
            specs.append(TensorSpec(node.name, shape, str(val.dtype).removeprefix("torch.") if val is not None
                                    else "float32"))
    return specs


def open_package(path: Path, device: Device, threads: int) -> TorchSession:
    import torch
    from torch._inductor import aoti_load_package

    from targets.pt2.export import quiet

    torch.set_num_threads(threads)
    try:
        with quiet():
            loaded = aoti_load_package(str(path), device_index=device.index if device.kind == "cuda" else -1)
    except Exception as e:
        raise ArtifactError(f"{path}: aoti_load_package cannot load it ({type(e).__name__}: {first_line(e)})") from None
    stored = loaded.get_metadata().get(META_NAME)
    meta = parse_meta(stored)
    if meta is not None:
        inputs, outputs = specs_from(meta), list(meta["output_names"])
    else:
        inputs, outputs = unrecorded_inputs(["input"]), ["output"]
    return TorchSession(loaded, inputs, outputs, device, runtime=f"AOTInductor {torch.__version__}",
                        provider="CPU (compiled)" if device.kind == "cpu" else "CUDA (compiled)", dense_strides=True)


def encode_meta(meta: dict) -> dict[str, str]:
    """AOTInductor package metadata holds strings only."""
    return {META_NAME: json.dumps(meta)}
