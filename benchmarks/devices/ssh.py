"""The SSH transport, on asyncssh.

Why asyncssh: it is maintained (releases every few months), pure Python on top of
`cryptography`, reads the user's OpenSSH setup as it is (~/.ssh/config, known_hosts, the
agent, keys), and raises typed errors (host key not verifiable, permission denied,
connection lost) that become one clear line each, where the system `ssh` would leave us
parsing its stderr. Its async API also lets one thread drive a connection while another
cuts it on Ctrl-C. Paramiko was the alternative: synchronous, and its host key policy
and error types are coarser.

Host keys are always verified against known_hosts (the device's `known_hosts:` or
~/.ssh/known_hosts): an unknown key is refused with its fingerprint and the command that
accepts it (`compressor devices trust NAME`); a changed one is refused with the way to
clear the old one. Transfers stream through `cat` (no SFTP subsystem needed, as on
dropbear boards); the caller checks every file's size and sha256 on the other side.
"""

from __future__ import annotations

import asyncio
import shlex
import threading
from pathlib import Path
from typing import Callable

from compressor.config.devices import DeviceSpec, ssh_parts
from compressor.errors import DeviceError, DeviceLost
from benchmarks.devices.transport import Result, Transport, last_line

CHUNK = 1 << 20


def known_hosts_path(spec: DeviceSpec) -> Path:
    return Path(spec.known_hosts).expanduser() if spec.known_hosts else Path.home() / ".ssh" / "known_hosts"


def host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class SshTransport(Transport):
    def __init__(self, name: str, spec: DeviceSpec) -> None:
        super().__init__(name)
        self.spec = spec
        self.user, self.host, self.port = ssh_parts(spec.url)
        self._loop = asyncio.new_event_loop()
        self._conn = None
        self._lock = threading.Lock()

    # --- connection ---------------------------------------------------------------

    def connect(self) -> None:
        """Connect (one retry when the connection drops while it is being made)."""
        for attempt in (1, 2):
            try:
                self._conn = self._call(self._connect(), self.spec.connect_timeout_s + 5)
                return
            except DeviceLost:
                if attempt == 2:
                    raise

    async def _connect(self):
        import asyncssh

        options = dict(known_hosts=str(known_hosts_path(self.spec)), connect_timeout=self.spec.connect_timeout_s,
                       keepalive_interval=10, keepalive_count_max=3, login_timeout=self.spec.connect_timeout_s)
        if self.user:
            options["username"] = self.user
        if self.spec.identity_file:
            options["client_keys"] = [str(Path(self.spec.identity_file).expanduser())]
        try:
            return await asyncssh.connect(self.host, self.port, **options)
        except asyncssh.HostKeyNotVerifiable:
            raise DeviceError(self._host_key_problem()) from None
        except asyncssh.PermissionDenied:
            key = f"the key {self.spec.identity_file}" if self.spec.identity_file else "your agent's and ~/.ssh's keys"
            raise DeviceError(f"{self.name}: {self.user or 'the user'}@{self.host} refused {key}; authorise one "
                              f"with ssh-copy-id -p {self.port} {self.user + '@' if self.user else ''}{self.host}, or "
                              "set identity_file: in devices.yaml") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionResetError) as e:
            raise DeviceLost(f"{self.name}: the connection to {self.host}:{self.port} dropped while connecting "
                             f"({_reason(e)})") from None
        except (OSError, asyncio.TimeoutError, asyncssh.Error, ValueError) as e:
            if isinstance(e, ValueError) and self.spec.identity_file:
                raise DeviceError(f"{self.name}: cannot use the key {self.spec.identity_file} ({_reason(e)}); give "
                                  "an OpenSSH private key without a passphrase, or load it into your agent") from None
            raise DeviceError(f"{self.name}: cannot reach {self.host}:{self.port} ({_reason(e) or 'timed out'}); "
                              "check that the device is on, the address and port, and that sshd runs there") from None

    def _host_key_problem(self) -> str:
        import asyncssh

        path = known_hosts_path(self.spec)
        known = []
        if path.is_file():
            try:
                known = list(asyncssh.read_known_hosts(str(path)).match(self.host, self.host, self.port)[0])
            except (ValueError, OSError):
                known = []
        shown = host_pattern(self.host, self.port)
        if known:
            return (f"{self.name}: the host key of {shown} has CHANGED since it was recorded in {path}; someone may "
                    "be intercepting the connection, or the device was re-installed. If you know it was, remove the "
                    f"old key (ssh-keygen -f {path} -R '{shown}') and run `compressor devices trust {self.name}`")
        return (f"{self.name}: the host key of {shown} is not in {path}; check its fingerprint and accept it with "
                f"`compressor devices trust {self.name}` (or connect once with ssh)")

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
                self._call(conn.wait_closed(), 5)
            except Exception:  # closing a connection that already dropped
                pass
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def abort(self) -> None:
        conn = self._conn
        if conn is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(conn.abort)
            except RuntimeError:  # the loop has just closed
                pass

    def _call(self, coro, timeout: float):
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))
        except asyncio.TimeoutError:
            raise DeviceError(f"{self.name}: no answer from {self.host} in {timeout:.0f} s; raise the device's "
                              "command_timeout_s (or connect_timeout_s) in devices.yaml if it is slow") from None

    # --- commands and files -------------------------------------------------------

    def run(self, argv, timeout, stdin=None, on_line=None, hold_stdin=False) -> Result:
        return self._call(self._run(argv, stdin, on_line, hold_stdin), timeout)

    async def _run(self, argv: list[str], stdin: bytes | None, on_line: Callable[[str], None] | None,
                   hold_stdin: bool) -> Result:
        import asyncssh

        if self._conn is None:
            raise DeviceLost(f"{self.name}: not connected")
        err = None
        try:
            proc = await self._conn.create_process(shlex.join(argv), encoding=None)
            if stdin:
                proc.stdin.write(stdin)
            if not hold_stdin:
                proc.stdin.write_eof()
            out = bytearray()
            err = asyncio.ensure_future(proc.stderr.read())
            pending = b""
            while True:  # lines of any length (a result with 100k timings is one line)
                block = await proc.stdout.read(CHUNK)
                if not block:
                    break
                out += block
                *lines, pending = (pending + block).split(b"\n")
                for line in lines if on_line is not None else ():
                    on_line(line.decode("utf-8", "replace"))
            if pending and on_line is not None:
                on_line(pending.decode("utf-8", "replace"))
            await proc.wait_closed()
            errors = (await err).decode("utf-8", "replace")
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, BrokenPipeError,
                ConnectionResetError) as e:
            raise DeviceLost(f"{self.name}: the connection to {self.host} dropped ({_reason(e)})") from None
        finally:
            _settle(err)
        if proc.exit_status is None and proc.exit_signal is None:
            raise DeviceLost(f"{self.name}: the connection to {self.host} dropped (the command ended without a status)")
        code = proc.exit_status if proc.exit_status is not None and proc.exit_status >= 0 else -1
        return Result(code, bytes(out), errors)

    def put(self, local: Path, remote: str, timeout: float) -> None:
        self._call(self._put(local, remote), timeout)

    async def _put(self, local: Path, remote: str) -> None:
        import asyncssh

        try:
            proc = await self._conn.create_process(shlex.join(["sh", "-c", 'cat > "$1"', "sh", remote]),
                                                   encoding=None)
            with open(local, "rb") as f:
                while block := f.read(CHUNK):
                    proc.stdin.write(block)
                    await proc.stdin.drain()
            proc.stdin.write_eof()
            errors = (await proc.stderr.read()).decode("utf-8", "replace")
            await proc.wait_closed()
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError, ConnectionResetError) as e:
            raise DeviceLost(f"{self.name}: the connection to {self.host} dropped while copying {local.name} "
                             f"({_reason(e)})") from None
        if proc.exit_status != 0:
            raise DeviceError(f"{self.name}: cannot write {remote}: {last_line(errors) or 'cat failed'}")

    def get(self, remote: str, local: Path, timeout: float) -> None:
        got = self.run(["cat", remote], timeout)
        if got.returncode != 0:
            raise DeviceError(f"{self.name}: cannot read {remote}: {got.last_error_line() or 'cat failed'}")
        Path(local).write_bytes(got.stdout)

    # --- host keys ------------------------------------------------------------------

    def server_key(self):
        """The key the device presents (for `devices trust`), without authenticating."""
        import asyncssh

        async def fetch():
            try:
                return await asyncssh.get_server_host_key(self.host, self.port)
            except (OSError, asyncssh.Error) as e:
                raise DeviceError(f"{self.name}: cannot reach {self.host}:{self.port} ({_reason(e)})") from None

        return self._call(fetch(), self.spec.connect_timeout_s + 5)


def _settle(task) -> None:
    """A side task (stderr's reader) of a command that failed: cancelled, or its error
    taken, so that asyncio does not print it as never retrieved."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
