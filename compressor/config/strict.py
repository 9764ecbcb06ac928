"""The base of every recipe and budgets model, and the value types their fields use.

Strict: unknown keys are errors, models are frozen, and no float field takes .inf or
.nan (one setting here, for every model). The types below are what a field is written
with instead of bare int/float/bool/Path: a boolean never passes as a number (YAML's
`threads: true` is not 1), a number never passes as a boolean, and a path is a usable
one. Every numeric field also gives both of its bounds (a test walks them all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict
from pydantic import Strict as _NoCoercion

# A path longer than this, or a component longer than NAME_MAX, fails in the OS later.
PATH_MAX, NAME_MAX = 4096, 255


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a number or a size such as '300KB', not {str(v).lower()}")
    return v


def _usable_path(v: Any) -> Any:
    if isinstance(v, str):
        if not v.strip():
            raise ValueError("an empty path: give a file or folder, or leave the key out")
        if len(v) > PATH_MAX or any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX for part in v.split("/")):
            raise ValueError(f"path too long (at most {PATH_MAX} characters, {NAME_MAX} bytes a component)")
    return v


def _format_version(v: Any) -> Any:
    if type(v) is not int:  # Literal[1] alone takes true and 1.0
        raise ValueError("must be the integer 1 (the recipe format this toolchain reads)")
    return v


Int = Annotated[int, _NoCoercion()]  # no bool, no float, no numeric string
Float = Annotated[float, _NoCoercion()]  # an int is fine; no bool, no string
Bool = Annotated[bool, _NoCoercion()]  # true/false only: not 1, not "yes"
Bytes = Annotated[ByteSize, BeforeValidator(_not_bool)]  # 1234, "300KB", "1.5MiB"
UserPath = Annotated[Path, BeforeValidator(_usable_path)]
Version = Annotated[Literal[1], BeforeValidator(_format_version)]

# Counts of samples, runs and batches: far past any data set or patience, far below
# what overflows an index anywhere.
MAX_SAMPLES = 10**9
MAX_LAYERS = 100_000
MAX_EPOCHS = 100_000
MAX_THREADS = 1024
# The ONNX export declares its batch axis up to this (torch.export Dim max), and no
# runtime here takes a larger batch in one call.
MAX_BATCH = 65536
MAX_SEED = 2**32 - 1  # numpy's seeds end here
MAX_SECONDS = 86_400.0  # a day
