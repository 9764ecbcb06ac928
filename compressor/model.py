"""The model handle: a PyTorch module plus the input signature it is exported with.

Sources: a Python factory with optional weights (safetensors, or a torch.save state dict
read with weights_only), a torch.export `.pt2` ExportedProgram (pickle inside, so only
when the recipe says `trusted: true`), a local Hugging Face folder, or a timm name
(compressor/sources/).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compressor.data import import_object
from compressor.errors import ModelLoadError, first_line, user_code
from compressor.config.recipe import FILE_SOURCES, InputSpec, ModelSpec

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64,
                "int32": torch.int32, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


@dataclass
class Model:
    """A float PyTorch model in eval mode and what it takes."""

    module: torch.nn.Module
    inputs: list[InputSpec]
    output_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)
    tokenizer: Path | None = None  # a Hugging Face tokenizer folder for text data (an hf source's own)
    # outputs whose argmax is a class (validation's top-1 agreement): None, every (N, k) output;
    # () for a model that gives embeddings or hidden states, where an argmax means nothing
    top1_outputs: tuple[str, ...] | None = None
    framework = "pytorch"  # what the reports name the reference (a Keras source says "keras")

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def example_inputs(self, batch: int | None = None) -> tuple[torch.Tensor, ...]:
        """Deterministic example tensors of the declared shapes (batch axis overridable)."""
        gen = torch.Generator().manual_seed(0)
        out = []
        for spec in self.inputs:
            shape = [batch or spec.shape[0], *spec.shape[1:]]
            dt = TORCH_DTYPES[spec.dtype]
            if dt.is_floating_point:
                out.append(torch.rand(shape, generator=gen).to(dt))
            else:
                out.append(torch.zeros(shape, dtype=dt))
        return tuple(out)

    def example_feeds(self, batch: int) -> dict[str, np.ndarray]:
        """The example inputs as numpy arrays keyed by input name."""
        return {s.name: t.numpy() for s, t in zip(self.inputs, self.example_inputs(batch=batch))}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Forward pass on numpy inputs; returns every output as a float numpy array."""
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.no_grad():
            out = self.module(*args)
        return [t.detach().float().numpy() for t in flatten_outputs(out)]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def flatten_outputs(out: object) -> list[torch.Tensor]:
    """A model's outputs as a flat list of tensors (tuples, lists and dicts unpacked in order)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flatten_outputs(v)]
    raise ModelLoadError(f"the model returned a {type(out).__name__}; outputs must be tensors, "
                         "or tuples, lists or dicts of tensors")


def load_model(spec: ModelSpec, base_dir: Path = Path(".")) -> Model:
    if spec.kind in FILE_SOURCES:  # `compressor run` hands these to their target (compressor.flows.run)
        raise ModelLoadError(f"model.{spec.kind}: this command needs a PyTorch model ('factory', 'program', 'hf' or "
                             f"'timm'); a {spec.kind} source is compressed by `compressor run` with the "
                             f"{FILE_SOURCES[spec.kind]} target")
    tokenizer = None
    if spec.program is not None:
        module, source = _load_program(_resolve(spec.program, base_dir), spec.trusted), str(spec.program)
        inputs = list(spec.inputs)
    elif spec.hf is not None:
        from compressor.sources.hf import load_hf

        module, defaults, tokenizer = load_hf(_resolve(spec.hf, base_dir), spec.task, spec.sequence_length)
        inputs, source = override_inputs(defaults, spec.inputs, f"hf folder {spec.hf}"), spec.source_name
    elif spec.timm is not None:
        from compressor.sources.timm_source import build_timm

        module, defaults = build_timm(spec.timm, spec.kwargs)
        if spec.weights is not None:
            load_weights(module, _resolve(spec.weights, base_dir))
        inputs, source = override_inputs(defaults, spec.inputs, f"timm model {spec.timm!r}"), spec.source_name
    else:
        module, source = _build(spec, base_dir), spec.factory or ""
        inputs = list(spec.inputs)
    model = Model(module=module, inputs=inputs, output_names=spec.outputs, source=source, tokenizer=tokenizer,
                  top1_outputs=() if getattr(module, "gives_embeddings", False) else None)
    check_signature(model)
    return model


def override_inputs(defaults: list[InputSpec], given: list[InputSpec] | None, where: str) -> list[InputSpec]:
    """The model's own inputs, with the recipe's entries replacing those of the same name
    (their shapes and dtypes); a name the model does not take is refused."""
    by_name = {i.name: i for i in given or ()}
    unknown = [n for n in by_name if n not in {d.name for d in defaults}]
    if unknown:
        raise ModelLoadError(f"{where} takes inputs {[d.name for d in defaults]}; model.inputs names {unknown}, "
                             "which it does not take (the recipe's inputs override these by name)")
    return [by_name.get(d.name, d) for d in defaults]


def _resolve(p: Path, base_dir: Path) -> Path:
    return p if p.is_absolute() else base_dir / p


def _build(spec: ModelSpec, base_dir: Path) -> torch.nn.Module:
    name = f"model factory {spec.factory!r}"
    factory = import_object(spec.factory or "", base_dir, what="model factory", error=ModelLoadError)
    if not callable(factory):
        raise ModelLoadError(f"{name} is not callable (a value of type {type(factory).__name__}: "
                             f"{repr(factory)[:40]}); point it at a function or class that builds the nn.Module")
    try:
        inspect.signature(factory).bind(**spec.kwargs)
    except TypeError as e:
        raise ModelLoadError(f"{name} rejected kwargs {spec.kwargs}: {e}") from None
    except ValueError:  # no signature to check (some builtins): the call will tell
        pass
    with user_code(name, ModelLoadError, factory):
        module = factory(**spec.kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{name} returned {_what_instead(module)}, not a torch.nn.Module instance; "
                             "make it return the built model")
    if spec.weights is not None:
        load_weights(module, _resolve(spec.weights, base_dir))
    return module.eval()


def _what_instead(obj: object) -> str:
    """What a factory returned instead of a module, with the usual slip named."""
    if obj is None:
        return "None (a missing 'return'?)"
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        return f"the class {obj.__name__} itself (return {obj.__name__}(), an instance)"
    if callable(obj):
        return f"a {type(obj).__name__} ({getattr(obj, '__name__', '?')}; call it and return its result?)"
    return f"a value of type {type(obj).__name__}"


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a .safetensors file or a torch.save state dict (weights_only) into `module`,
    refusing any missing, unexpected or misshapen tensor with one line naming the first few."""
    from compressor.sources.checkpoint import read_state_dict

    own = module.state_dict()
    state = read_state_dict(path, own)
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (file vs model) for {_few(shapes)}")
    if problems:
        raise ModelLoadError(f"weights {path} do not match the model: {'; '.join(problems)}; "
                             "check the factory and its kwargs")
    module.load_state_dict(state, strict=True)


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _load_program(path: Path, trusted: bool) -> torch.nn.Module:
    if not trusted:
        raise ModelLoadError(f"program {path}: a .pt2 file is unpickled when loaded and can run code; "
                             "set 'trusted: true' under 'model' if you made it or trust its author")
    if not path.is_file():
        raise ModelLoadError(f"program {path}: no such file")
    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # torch raises many types for a corrupt archive
        raise ModelLoadError(f"program {path}: not a loadable torch.export archive ({type(e).__name__}: "
                             f"{first_line(e)})") from None
    fixed = fixed_batch_inputs(ep)
    if fixed:  # validation and calibration run many samples at once, the exports a dynamic batch
        name, batch = next(iter(fixed.items()))
        raise ModelLoadError(f"program {path} was exported with a fixed batch ({name!r} takes batch {batch} only); "
                             f"export it again with a dynamic batch axis and an example batch of 2 or more, e.g. "
                             f"torch.export.export(model, args, dynamic_shapes={{{name!r}: {{0: "
                             f"torch.export.Dim('batch')}}}})")
    return ep.module()


def fixed_batch_inputs(ep) -> dict[str, int]:
    """The user inputs of an ExportedProgram whose first axis is a plain number, not a symbol."""
    users = set(ep.graph_signature.user_inputs)
    out = {}
    for node in ep.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" and node.name in users else None
        if isinstance(val, torch.Tensor) and val.dim() > 0 and isinstance(val.shape[0], int):
            out[node.name] = int(val.shape[0])
    return out


def check_signature(model: Model) -> None:
    """Run the declared input shapes once, so a wrong shape fails here with one line
    (naming the line of the model's code where it failed)."""
    shapes = ", ".join(f"{s.name} {s.shape} {s.dtype}" for s in model.inputs)
    with user_code("the model", ModelLoadError, type(model.module),
                   verb=f"does not run on its declared inputs ({shapes})",
                   hint="fix 'inputs' in the recipe's model section (or the model's forward)"):
        model.run({s.name: t.numpy() for s, t in zip(model.inputs, model.example_inputs())})
