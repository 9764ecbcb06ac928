"""A real OpenSSH server on loopback, standing in for an edge device in tests.

`Sshd` runs Debian's ``/usr/sbin/sshd`` in the foreground as a child of the test process
(``sshd -D -E LOG -f CONFIG``), listening on 127.0.0.1 on a free port, with a throwaway
ed25519 host key, a throwaway client key and an OpenSSH-format ``known_hosts``
(``[127.0.0.1]:PORT ssh-ed25519 ...``) that both OpenSSH's ``ssh`` and asyncssh accept.
Everything lives in one temp dir that `close()` removes; every daemon and every process
it forked is killed on `close()` (also at interpreter exit), so no sshd is left behind.

The "device" side holds only Python and the runtimes, never this project:

- ``full``  /opt/compressor-device-env        numpy, onnxruntime, ai-edge-litert, openvino
- ``bare``  /opt/compressor-device-env-bare   numpy only          ("runtime missing")
- ``empty`` /opt/compressor-device-env-empty  nothing at all      ("numpy missing")
- ``old``   /opt/compressor-device-env-old    numpy 1.26.4, onnxruntime 1.16.3, tflite-runtime
  2.14.0: a board whose runtimes are older than the ones that exported the artifact
  (ai.onnx up to opset 19, IR version up to 9, no DeformConv kernel; FULLY_CONNECTED up
  to version 10): "the device's runtime cannot load it"

Each is a venv of the system interpreter (``/usr/bin/python3``, ``--without-pip``, no
system site-packages), filled by the *running* interpreter's pip (``pip --python``) with
the exact versions that interpreter has installed (``importlib.metadata``), and every
other distribution it has installed given as a constraint, so the dependencies match too.
A distribution named ``name==version`` in `ENVS` is pinned to that version instead (and
left out of the constraints): ``old`` comes from PyPI, not from this interpreter. Such an
env is built on first use (``Sshd.python_old``), not by every server; a machine that cannot
download it (no PyPI) gets `SshdUnavailable`.
A stamp file (``compressor-device-env.json``) records the pins and the base interpreter;
an env is rebuilt when they differ, under a file lock (safe with pytest-xdist). Building
takes ~10 s with a warm pip cache (once per machine); afterwards a server starts in
well under a second. ``python tests/devices/sshd.py --prepare`` builds them ahead of time.

Two modes, chosen by who runs the tests:

- root (CI): sshd runs as root and the client logs in as a SEPARATE unprivileged user,
  ``compressor-dev`` (created if missing: ``useradd --create-home --shell /bin/sh``, its
  password field set to ``*`` since with ``UsePAM no`` a ``!``-locked account is refused).
  The envs live in /opt, owned by root and world-readable: the device user can run them,
  not change them. `tmpfs_workdir()` mounts a tiny tmpfs for "disk full" tests.
- not root: sshd runs as the current user and can only log that same user in
  (``separate_user`` is False and ``why_not_separate`` says why). The envs are the /opt ones
  when they exist with a matching stamp (built by root earlier), else they are built in
  ``~/.cache/compressor-device-envs`` (``$COMPRESSOR_DEVICE_ENV_ROOT`` overrides either).
  `tmpfs_workdir()` raises `SshdUnavailable`. Tests that need a separate user or a mount
  skip with that reason; the rest run the same way.

What cannot work on this machine (no sshd binary, no ssh-keygen, a login shell that is
``nologin``, nothing to pin the envs to) raises `SshdUnavailable`, whose text is the
reason to print when skipping. Real failures (a bad config, pip failing) raise
`RuntimeError` with the log's tail. This module needs only the standard library.

Killing: `kill()` SIGKILLs the listening daemon only; like a real sshd, sessions already
established live on (each runs in its own session, reparented away). `kill_all()` freezes
and SIGKILLs the listener, every sshd it forked and every command those run: a device
that vanished mid-run. `restart()` does `kill_all()` and starts again on the same port.

The temp dir is under /tmp (0711, so the device user can read ``authorized_keys``); pytest's
``tmp_path`` (under /tmp/pytest-of-root, 0700) is fine for files only the test process
reads (devices.yaml), not for directories the device user must use: use `device_dir()`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.metadata as metadata
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

SSHD = Path("/usr/sbin/sshd")
DEVICE_USER = "compressor-dev"
HOST = "127.0.0.1"
OPT_ROOT = Path("/opt")
STAMP = "compressor-device-env.json"

# kind -> (directory name, distributions pinned to the running interpreter's versions
#          or, written "name==version", to that version; imports that must work in it)
ENVS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "full": ("compressor-device-env", ("numpy", "onnxruntime", "ai-edge-litert", "openvino"),
             ("numpy", "onnxruntime", "ai_edge_litert.interpreter", "openvino")),
    "bare": ("compressor-device-env-bare", ("numpy",), ("numpy",)),
    "empty": ("compressor-device-env-empty", (), ()),
    # The last onnxruntime before ONNX 1.15 (opset 20, IR 10) and the last tflite-runtime
    # (TF 2.14: FULLY_CONNECTED up to version 10), with the numpy they were built for.
    "old": ("compressor-device-env-old", ("numpy==1.26.4", "onnxruntime==1.16.3", "tflite-runtime==2.14.0"),
            ("numpy", "onnxruntime", "tflite_runtime.interpreter")),
}

NO_SSHD = "openssh-server is not installed: apt-get install openssh-server"
NO_KEYGEN = "openssh-client is not installed (no ssh-keygen): apt-get install openssh-client"


class SshdUnavailable(Exception):
    """This machine cannot provide it; str(exc) is the reason to print when skipping."""


def is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------- helpers

def _run(argv: list[str], *, what: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n"
                           f"{(proc.stdout + proc.stderr).strip()[-4000:]}")
    return proc


def keygen(path: Path, comment: str = "compressor-test") -> Path:
    """An ed25519 key pair without passphrase at path (+ path.pub); returns path."""
    if shutil.which("ssh-keygen") is None:
        raise SshdUnavailable(NO_KEYGEN)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
         what="ssh-keygen", timeout=30)
    return path


def public_key(path: Path) -> str:
    """'ssh-ed25519 AAAA...' of a private key file (read from its .pub)."""
    kind, blob, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{kind} {blob}"


def known_hosts_line(port: int, pubkey: str, host: str = HOST) -> str:
    return f"[{host}]:{port} {pubkey}\n" if port != 22 else f"{host} {pubkey}\n"


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sshd_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, timeout=10)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _listening(port: int, host: str = HOST) -> bool:
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in list(f)[1:])
    except OSError:  # no procfs: knock instead
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, port)) == 0


# ----------------------------------------------------------------- process tree (procfs)

Proc = tuple[int, int]  # (pid, start time in clock ticks): survives pid reuse


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return rest[0], int(rest[1]), int(rest[19])


def _table() -> dict[int, tuple[str, int, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            table[int(name)] = st
    return table


def _alive(p: Proc) -> bool:
    st = _stat(p[0])
    return st is not None and st[2] == p[1] and st[0] not in ("Z", "X")


def _tree(roots: set[Proc]) -> set[Proc]:
    """roots still alive, and all their living descendants."""
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: set[Proc] = set()
    todo = [pid for pid, start in roots if pid in table and table[pid][2] == start]
    while todo:
        pid = todo.pop()
        state, _, start = table[pid]
        if (pid, start) in out:
            continue
        if state not in ("Z", "X"):
            out.add((pid, start))
        todo.extend(children.get(pid, ()))
    return out


def _signal(procs: set[Proc], sig: int) -> None:
    for pid, start in procs:
        st = _stat(pid)
        if st is not None and st[2] == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(procs: set[Proc], timeout: float) -> set[Proc]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in procs if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def kill_tree(roots: set[Proc]) -> None:
    """Freeze roots and all their descendants (SIGSTOP, until no new ones appear), then
    SIGKILL them all: nothing can fork away or reparent out of reach in between."""
    seen: set[Proc] = set()
    for _ in range(50):
        new = _tree(roots | seen) - seen
        if not new:
            break
        _signal(new, signal.SIGSTOP)
        seen |= new
    _signal(seen, signal.SIGKILL)
    _wait_gone(seen, 5)


# ----------------------------------------------------------------------- device user

def _account(user: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def ensure_device_user(user: str = DEVICE_USER) -> pwd.struct_passwd:
    """The unprivileged device account (root only): created with a home and /bin/sh if
    missing, and unlocked ('*': no password, but not '!'-locked, which sshd refuses
    without PAM)."""
    if not is_root():
        raise SshdUnavailable(f"creating the device user {user!r} needs root")
    with _lock(Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir()),
               "compressor-device-user"):
        if _account(user) is None:
            _run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", user],
                 what="useradd")
        try:
            shadow = {line.split(":")[0]: line.split(":")[1]
                      for line in Path("/etc/shadow").read_text().splitlines() if ":" in line}
        except OSError:
            shadow = {}
        if shadow.get(user, "").startswith("!"):
            _run(["usermod", "-p", "*", user], what="usermod (unlock)")
    acct = pwd.getpwnam(user)
    home = Path(acct.pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True)
        os.chown(home, acct.pw_uid, acct.pw_gid)
    return acct


def _as_user(acct: pwd.struct_passwd | None) -> dict:
    """subprocess kwargs that run a command as acct (with a clean environment)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if acct is None or acct.pw_uid == os.geteuid():
        return {"env": dict(env, HOME=os.path.expanduser("~"))}
    return {"user": acct.pw_uid, "group": acct.pw_gid, "extra_groups": [], "cwd": "/",
            "env": dict(env, HOME=acct.pw_dir, USER=acct.pw_name, LOGNAME=acct.pw_name)}


# ------------------------------------------------------------------------ device envs

@contextlib.contextmanager
def _lock(directory: Path, name: str) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def env_roots() -> list[Path]:
    """Where the device envs are looked for, first match wins; the first is where a
    missing one is built."""
    if os.environ.get("COMPRESSOR_DEVICE_ENV_ROOT"):
        return [Path(os.environ["COMPRESSOR_DEVICE_ENV_ROOT"])]
    if is_root():
        return [OPT_ROOT]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [cache / "compressor-device-envs", OPT_ROOT]


def fixed(kind: str) -> bool:
    """Whether the env pins versions of its own (from PyPI) rather than this interpreter's."""
    return any("==" in n for n in ENVS[kind][1])


def pins(kind: str) -> dict[str, str | None]:
    """{distribution: its version in ENVS, else the one installed in the running
    interpreter, or None}."""
    out: dict[str, str | None] = {}
    for name in ENVS[kind][1]:
        if "==" in name:
            name, version = name.split("==", 1)
            out[name] = version
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints(exclude: tuple[str, ...] = ()) -> str:
    """Every distribution of the running interpreter, pinned: the env's dependencies get
    the same versions the project runs with (all but those in exclude, which it pins)."""
    seen, lines = {_norm(n) for n in exclude}, []
    for dist in metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if not name or not version or not re.fullmatch(r"[A-Za-z0-9._-]+", name) \
                or not re.fullmatch(r"[A-Za-z0-9.+!_-]+", version):
            continue
        key = _norm(name)
        if key not in seen:
            seen.add(key)
            lines.append(f"{name}=={version}")
    return "\n".join(sorted(lines)) + "\n"


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
        return tuple(map(int, out.stdout.split())) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def base_python(acct: pwd.struct_passwd | None = None) -> str:
    """The interpreter the device envs are venvs of: $COMPRESSOR_DEVICE_BASE_PYTHON, else
    the system python3 of the running one's major.minor (the pinned wheels fit it), which
    the device user must be able to run (a pyenv under /root would not do)."""
    want = sys.version_info[:2]
    explicit = os.environ.get("COMPRESSOR_DEVICE_BASE_PYTHON")
    candidates = [explicit] if explicit else [
        "/usr/bin/python3", "/usr/local/bin/python3",
        f"/usr/bin/python{want[0]}.{want[1]}", f"/usr/local/bin/python{want[0]}.{want[1]}",
        getattr(sys, "_base_executable", None) or sys.executable]
    tried = []
    for c in candidates:
        if not c or not os.path.exists(c) or c in tried:
            continue
        tried.append(c)
        if _version_of(c) != want and not explicit:
            continue
        probe = subprocess.run([c, "-c", "import venv"], capture_output=True, timeout=30,
                               **_as_user(acct))
        if probe.returncode == 0:
            return c
    raise SshdUnavailable(f"no python{want[0]}.{want[1]} that "
                          f"{acct.pw_name if acct else 'this user'} can run for the device envs "
                          f"(tried {', '.join(tried) or 'nothing'}; "
                          "set COMPRESSOR_DEVICE_BASE_PYTHON)")


def _read_stamp(directory: Path) -> dict | None:
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if (directory / "bin" / "python").exists() else None


def _stamp_ok(stamp: dict | None, want: dict[str, str | None]) -> bool:
    if stamp is None:
        return False
    have = stamp.get("packages", {})
    return set(have) == set(want) and all(v is None or have[k] == v for k, v in want.items())


def device_env(kind: str = "full", *, build: bool = True,
               acct: pwd.struct_passwd | None = None) -> Path:
    """The python of a device env ('full', 'bare', 'empty', 'old'): an existing one whose
    stamp matches its pins, else (build=True) built now. An 'old' one that pip cannot
    download (no PyPI here) raises SshdUnavailable."""
    dirname, names, imports = ENVS[kind]
    want = pins(kind)
    roots = env_roots()
    for root in roots:
        if _stamp_ok(_read_stamp(root / dirname), want):
            return root / dirname / "bin" / "python"
    missing = [n for n, v in want.items() if v is None]
    if missing:
        raise SshdUnavailable(f"{', '.join(missing)} not installed in {sys.prefix}: nothing to pin "
                              f"the device env {kind!r} to, and no prepared one in "
                              f"{', '.join(map(str, roots))}")
    if not build:
        raise SshdUnavailable(f"device env {kind!r} is not prepared in {roots[0]}: "
                              "python tests/devices/sshd.py --prepare")
    root = roots[0]
    with _lock(root, "compressor-device-env"):
        directory = root / dirname
        if _stamp_ok(_read_stamp(directory), want):  # another process built it meanwhile
            return directory / "bin" / "python"
        try:
            _build(directory, want, imports, acct)
        except RuntimeError as e:
            if fixed(kind) and _offline(str(e)):
                shutil.rmtree(directory, ignore_errors=True)
                raise SshdUnavailable(f"cannot download the device env {kind!r} "
                                      f"({', '.join(f'{n}=={v}' for n, v in want.items())}): "
                                      f"{str(e).strip().splitlines()[-1][:300]}") from None
            raise
    return directory / "bin" / "python"


def _offline(pip_output: str) -> bool:
    """pip could not reach an index or find the pinned wheel (not a broken env)."""
    return bool(re.search(r"No matching distribution found|Could not find a version that satisfies|"
                          r"NewConnectionError|Failed to establish a new connection|"
                          r"Temporary failure in name resolution|Network is unreachable|"
                          r"ProxyError|ConnectTimeout", pip_output))


def _build(directory: Path, want: dict[str, str | None], imports: tuple[str, ...],
           acct: pwd.struct_passwd | None) -> None:
    t0 = time.monotonic()
    base = base_python(acct)
    shutil.rmtree(directory, ignore_errors=True)
    old_umask = os.umask(0o022)
    try:
        _run([base, "-m", "venv", "--without-pip", str(directory)], what="venv", timeout=120)
        python = directory / "bin" / "python"
        if want:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write(_constraints(tuple(want)))
            try:
                _run([sys.executable, "-m", "pip", "--python", str(python), "install",
                      "--no-input", "--disable-pip-version-check", "--only-binary", ":all:",
                      "-c", f.name, *(f"{n}=={v}" for n, v in want.items())],
                     what=f"pip install into {directory}", timeout=1200)
            finally:
                os.unlink(f.name)
        for d, _, files in os.walk(directory):  # readable and runnable by the device user
            for p in [d, *(os.path.join(d, x) for x in files)]:
                if not os.path.islink(p):
                    mode = os.stat(p).st_mode
                    os.chmod(p, mode | 0o444 | (0o111 if mode & 0o111 or p == d else 0))
        if imports:
            _run([str(python), "-c", "import " + ", ".join(imports)],
                 what=f"importing {', '.join(imports)} in {directory}", timeout=120,
                 **_as_user(acct))
        stamp = {"packages": want, "base": base, "python": _version_of(str(python)),
                 "built_s": round(time.monotonic() - t0, 1)}
        (directory / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    finally:
        os.umask(old_umask)


def prepare(verbose: bool = True) -> dict[str, Path]:
    """Create the device user (root) and build the device envs; returns their pythons."""
    acct = ensure_device_user() if is_root() else None
    out = {}
    for kind in ENVS:
        t0 = time.monotonic()
        try:
            out[kind] = device_env(kind, acct=acct)
        except SshdUnavailable as e:
            if not fixed(kind):
                raise
            if verbose:  # only the tests that need this one skip
                print(f"device env {kind:5s} not built: {e}", flush=True)
            continue
        if verbose:
            print(f"device env {kind:5s} {out[kind]}  ({time.monotonic() - t0:.1f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------ server

class Sshd:
    """One sshd on 127.0.0.1; a context manager. See the module docstring."""

    def __init__(self, *, log_level: str = "VERBOSE", build_envs: bool = True,
                 max_sessions: int = 64) -> None:
        if not SSHD.exists():
            raise SshdUnavailable(NO_SSHD)
        if shutil.which("ssh-keygen") is None:
            raise SshdUnavailable(NO_KEYGEN)
        self.log_level = log_level
        self.max_sessions = max_sessions
        self.host = HOST
        if is_root():
            self._acct = ensure_device_user()
            self.why_not_separate = None
        else:
            self._acct = pwd.getpwuid(os.geteuid())
            if not os.access(self._acct.pw_shell or "/bin/sh", os.X_OK) \
                    or self._acct.pw_shell.endswith(("nologin", "false")):
                raise SshdUnavailable(f"not root, and this user's login shell "
                                      f"{self._acct.pw_shell!r} cannot run commands over ssh")
            self.why_not_separate = (f"not root: sshd runs as {self._acct.pw_name} and logs in as "
                                     "that same user; a separate device user needs root")
        self.user: str = self._acct.pw_name
        self.separate_user: bool = self.why_not_separate is None
        acct = self._acct if self.separate_user else None
        envs = {k: device_env(k, build=build_envs, acct=acct) for k in ENVS if not fixed(k)}
        self.python: Path = envs["full"]        # numpy, onnxruntime, ai-edge-litert, openvino
        self.python_bare: Path = envs["bare"]   # numpy only: "runtime missing"
        self.python_empty: Path = envs["empty"]  # nothing: "numpy missing"
        self.system_python: str = _read_stamp(self.python.parent.parent)["base"]
        self._env_acct, self._build_envs = acct, build_envs
        self._lazy_envs: dict[str, Path] = {}

        self.dir = Path(tempfile.mkdtemp(prefix="compressor-sshd-",
                                         dir="/tmp" if os.path.isdir("/tmp") else None))
        os.chmod(self.dir, 0o711)
        self._closed = False
        self._proc: subprocess.Popen | None = None
        self._orphans: set[Proc] = set()
        self._mounts: list[Path] = []
        atexit.register(self.close)
        self.config = self.dir / "sshd_config"
        self.log_file = self.dir / "sshd.log"
        self.pid_file = self.dir / "sshd.pid"
        self.host_key = keygen(self.dir / "ssh_host_ed25519_key", "compressor-test-host")
        self.identity_file: Path = keygen(self.dir / "id_ed25519", "compressor-test-client")
        self.known_hosts: Path = self.dir / "known_hosts"
        akeys = self.dir / "authorized_keys"
        akeys.mkdir(mode=0o755)
        (akeys / self.user).write_text(public_key(self.identity_file) + "\n")
        os.chmod(akeys / self.user, 0o644)
        self.port: int = 0
        self._n = 0
        self._penalties = sshd_version() >= (9, 8)  # PerSourcePenalties would block retries

    # ----------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def home(self) -> Path:
        return Path(self._acct.pw_dir)

    @property
    def uid(self) -> int:
        return self._acct.pw_uid

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env_python(self, kind: str) -> Path:
        """The python of any device env; one with versions of its own (see `fixed`) is
        looked up or built on first use. Raises SshdUnavailable where it cannot be had."""
        if kind not in self._lazy_envs:
            self._lazy_envs[kind] = device_env(kind, build=self._build_envs, acct=self._env_acct)
        return self._lazy_envs[kind]

    @property
    def python_old(self) -> Path:
        """numpy 1.26.4, onnxruntime 1.16.3 (ai.onnx opset <= 19, IR <= 9, no DeformConv)
        and tflite-runtime 2.14.0 (FULLY_CONNECTED <= version 10): a device whose runtimes
        cannot load what this side's accept. Built on first use (~10 s, once per machine);
        SshdUnavailable where PyPI cannot be reached."""
        return self.env_python("old")

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.dir}/authorized_keys/%u",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin no" if self.separate_user else "PermitRootLogin prohibit-password",
            "PermitUserEnvironment no",
            f"MaxSessions {self.max_sessions}",
            f"MaxStartups {self.max_sessions}:30:{self.max_sessions * 2}",
            "MaxAuthTries 6",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
            f"LogLevel {self.log_level}",
        ]
        if self._penalties:
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> "Sshd":
        """Validate the config (sshd -t) and start the daemon; returns self once the port
        listens. Keeps the port across restarts; picks a free one the first time."""
        if self._closed:
            raise RuntimeError("this Sshd was closed")
        if self.running:
            return self
        if is_root():
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        fixed = self.port != 0
        for attempt in range(5):
            if not fixed:
                self.port = free_port(self.host)
            self._write_config()
            check = subprocess.run([str(SSHD), "-t", "-f", str(self.config)],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise RuntimeError(f"sshd -t rejects {self.config}:\n"
                                   f"{(check.stdout + check.stderr).strip()}\n--- config\n"
                                   f"{self.config.read_text()}")
            if self._launch(timeout=10):
                self._write_known_hosts()
                return self
            if fixed and attempt < 4:  # the old socket may linger a moment
                time.sleep(0.2)
        raise RuntimeError(f"sshd did not start on {self.host}:{self.port}:\n{self.log_tail()}")

    def _launch(self, timeout: float) -> bool:
        with open(self.log_file, "ab") as log:
            log.write(f"=== start {time.strftime('%H:%M:%S')} port {self.port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-E", str(self.log_file), "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            if _listening(self.port, self.host):
                return True
            time.sleep(0.005)
        self.kill_all()
        return False

    def ensure_running(self) -> "Sshd":
        """Start it again if a test killed it."""
        return self if self.running else self.start()

    def _listener(self) -> set[Proc]:
        if self._proc is None or self._proc.poll() is not None:
            return set()
        st = _stat(self._proc.pid)
        return {(self._proc.pid, st[2])} if st else set()

    def kill(self) -> None:
        """SIGKILL the listening daemon only. New connections are refused; established
        sessions live on (remembered, so kill_all()/stop()/close() still end them)."""
        if self._proc is None:
            return
        self._orphans |= _tree(self._listener()) - self._listener()
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the listener, every sshd it forked and every command they run."""
        kill_tree(self._listener() | self._orphans)
        self._orphans.clear()
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the daemon and its sessions, SIGKILL whatever is left after 2 s."""
        procs = _tree(self._listener() | self._orphans)
        _signal(procs, signal.SIGTERM)
        _wait_gone(procs, 2)
        self.kill_all()

    def restart(self, new_host_key: bool = False) -> Path:
        """kill_all() and start again on the same port. With new_host_key, the server gets
        a fresh host key and `known_hosts` is rewritten for it. Returns a known_hosts
        file holding the key the server had before (stale when new_host_key)."""
        self._n += 1
        before = self.dir / f"known_hosts.before-{self._n}"
        before.write_text(known_hosts_line(self.port, public_key(self.host_key), self.host))
        self.kill_all()
        if new_host_key:
            keygen(self.host_key, "compressor-test-host")
        self.start()
        return before

    def close(self) -> None:
        """Stop everything, unmount tmpfs work dirs, remove the temp dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.stop()
        for m in reversed(self._mounts):
            _umount(m)
        self._mounts.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> "Sshd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- known_hosts

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text(known_hosts_line(self.port, public_key(self.host_key),
                                                     self.host))

    @property
    def host_key_line(self) -> str:
        return known_hosts_line(self.port, public_key(self.host_key), self.host)

    def wrong_known_hosts(self) -> Path:
        """A known_hosts naming [127.0.0.1]:PORT with a different key: a changed host key."""
        other = self.dir / "other_host_key"
        if not other.exists():
            keygen(other, "compressor-test-other-host")
        path = self.dir / "known_hosts.wrong"
        path.write_text(known_hosts_line(self.port, public_key(other), self.host))
        return path

    def other_identity(self) -> Path:
        """A client private key that is not authorised: the wrong key."""
        path = self.dir / "id_ed25519_unauthorised"
        if not path.exists():
            keygen(path, "compressor-test-unauthorised")
        return path

    # ----------------------------------------------------------------- device side

    def device_dir(self, name: str | None = None) -> Path:
        """A fresh directory only the device user can write (0700, owned by it)."""
        self._n += 1
        path = self.dir / (name or f"device-{self._n}")
        path.mkdir(mode=0o700)
        os.chown(path, self._acct.pw_uid, self._acct.pw_gid)
        return path

    @contextlib.contextmanager
    def tmpfs_workdir(self, size_kb: int = 64) -> Iterator[Path]:
        """A tmpfs of size_kb KiB owned by the device user (0700): its disk fills up.
        Unmounted on exit (lazily, if a killed runner still holds it). Root only."""
        if not is_root():
            raise SshdUnavailable("mounting a tmpfs for the device's full disk needs root")
        self._n += 1
        path = self.dir / f"tmpfs-{self._n}"
        path.mkdir()
        opts = f"size={int(size_kb)}k,mode=0700,uid={self._acct.pw_uid},gid={self._acct.pw_gid}"
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "compressor-test", str(path)],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            path.rmdir()
            raise SshdUnavailable(f"cannot mount a tmpfs here (a container without "
                                  f"CAP_SYS_ADMIN?): {(proc.stdout + proc.stderr).strip()}")
        self._mounts.append(path)
        try:
            yield path
        finally:
            _umount(path)
            self._mounts.remove(path)

    # ------------------------------------------------------------------ clients

    def ssh_argv(self, command: str | None = None, *, identity: Path | None = None,
                 known_hosts: Path | None = None, user: str | None = None,
                 options: dict[str, str] | None = None) -> list[str]:
        """argv for OpenSSH's ssh to this server: no ~/.ssh/config, no agent, strict host
        key checking against known_hosts, batch mode."""
        opts = {"IdentitiesOnly": "yes", "IdentityAgent": "none",
                "UserKnownHostsFile": str(known_hosts or self.known_hosts),
                "GlobalKnownHostsFile": "/dev/null", "StrictHostKeyChecking": "yes",
                "UpdateHostKeys": "no", "BatchMode": "yes", "ConnectTimeout": "10",
                "LogLevel": "ERROR", **(options or {})}
        argv = ["ssh", "-F", "/dev/null", "-i", str(identity or self.identity_file),
                "-p", str(self.port)]
        for k, v in opts.items():
            argv += ["-o", f"{k}={v}"]
        argv.append(f"{user or self.user}@{self.host}")
        return argv + ([command] if command is not None else [])

    def ssh(self, command: str, *, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run command on the device with OpenSSH's ssh; text output, no check."""
        if shutil.which("ssh") is None:
            raise SshdUnavailable("openssh-client is not installed: apt-get install openssh-client")
        return subprocess.run(self.ssh_argv(command, **kw), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def asyncssh_options(self, **overrides) -> dict:
        """kwargs for asyncssh.connect() to this server."""
        return {"host": self.host, "port": self.port, "username": self.user,
                "client_keys": [str(self.identity_file)], "known_hosts": str(self.known_hosts),
                "agent_path": None, "config": None, **overrides}

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no sshd log)"

    def __repr__(self) -> str:
        return f"<Sshd {self.url} {'running' if self.running else 'stopped'} dir={self.dir}>"


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
    with contextlib.suppress(OSError):
        path.rmdir()


def write_devices_yaml(path: Path, sshd: Sshd, *, name: str = "loop", python: Path | str | None = None,
                       known_hosts: Path | None = None, identity_file: Path | None = None,
                       **extra: object) -> Path:
    """A device inventory naming this server (one device); returns path. The schema is
    the inventory's: adjust here when it changes. extra keys go into the device's entry."""
    entry = {"url": sshd.url, "python": str(python or sshd.python),
             "identity_file": str(identity_file or sshd.identity_file),
             "known_hosts": str(known_hosts or sshd.known_hosts), **extra}
    lines = ["version: 1", "devices:", f"  {name}:"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in entry.items()]  # JSON scalars are YAML
    path.write_text("\n".join(lines) + "\n")
    return path


def _main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepare", action="store_true",
                    help="create the device user (root) and build the device envs")
    ap.add_argument("--check", action="store_true",
                    help="start a server, run the device python over ssh, print JSON")
    args = ap.parse_args(argv)
    if not (args.prepare or args.check):
        ap.error("say --prepare and/or --check")
    try:
        if args.prepare:
            if not SSHD.exists():
                print(f"device tests will skip: {NO_SSHD}")
                return 0
            prepare()
        if args.check:
            t0 = time.monotonic()
            with Sshd() as s:
                started = time.monotonic() - t0
                out = s.ssh(f"{s.python} -c 'import sys, os, numpy, onnxruntime; "
                            f"print(sys.prefix, os.getuid())'")
                print(json.dumps({"url": s.url, "user": s.user, "separate_user": s.separate_user,
                                  "start_s": round(started, 3), "rc": out.returncode,
                                  "stdout": out.stdout.strip(), "stderr": out.stderr.strip()}))
                return out.returncode
    except SshdUnavailable as e:
        print(f"device tests will skip: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
