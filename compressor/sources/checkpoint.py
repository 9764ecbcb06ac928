"""Weights files: safetensors, or a state dict saved with torch.save (.pt/.pth/.bin), read
with torch.load(weights_only=True) so that no code in the file runs.

Training scripts rarely save the bare state dict: the usual containers
({"state_dict": ...}, {"model": ...}, {"model_state_dict": ...}) are opened, and the
prefixes DataParallel/DDP (`module.`) and torch.compile (`_orig_mod.`) add are removed.
A pickled nn.Module is refused with the command that converts it, for files the user trusts.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from compressor.errors import ModelLoadError, first_line
from compressor.formats import head, is_pickle, is_safetensors, regular_file

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
PREFIXES = ("module.", "_orig_mod.")
CONVERT = ("python -c \"import torch, safetensors.torch as st; st.save_file(torch.load('{path}', "
           "weights_only=False).state_dict(), '{out}')\" (only for a file you trust: loading it runs its code)")


def read_state_dict(path: Path, own_keys: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The tensors of the weights file at `path`, keyed as in a module's state_dict.
    `own_keys` are the model's own names: a prefix is stripped only when they lack it."""
    where = f"weights {path}"
    if path.suffix not in (".safetensors", *PICKLE_SUFFIXES):
        raise ModelLoadError(f"{where}: unknown weights format {path.suffix or '(no suffix)'!r}; give a .safetensors "
                             f"file or a state dict saved with torch.save ({', '.join(PICKLE_SUFFIXES)})")
    regular_file(path, where, "", "save the weights again")
    state = _safetensors(path, where) if path.suffix == ".safetensors" else _torch_load(path, where)
    return _strip_prefixes(state, set(own_keys))


def _safetensors(path: Path, where: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{where}: not a readable safetensors file ({first_line(e)})") from None


def _torch_load(path: Path, where: str) -> dict[str, torch.Tensor]:
    first = head(path)
    if is_safetensors(first):
        raise ModelLoadError(f"{where} is a safetensors file named {path.suffix}; rename it to "
                             f"{path.with_suffix('.safetensors').name}")
    if first.startswith(b"PK") and zipfile.is_zipfile(path) and _is_torchscript(path):
        raise ModelLoadError(f"{where} is a TorchScript program, not a state dict (and loading it runs code); "
                             "save model.state_dict() with torch.save or safetensors instead")
    if not first.startswith(b"PK") and not is_pickle(first):
        raise ModelLoadError(f"{where} is not a torch.save checkpoint (neither its zip format nor a pickle); "
                             "save the state dict again with torch.save or safetensors")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError ...
        raise _refusal(path, where, e) from None
    return _unwrap(obj, where)


def _refusal(path: Path, where: str, e: Exception) -> ModelLoadError:
    text = str(e)
    global_name = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if global_name:
        out = path.with_suffix(".safetensors").name
        return ModelLoadError(f"{where} holds a pickled {global_name.group(1)} object (a whole module, not a state "
                              f"dict), which torch.load(weights_only=True) refuses as it could run code; convert it "
                              f"with {CONVERT.format(path=path.name, out=out)}")
    if "zip archive" in text or isinstance(e, EOFError):
        return ModelLoadError(f"{where} is truncated or corrupt ({type(e).__name__}: {first_line(e)[:120]}); "
                              "save the weights again")
    return ModelLoadError(f"{where} is not a readable torch.save state dict ({type(e).__name__}); save "
                          "model.state_dict() with torch.save or safetensors")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _unwrap(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The state dict inside what torch.load returned, through the usual containers."""
    seen = []
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        key = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            keys = ", ".join(map(repr, list(obj)[:6])) + (" ..." if len(obj) > 6 else "")
            inside = f" (inside {'.'.join(seen)})" if seen else ""
            raise ModelLoadError(f"{where}: a dict with keys {keys}{inside} but no state dict (looked for a mapping "
                                 f"of names to tensors, or one under {', '.join(CONTAINER_KEYS)}); save "
                                 "model.state_dict()")
        seen.append(key)
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{where} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
    # A checkpoint beside its state dict may hold a stray tensor (a step counter): a state
    # dict is mostly tensors with string keys.
    return bool(tensors) and all(isinstance(k, str) for k in obj) and len(tensors) * 2 > len(obj)


def _strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state) and not (own and all(k.startswith(prefix) for k in own)):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state
