"""The target registry. Targets register by name; an unknown name lists the known
ones and a second registration under one name is an error."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import ArtifactError, RecipeError
from targets.base import Artifact, Device, Session, Target, TargetOptions, TensorSpec

_REGISTRY: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in _REGISTRY:
        raise ValueError(f"target {target.name!r} is already registered by "
                         f"{type(_REGISTRY[target.name]).__module__}")
    _REGISTRY[target.name] = target
    return target


def get(name: str) -> Target:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RecipeError(f"unknown target {name!r}; known targets: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def option_models() -> dict[str, type[TargetOptions]]:
    return {name: t.options_model for name, t in _REGISTRY.items()}


def for_file(path: Path) -> Target:
    """The target whose runtime loads `path`, chosen by its longest matching suffix
    (so that '.aoti.pt2' can belong to another target than '.pt2')."""
    matches = [(len(s), t) for t in _REGISTRY.values() for s in t.suffixes if str(path).endswith(s)]
    if matches:
        return max(matches, key=lambda m: m[0])[1]
    known = sorted(s for t in _REGISTRY.values() for s in t.suffixes)
    raise ArtifactError(f"{path}: unknown artifact type; the benchmark loads {', '.join(known)} files")


# The built-in targets: (module, class). Importing a target module is cheap: each keeps
# its runtime and converter imports inside its functions.
BUILTIN = (
    ("targets.onnx", "OnnxTarget"),
    ("targets.torchscript", "TorchScriptTarget"),
    ("targets.pt2", "ExportedProgramTarget"),
    ("targets.pt2", "AotInductorTarget"),
    ("targets.tflite", "TFLiteTarget"),
    ("targets.openvino", "OpenVinoTarget"),
    ("targets.executorch", "ExecuTorchTarget"),
)


def _register_builtin() -> None:
    import importlib
    import importlib.util

    for module_name, cls_name in BUILTIN:
        spec = importlib.util.find_spec(module_name)
        if spec is None or spec.origin in (None, "namespace"):
            continue  # not in this checkout, or a folder without its __init__ yet
        register(getattr(importlib.import_module(module_name), cls_name)())


_register_builtin()

__all__ = ["Artifact", "Device", "Session", "Target", "TargetOptions", "TensorSpec",
           "register", "get", "names", "option_models", "for_file"]
