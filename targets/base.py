"""What every export target provides: an exporter, a runtime session and a file check.

Heavy imports (onnxruntime, tensorflow, ...) stay inside the methods of the target that
needs them, so that importing the registry is cheap and the benchmark worker process
loads only the runtime it measures.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # torch-side types, only for annotations
    from compressor.data import Dataset
    from compressor.model import Model
    from compressor.config.quantize import QuantVariant
    from compressor.quant.search import Lowering

# PyTorch module kinds int8 commonly breaks (gates, normalisations, smooth activations):
# what the targets that lower from torch modules try keeping in float by op kind.
TORCH_CASUALTIES = ("Hardsigmoid", "Hardswish", "Sigmoid", "SiLU", "Softmax", "LayerNorm", "GELU")


class TargetOptions(BaseModel):
    """Options a target accepts under `targets: {NAME: {...}}` in a recipe. Strict: no
    unknown keys, no coercion (`dynamic_batch: 1` is not true, `opset: true` not 1), no
    .inf or .nan."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Device:
    """Where an artifact runs. `kind` is 'cpu' or 'cuda'; a session maps it onto its
    runtime's own notion (an execution provider, a delegate)."""

    kind: str = "cpu"
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> "Device":
        kind, _, idx = text.partition(":")
        if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()):
            from compressor.errors import RecipeError
            raise RecipeError(f"device {text!r}: use 'cpu', 'cuda' or 'cuda:N'")
        return cls(kind, int(idx or 0))

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class TensorSpec:
    """A runtime's view of one input: dims are ints, or strings for symbolic dims."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name

    def concrete(self, batch: int, overrides: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
        if self.name in overrides:
            return overrides[self.name]
        dims = []
        for axis, d in enumerate(self.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            elif axis == 0:
                dims.append(batch)  # a symbolic leading axis is the batch
            else:
                from compressor.errors import RecipeError
                raise RecipeError(f"input {self.name!r} has a dynamic dimension {d!r} at axis {axis} "
                                  f"(shape {list(self.shape)}); give it with --shape {self.name}=" +
                                  "x".join(str(x if isinstance(x, int) and x > 0 else "N") for x in self.shape))
        return tuple(dims)

    @property
    def batch_dynamic(self) -> bool:
        return bool(self.shape) and not (isinstance(self.shape[0], int) and self.shape[0] > 0)


class Session(Protocol):
    """A loaded artifact, ready to run. Implementations own their runtime objects."""

    runtime: str           # e.g. "onnxruntime 1.32.0"
    provider: str          # e.g. "CPUExecutionProvider"
    inputs: list[TensorSpec]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class Artifact:
    """One exported file (plus companions such as ONNX external data)."""

    target: str
    label: str             # "fp32", "int8-static", ...
    precision: str         # "fp32" | "fp16" | "int8"
    path: Path
    extra_files: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [self.path, *self.extra_files]

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    @property
    def name(self) -> str:
        return f"{self.target}/{self.label}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["extra_files"] = [str(p) for p in self.extra_files]
        return d


class Target(abc.ABC):
    """An export target: registered by `name`, recognised by file `suffixes`."""

    name: str
    suffixes: tuple[str, ...]
    options_model: type[TargetOptions] = TargetOptions
    # Quantization modes (QuantVariant.mode) this target can lower; others are skipped
    # with a note in the report.
    modes: tuple[str, ...] = ()
    # Formats that can run code when loaded (pickle, TorchScript): a file we did not make
    # is refused unless the user says it is trusted.
    requires_trust: bool = False
    # The quantizer family that simulates this target's int8 lowering in PyTorch (the
    # sensitivity pass) and that QAT fine-tunes under: "x86", "litert" or "fx".
    quantizer_family: str | None = None
    # What the fallback may try besides the default lowering (alternative_lowerings):
    calibration_methods: tuple[str, ...] = ()      # other calibrations of a static lowering
    per_tensor_lowering: bool = False               # per-tensor weights for a per-channel variant
    symmetric_activation_lowering: bool = False     # symmetric activations for a static variant
    float_op_kinds: tuple[str, ...] = ()            # op kinds int8 commonly breaks, kept in float

    @abc.abstractmethod
    def export(self, model: "Model", variant: "QuantVariant | None", out: Path,
               options: "TargetOptions | dict[str, Any]", calibration: "Dataset | None",
               base: Artifact | None = None) -> Artifact:
        """Write the artifact for `variant` (None = fp32) to `out` (a path without the
        suffix); every file appears atomically or not at all. `options` is this target's
        options model (see `options`). `base` is this target's
        fp32 artifact of the same model, which a lowering may start from."""

    @abc.abstractmethod
    def check_file(self, path: Path) -> None:
        """Raise ArtifactError when `path` is missing, empty, truncated or not this format."""

    @abc.abstractmethod
    def open_session(self, path: Path, device: Device, threads: int) -> Session:
        """Load the artifact with this target's runtime on `device`."""

    def options(self, given: "TargetOptions | dict[str, Any]") -> TargetOptions:
        """This target's options: the recipe's (validated when it was read) as they are, a
        plain mapping (a caller of the Python API) validated here."""
        return given if isinstance(given, self.options_model) else self.options_model.model_validate(given)

    def open_artifact(self, artifact: Artifact, device: Device, threads: int) -> Session:
        """Load an artifact this target made, with what its export recorded (a signature)."""
        return self.open_session(artifact.path, device, threads)

    def companion_files(self, path: Path) -> list[Path]:
        """Files that belong to `path` and count towards its size (external data)."""
        return []

    # --- what the int8 fallback asks of a target ------------------------------------

    def alternative_lowerings(self, variant: "QuantVariant", base: Artifact, model: "Model") -> list["Lowering"]:
        """This target's other lowerings of the same intent, in the order the fallback
        tries them: other calibrations, per-tensor weights, symmetric activations, then
        each op kind of `float_op_kinds` the model has kept in float (and all of them)."""
        from compressor.quant.search import Lowering

        out: list[Lowering] = []
        static = variant.mode == "static"
        for method in self.calibration_methods if static else ():
            if variant.calibration != method:
                out.append(Lowering(f"calibration={method}", {"calibration": method}))
        if variant.per_channel and self.per_tensor_lowering:
            out.append(Lowering("per-tensor", {"per_channel": False}))
        if static and not variant.symmetric_activations and self.symmetric_activation_lowering:
            out.append(Lowering("symmetric activations", {"symmetric_activations": True}))
        present = self.op_kinds(base, model)
        kinds = [op for op in self.float_op_kinds if op in present and op not in variant.exclude_ops]
        for op in kinds:
            out.append(Lowering(f"exclude_ops=[{op}]", {"exclude_ops": [*variant.exclude_ops, op]}))
        if len(kinds) > 1:
            out.append(Lowering(f"exclude_ops=[{', '.join(kinds)}]", {"exclude_ops": [*variant.exclude_ops, *kinds]}))
        return out

    def op_kinds(self, base: Artifact, model: "Model") -> set[str]:
        """The op kinds of `model` as `exclude_ops` names them here: its module classes."""
        return {type(m).__name__ for m in model.module.modules()}

    def keeps_float(self, base: Artifact, layer: str) -> bool:
        """Whether keeping `layer` in float changes this target's lowering of the model
        whose fp32 artifact is `base` (whether the exported graph has nodes of it)."""
        return True

    def probe_cache(self) -> "contextlib.AbstractContextManager":
        """A scope within which this target's lowerings of one model (the fallback's probes
        and per-layer ranking) may reuse what does not change between them: the model's
        capture, its calibration ranges. Default: nothing is reused."""
        return contextlib.nullcontext()

    def screen(self, model: "Model", variant: "QuantVariant", calibration: "Dataset | None",
               inputs: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        """Outputs on `inputs` of this target's lowering of `variant`, computed in-process
        before any artifact is written (the quantized module the target would then trace
        or convert), or None when the target has no such shortcut. The fallback searches
        on it and checks what it finds on the real artifact."""
        return None

    def layer_scores(self, base: Artifact, variant: "QuantVariant", calibration: "Dataset | None",
                     inputs: dict[str, np.ndarray], layers: list[str]) -> dict[str, list[np.ndarray] | None]:
        """Outputs on `inputs` of this target's real lowering of `variant` with only each
        of `layers` quantized (None for a layer with no node of its own), run on its
        runtime: the fallback's 'target' sensitivity mode."""
        from compressor.errors import RecipeError

        raise RecipeError(f"{variant.label}: fallback.sensitivity 'target' (real per-layer lowerings) is offered "
                          f"for onnx static int8; use 'simulated' for {self.name} {variant.mode}")


def run_batched(session: Session, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
    """Run `feeds` (first axis = samples) through `session` in chunks of `batch` and
    concatenate the outputs. A fixed-batch model gets its own batch size."""
    fixed = [s.shape[0] for s in session.inputs if not s.batch_dynamic and s.shape]
    if fixed:
        batch = int(fixed[0])
    n = len(next(iter(feeds.values())))
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        part = {k: v[start:start + batch] for k, v in feeds.items()}
        got = len(next(iter(part.values())))
        if fixed and got < batch:  # pad the last chunk of a fixed-batch model
            part = {k: np.concatenate([v, np.repeat(v[-1:], batch - got, axis=0)]) for k, v in part.items()}
        chunks.append([o[:got] for o in session.run(part)])
    return [np.concatenate(outs) for outs in zip(*chunks)]


def describe_inputs(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs)
