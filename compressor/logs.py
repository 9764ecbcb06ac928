"""What third-party libraries print, kept off the user's terminal and in the run's log.

Three layers, all set by the CLI before any subcommand imports a library (and inherited
by the worker processes the harness starts):
- environment variables that the native code of TensorFlow/LiteRT (absl, oneDNN
  notices), torch's C++ side and Hugging Face's progress bars read when they load;
- Python's logging: the root logger gets our handlers first, so a library's own
  `logging.basicConfig()` at import (ExecuTorch's XNNPACK partitioner has one) changes
  nothing; records reach the terminal only at ERROR, and every record of INFO and up,
  with Python warnings, goes to a buffer the run writes to its `run.log`;
- record filters for the notices that carry no information at all (below).
Needs no heavy import: a logger exists by name before its library does."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",          # TensorFlow / LiteRT C++: the oneDNN notice, absl I0000 lines
    "GLOG_minloglevel": "2",              # glog-based native code
    "TORCH_CPP_LOG_LEVEL": "ERROR",       # torch's C++ warnings (W1201 ... lines)
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' "Loading weights" bar
    "TQDM_DISABLE": "1",                  # any other library's tqdm bar: rich draws ours
}
LOG_NAME = "run.log"


class _TorchaoEnumNotice(logging.Filter):
    """Drops the one record torch logs when torchao is imported (torchao registers its
    KernelPreference Enum as a pytree constant, which this torch deprecates): a
    `W... torch/utils/_pytree.py:...] <enum 'KernelPreference'> is an Enum subclass ...`
    line on stderr, through logging and so past the CLI's warnings filter, before every
    message of a run that quantizes. Every other record of that logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("%s is an Enum subclass and is now natively supported")


def quiet_third_party() -> None:
    log = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, _TorchaoEnumNotice) for f in log.filters):
        log.addFilter(_TorchaoEnumNotice())


class RunLog(logging.Handler):
    """Every record of INFO and up, formatted, kept in memory until a run writes them
    (the run directory does not exist when the first libraries log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a library's malformed record must not end the run
            self.handleError(record)

    def take(self) -> str:
        """The lines kept so far, and a fresh start for the next run of this process."""
        lines, self.lines = self.lines, []
        return "\n".join(lines) + ("\n" if lines else "")


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a record comes (a test's capture, a
    redirect made after the CLI started), not the one it was created with."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


_RUN_LOG: RunLog | None = None
_ACTIVE = False  # between quiet_cli() and cli_done(): a CLI command is running


def quiet_cli() -> RunLog:
    """Set the three layers (module docstring) for this process and its children. Call
    once, first thing in the CLI; the environment keeps what the user set themselves."""
    global _RUN_LOG, _ACTIVE
    _ACTIVE = True
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    root = logging.getLogger()
    if _RUN_LOG is None:
        _RUN_LOG = RunLog()
        terminal = _Stderr()
        terminal.setLevel(logging.ERROR)
        terminal.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(terminal)
        root.addHandler(_RUN_LOG)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    quiet_third_party()
    return _RUN_LOG


def cli_done() -> None:
    """The CLI command ended: what is logged from now on belongs to no run (a process that
    calls main() and then the Python API, as tests do)."""
    global _ACTIVE
    _ACTIVE = False
    if _RUN_LOG is not None:
        _RUN_LOG.take()


def run_log_text(header: str) -> str | None:
    """What the libraries logged in this process since the last call, under `header`;
    None when the CLI did not set the log up (the Python API leaves logging to its
    caller)."""
    if _RUN_LOG is None or not _ACTIVE:
        return None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    body = _RUN_LOG.take() or "(no library logged anything)\n"
    return f"# {header}, written {stamp}: third-party log records and warnings, kept off the terminal\n{body}"


@contextlib.contextmanager
def native_stderr(log_as: str | None = None):
    """Native code's writes to file descriptor 2 (C++ logs that bypass Python's
    sys.stderr: absl, oneDNN, XNNPACK, cpuinfo) go to a scratch file for the duration.
    Yields a callable returning what was written (for an error message); with `log_as`,
    the lines are logged at INFO under that logger name on the way out, so that the CLI
    keeps them in the run's log. Where there is no real descriptor 2 (an embedding
    host), nothing is captured."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def said() -> str:
            sink.flush()
            sink.seek(0)
            return sink.read().decode(errors="replace")
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if log_as is not None:
                # Progress bars drawn meanwhile landed here too: their lines carry escapes.
                # Handled past the loggers' levels: a target may have turned the root
                # logger down to ERROR around the import, which is about the terminal.
                log = logging.getLogger(log_as)
                for line in said().splitlines():
                    if line.strip() and "\x1b" not in line:
                        log.handle(log.makeRecord(log_as, logging.INFO, "(native)", 0, line.strip(), (), None))
