"""Atomic writes and file digests: a run directory never holds a half-written file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its closest existing ancestor (as absolute)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def make_dirs(path: Path) -> None:
    """mkdir -p, with a one-line reason when a part of the path is a file."""
    found = nearest_existing(path)
    if not found.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(found))
    Path(path).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only on success.

    The temporary name lives in the same directory so that the rename is atomic on
    POSIX. On any exception the temporary file is removed and `final` is untouched.
    """
    final = Path(final)
    make_dirs(final.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name[:200]}.", suffix=".part", dir=final.parent)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, str(final)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file owner-only; give it the mode any other new file would get.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.filename in (None, str(tmp_path)) and e.errno is not None:  # name the file the user knows
            raise type(e)(e.errno, e.strerror, str(final)) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staging_dir(parent: Path, name: str) -> Iterator[Path]:
    """Yield a scratch directory under `parent` that is removed afterwards.

    Exporters that write several files (a model plus its external data) work here and
    move the finished files out with `publish`.
    """
    parent = Path(parent)
    make_dirs(parent)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".staging", dir=parent))
    try:
        yield scratch
    except OSError as e:
        raise _named(e, parent / name) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _named(e: OSError, path: Path) -> OSError:
    """A write error that names the file (a full disk shows up at write() or close(),
    where Python's error carries no file name)."""
    if e.filename or e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def publish(files: dict[Path, Path]) -> None:
    """Move finished files (source -> destination) into place, each by an atomic rename,
    with the permissions of an ordinary new file (some writers create them owner-only)."""
    mode = 0o666 & ~_umask()
    for src, dst in files.items():
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, mode)
        os.replace(src, dst)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Below this much free space a failed write is most likely the disk's fault.
LOW_SPACE = 8 << 20


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return None


def write_text(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
