"""The exception tree. Every user mistake is a CompressorError subclass: the CLI
prints its one-line message and exits with code 2, with no traceback."""

import contextlib


class CompressorError(Exception):
    """Base of every error the toolchain raises on purpose."""

    exit_code = 2


class RecipeError(CompressorError):
    """The recipe (or a command-line option standing in for it) is invalid."""


class ModelLoadError(CompressorError):
    """A model file or factory is missing, corrupt or does not fit its declared inputs."""


class DataError(CompressorError):
    """A calibration or evaluation data source is missing or malformed."""


class InputShapeError(CompressorError):
    """Inputs given to a model or artifact do not match the shapes or dtypes it takes."""


class UnsupportedOpError(CompressorError):
    """An operator cannot be lowered to the requested target or precision."""


class TrainingError(CompressorError):
    """Fine-tuning cannot go on (a NaN loss) or cannot resume (a checkpoint of another run)."""


class ExportError(CompressorError):
    """Export of a model to a target format failed."""


class ArtifactError(CompressorError):
    """An artifact file is missing, empty, truncated or not of the format it claims."""


class DeviceError(CompressorError):
    """A device cannot be reached or used: unreachable, refused, a host key that does not
    match, a Python or runtime missing there, its disk full. The message names the device."""


class DeviceLost(DeviceError):
    """The connection to a device dropped while it worked (one retry is made)."""


class FidelityError(CompressorError):
    """An artifact's outputs differ from the reference beyond tolerance. Exit code 1, as
    for a budget: what was given is fine, the result does not hold (CI tells the two
    apart from a mistake in the recipe, exit 2)."""

    exit_code = 1


class BudgetExceeded(CompressorError):
    """A budget does not hold. Exit code 1: the run worked, the result does not fit."""

    exit_code = 1


def first_line(e: BaseException, limit: int = 400) -> str:
    """The first non-empty line of an exception's message (libraries' errors run to
    pages), or its type name when the message is empty."""
    for line in str(e).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__


def _library_roots() -> tuple[str, ...]:
    """Folders whose code is not the user's: the Python installation, installed packages
    and this toolchain (so that a crash deep in torch is placed at the user's line)."""
    import sysconfig
    from pathlib import Path

    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parent))
    return tuple(str(Path(r).resolve()) + "/" for r in roots)


def _shown(filename: str) -> str:
    """A file as the user reads it: relative to the working directory when under it."""
    import os

    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if rel.startswith("..") else rel


def crash_location(e: BaseException, user_file: str | None = None) -> str:
    """'file.py:LINE' where user code raised `e`: the file and line of a SyntaxError, else
    the deepest frame of the traceback in code that is not the Python installation's, an
    installed package's or this toolchain's (the user's own line, even when the crash is
    deep inside a library it called), else the deepest frame in `user_file`, else the
    last frame; '?' without a traceback."""
    import os
    import traceback

    if isinstance(e, SyntaxError) and e.filename and not e.filename.startswith("<"):  # not eval()'s "<string>"
        return f"{_shown(e.filename)}:{e.lineno or '?'}"
    frames = traceback.extract_tb(e.__traceback__)
    roots = _library_roots()

    def users(f) -> bool:
        return not f.filename.startswith("<frozen") and not os.path.realpath(f.filename).startswith(roots)

    own = os.path.realpath(user_file) if user_file else None
    frame = (next((f for f in reversed(frames) if users(f)), None)
             or next((f for f in reversed(frames) if own and os.path.realpath(f.filename) == own), None)
             or (frames[-1] if frames else None))
    return f"{_shown(frame.filename)}:{frame.lineno}" if frame is not None else "?"


def crash_site(e: BaseException, user_file: str | None = None) -> str:
    """'file.py:LINE: ExcType: message' for an exception raised in user code (see
    crash_location; the message is the exception's first line)."""
    kind = type(e).__name__
    try:
        message = e.msg if isinstance(e, SyntaxError) and e.msg else first_line(e)
    except Exception:  # noqa: BLE001 - an exception whose str() raises in turn
        message = kind
    return f"{crash_location(e, user_file)}: {kind}" + (f": {message}" if message != kind else "")


@contextlib.contextmanager
def user_code(name: str, error: type[CompressorError], owner: object = None, verb: str = "crashed",
              hint: str = "fix it there (the error is in that code, not in the recipe)"):
    """Run code the user wrote (a model factory, a data callable, the import of their
    module, their model's forward): an exception there becomes `error` with one line,
    '<name> <verb>: file.py:LINE: ExcType: message; <hint>'; a call of sys.exit() is
    reported as such. `owner` (the function or class called) is where the line is looked
    for when the whole traceback lies in installed packages. The toolchain's own errors
    and KeyboardInterrupt pass through."""
    import inspect

    try:
        user_file = inspect.getsourcefile(owner) if owner is not None else None
    except TypeError:  # a builtin
        user_file = None
    try:
        yield
    except (CompressorError, KeyboardInterrupt, GeneratorExit):
        raise
    except SystemExit as e:
        code = "" if e.code is None else repr(e.code)
        raise error(f"{name} called sys.exit({code}) at {crash_location(e, user_file)}, which would end the run; "
                    "raise an exception instead (and keep script code under `if __name__ == '__main__':`)") from None
    except BaseException as e:  # noqa: BLE001 - whatever user code raises is its crash
        raise error(f"{name} {verb}: {crash_site(e, user_file)}; {hint}") from None
