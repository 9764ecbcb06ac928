"""Per-epoch QAT checkpoints: state dicts only (loaded with weights_only=True), written
atomically, stamped with a fingerprint of the model and the recipe so that a resume
from another model or recipe is refused instead of silently mixing them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from compressor.errors import TrainingError
from compressor.fsutil import atomic_path, sha256


def fingerprint(model_section: dict, qat_section: dict, family: str, weights: Path | None) -> str:
    h = hashlib.sha256(json.dumps({"model": model_section, "qat": qat_section, "family": family},
                                  sort_keys=True, default=str).encode())
    if weights is not None and weights.is_file():
        h.update(sha256(weights).encode())
    return h.hexdigest()


def save(path: Path, fp: str, family: str, module_state: dict, loop_state: dict, frozen: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fp, "family": family, "module": module_state, "loop": loop_state,
                    "frozen": frozen}, tmp)


def load(path: Path, fp: str) -> dict:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file or one that is not a state-dict checkpoint
        raise TrainingError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start "
                            "over") from None
    if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != fp:
        raise TrainingError(f"checkpoint {path} was written for a different model or recipe (fingerprint "
                            "mismatch); delete it, or run without --resume to start over")
    return ckpt
