"""Loading and running a TorchScript archive with torch.jit.load, ours or anybody's."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import ArtifactError, ExportError, first_line
from targets.base import Device
from targets.torch_archive import META_NAME, TorchSession, open_zip, parse_meta, specs_from, \
    unrecorded_inputs


def check_torchscript_file(path: Path) -> None:
    names = open_zip(path, "TorchScript")
    if not any("/code/" in n for n in names):
        hint = ("a torch.save checkpoint (a pickle), not a TorchScript module; export the model "
                "with a recipe instead") if any(n.endswith("data.pkl") for n in names) else "not a TorchScript module"
        raise ArtifactError(f"{path}: {hint} (the archive holds no code/ section)")


def load(path: Path, device: Device):
    """(module, stored signature or None). The quantized engine the artifact was
    calibrated for is selected before loading: packed int8 weights are re-packed on load
    for the engine current at that moment."""
    import torch

    from targets.torch_archive import torch_device

    extra = {META_NAME: ""}
    # Read the signature first (the archive is small to reopen) to pick the engine.
    meta = _peek_meta(path)
    engine = (meta or {}).get("quantized_engine")
    if engine:
        torch.backends.quantized.engine = resolve_engine(engine, strict=False)
    try:
        module = torch.jit.load(str(path), map_location=torch_device(device), _extra_files=extra)
    except Exception as e:  # a corrupt archive, or ops this torch build lacks
        raise ArtifactError(f"{path}: torch.jit.load cannot load it ({type(e).__name__}: {first_line(e)})") from None
    return module.eval(), parse_meta(extra[META_NAME])


def resolve_engine(requested: str, strict: bool = True) -> str:
    """The quantized engine to pack int8 weights for on this machine. 'auto': onednn
    where the CPU has VNNI (its depthwise kernels beat fbgemm's at batch 1), else x86.
    A stored engine this torch lacks falls back to 'auto' when loading (not strict)."""
    import torch

    supported = torch.backends.quantized.supported_engines
    if requested != "auto" and requested in supported:
        return requested
    if requested != "auto" and strict:
        raise ExportError(f"quantized engine {requested!r} is not in this torch build ({', '.join(supported)})")
    try:
        vnni = bool(torch.cpu._is_vnni_supported())
    except AttributeError:
        vnni = False
    return "onednn" if vnni and "onednn" in supported else ("x86" if "x86" in supported else supported[-1])


def _peek_meta(path: Path) -> dict | None:
    import zipfile

    with zipfile.ZipFile(path) as z:
        entry = next((n for n in z.namelist() if n.endswith(f"/extra/{META_NAME}")), None)
        return parse_meta(z.read(entry)) if entry else None


def open_torchscript(path: Path, device: Device, threads: int) -> TorchSession:
    import torch

    torch.set_num_threads(threads)
    module, meta = load(path, device)
    if meta is not None:
        inputs, outputs = specs_from(meta), list(meta["output_names"])
        if meta.get("optimize_for_inference") and device.kind == "cpu":
            from targets.torchscript.export import optimize

            module = optimize(module)
    else:  # a file we did not make: the forward schema has the names, not the shapes
        args = [a.name for a in module.forward.schema.arguments[1:]]
        inputs, outputs = unrecorded_inputs(args), ["output"]
    provider = f"{'CPU' if device.kind == 'cpu' else 'CUDA'} (quantized engine {torch.backends.quantized.engine})"
    return TorchSession(module, inputs, outputs, device, runtime=f"torch.jit {torch.__version__}", provider=provider)
