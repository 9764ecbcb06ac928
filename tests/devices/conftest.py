"""Fixtures for remote-device tests: a real OpenSSH server on loopback (see sshd.py).

- ``sshd``         session-scoped, shared: do not break it (a test that must, calls
                   ``sshd.ensure_running()`` after; ``devices_yaml`` does too).
- ``fresh_sshd``   a server of its own for one test (starts in ~50 ms): kill it, change
                   its host key, restart it as you like.
- ``devices_yaml`` a devices.yaml naming ``sshd`` as device ``loop``.
- ``tmpfs_workdir`` factory: ``tmpfs_workdir(size_kb)`` -> a tiny tmpfs owned by the
                   device user, unmounted afterwards (root only, else the test skips).

Where the machine cannot run them (no openssh-server, not root for the separate user or
a mount), the tests skip with the reason; pytest's -ra prints it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sshd import Sshd, SshdUnavailable, write_devices_yaml  # noqa: E402


def _new_server() -> Sshd:
    try:
        return Sshd().start()
    except SshdUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def sshd():
    server = _new_server()
    yield server
    server.close()


@pytest.fixture
def fresh_sshd():
    server = _new_server()
    yield server
    server.close()


@pytest.fixture
def devices_yaml(tmp_path, sshd) -> Path:
    return write_devices_yaml(tmp_path / "devices.yaml", sshd.ensure_running())


@pytest.fixture
def separate_user(sshd) -> Sshd:
    """sshd, where it logs in as a separate unprivileged user (else skip)."""
    if not sshd.separate_user:
        pytest.skip(sshd.why_not_separate)
    return sshd


@pytest.fixture
def tmpfs_workdir(sshd):
    stack = []

    def make(size_kb: int = 64, server: Sshd | None = None) -> Path:
        cm = (server or sshd).tmpfs_workdir(size_kb)
        try:
            path = cm.__enter__()
        except SshdUnavailable as e:
            pytest.skip(str(e))
        stack.append(cm)
        return path

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
