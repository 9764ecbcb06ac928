"""Output files named on the command line (`gate --junit/--json/--markdown`, `bench
--json`), checked before anything is read or measured: a folder that does not exist, a
parent that is a file, a path that is a folder, an output that would overwrite one of
the command's own inputs or another output. One line each, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

from compressor.errors import RecipeError


class OutputPathError(RecipeError):
    """An output path given on the command line cannot be written as asked."""


def check_outputs(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """`outputs` and `inputs` map an option's name ('--json', 'report') to its path."""
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        _check_one(flag, path)
        key = _identity(path)
        if key in seen:
            raise OutputPathError(f"{seen[key]} and {flag} both name {path}; give each output its own file")
        seen[key] = flag
        for what, src in inputs.items():
            if src is not None and _identity(Path(src)) == key:
                raise OutputPathError(f"{flag} {path} is the {what} this command reads; writing there would replace "
                                      "it: give another file name")


def _check_one(flag: str, path: Path) -> None:
    if str(path).endswith(os.sep) or path.is_dir():
        raise OutputPathError(f"{flag} {path} is a folder; give a file name in it (e.g. {path / 'out'}"
                              f"{_suffix(flag)})")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{flag} {path} exists and is not a regular file; give a file path")
    parent = path.parent
    missing = parent
    while not missing.exists() and missing != missing.parent:
        missing = missing.parent
    if not parent.exists() and missing.is_dir():
        raise OutputPathError(f"{flag} {path}: the folder {parent} does not exist; create it first "
                              f"(mkdir -p {parent})")
    if not parent.is_dir():
        raise OutputPathError(f"{flag} {path}: {missing} is a file, not a folder; give a path in a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: cannot write in the folder {parent} (permission denied); "
                              "give a path in a folder you can write")


def _suffix(flag: str) -> str:
    return {"--junit": ".xml", "--markdown": ".md"}.get(flag, ".json")


def _identity(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        return os.path.abspath(path)
