"""How the host talks to a device: run a command (streaming its output lines), copy a
file there and back, and stop. The runner needs nothing else, so another transport
(adb: push, shell, pull) fits by implementing these five methods.

Commands are argument lists; a transport quotes them for the device's shell itself.
Every failure is a DeviceError naming the device; a dropped connection is DeviceLost
(the caller retries once).
"""

from __future__ import annotations

import abc
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compressor.errors import DeviceError


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    def last_error_line(self) -> str:
        return last_line(self.stderr)


def last_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a command's stderr (where its reason is), cut to `limit`."""
    return next((ln.strip()[:limit] for ln in reversed(text.splitlines()) if ln.strip()), "")


class Transport(abc.ABC):
    """One connection to one device; used by one thread, except abort()."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None,
            on_line: Callable[[str], None] | None = None, hold_stdin: bool = False) -> Result:
        """Run `argv` on the device. `on_line` gets each stdout line as it arrives;
        `hold_stdin` keeps the command's stdin open until it exits (the runner stops when
        it closes)."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str, timeout: float) -> None:
        """Copy a file to the device (the caller checks its size and sha256 there)."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path, timeout: float) -> None:
        """Copy a file from the device."""

    def close(self) -> None:
        """End the connection (nothing left running on the device)."""

    def abort(self) -> None:
        """Cut the connection from another thread (Ctrl-C): the runner sees its stdin close."""


class LocalTransport(Transport):
    """A device that is this machine, reached without a network (`url: local`): the same
    runner in a temporary folder, for devices named to pin threads or CPUs here."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def run(self, argv, timeout, stdin=None, on_line=None, hold_stdin=False) -> Result:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            return Result(127, b"", f"{argv[0]}: {e.strerror or e}")
        with self._lock:
            self._procs.append(proc)
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        late: list[bool] = []
        timer = threading.Timer(timeout, lambda: (late.append(True), proc.kill()))
        timer.start()
        try:
            if stdin:
                proc.stdin.write(stdin)
                proc.stdin.flush()
            if not hold_stdin:
                proc.stdin.close()
            out = bytearray()
            for line in iter(proc.stdout.readline, b""):
                out += line
                if on_line is not None:
                    on_line(line.decode("utf-8", "replace").rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
            if not proc.stdin.closed:
                proc.stdin.close()
            reader.join(5)
        if late:
            raise DeviceError(f"{self.name}: the runner took longer than {timeout:.0f} s; raise the device's "
                              "command_timeout_s in devices.yaml")
        return Result(proc.returncode, bytes(out), b"".join(err).decode("utf-8", "replace"))

    def put(self, local: Path, remote: str, timeout: float) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as e:
            raise DeviceError(f"{self.name}: cannot copy {local} to {remote}: {e.strerror or e}") from None

    def get(self, remote: str, local: Path, timeout: float) -> None:
        self.put(Path(remote), str(local), timeout)

    def abort(self) -> None:
        with self._lock:
            for p in self._procs:
                if p.poll() is None:
                    p.kill()
