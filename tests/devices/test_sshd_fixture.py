"""The loopback sshd is a real OpenSSH server: real keys, real host key checking, a
separate device user whose Python holds only the runtimes, and real failures."""

from __future__ import annotations

import asyncio
import importlib.metadata as metadata
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import sshd as sshd_module

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None,
                                reason="openssh-client is not installed: apt-get install openssh-client")

PROBE = "import numpy, onnxruntime, ai_edge_litert.interpreter; import sys; print(sys.prefix)"


def _read_line(proc: subprocess.Popen, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise AssertionError(f"no line from ssh within {timeout} s (got {buf!r})")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            break
        buf += chunk
    return buf


def test_a_command_runs_as_the_separate_device_user_with_the_runtimes(separate_user):
    s = separate_user
    argv = ["ssh", "-i", str(s.identity_file), "-o", f"UserKnownHostsFile={s.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-F", "/dev/null", "-p", str(s.port), f"{s.user}@127.0.0.1",
            f'{s.python} -c "{PROBE}"; id -un; id -u; pwd']
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr + s.log_tail()
    prefix, user, uid, cwd = proc.stdout.split()
    assert prefix == str(s.python.parent.parent)
    assert user == s.user == sshd_module.DEVICE_USER
    assert int(uid) not in (0, os.geteuid())
    assert cwd == str(s.home)


def test_the_device_env_pins_the_projects_runtime_versions(sshd):
    names = ["numpy", "onnxruntime", "ai-edge-litert"]
    code = f"import importlib.metadata as m; print(*(m.version(n) for n in {names!r}))"
    proc = sshd.ssh(f'{sshd.python} -c "{code}"')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [metadata.version(n) for n in names]


def test_the_device_python_holds_only_the_runtimes(sshd):
    code = ("import importlib.util as u; "
            "print([m for m in ('compressor', 'benchmarks', 'targets', 'torch', 'onnx') if u.find_spec(m)])")
    proc = sshd.ssh(f'cd /tmp && {sshd.python} -c "{code}"')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_bare_and_empty_envs_lack_a_runtime_and_numpy(sshd):
    bare = sshd.ssh(f'{sshd.python_bare} -c "import numpy; import onnxruntime"')
    assert bare.returncode == 1
    assert "No module named 'onnxruntime'" in bare.stderr
    empty = sshd.ssh(f'{sshd.python_empty} -c "import numpy"')
    assert empty.returncode == 1
    assert "No module named 'numpy'" in empty.stderr


def test_the_wrong_key_is_refused(sshd):
    proc = sshd.ssh("true", identity=sshd.other_identity())
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr
    assert sshd.ssh("true").returncode == 0  # and the right key still works after it


def test_a_changed_host_key_is_refused(sshd):
    proc = sshd.ssh("true", known_hosts=sshd.wrong_known_hosts())
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr


def test_a_restart_with_a_new_host_key_makes_the_old_known_hosts_stale(fresh_sshd):
    port = fresh_sshd.port
    stale = fresh_sshd.restart(new_host_key=True)
    assert fresh_sshd.port == port
    refused = fresh_sshd.ssh("true", known_hosts=stale)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    assert fresh_sshd.ssh("echo ok").stdout == "ok\n"


def test_kill_spares_established_sessions_and_kill_all_cuts_them(fresh_sshd):
    s = fresh_sshd
    session = subprocess.Popen(s.ssh_argv("echo started; read x; echo got $x; sleep 60"),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, bufsize=0)
    try:
        assert _read_line(session) == b"started\n"
        tree = sshd_module._tree(s._listener())
        assert len(tree) >= 3  # listener, its session sshd(s), the remote shell

        s.kill()  # the listener only: like a real sshd, the session lives on
        assert not s.running
        refused = s.ssh("true")
        assert refused.returncode == 255 and "Connection refused" in refused.stderr
        session.stdin.write(b"hello\n")
        assert _read_line(session) == b"got hello\n"

        s.kill_all()  # the device is gone mid-run
        assert session.wait(10) == 255
        assert not [p for p in tree if sshd_module._alive(p)]  # the remote `sleep` too
    finally:
        session.kill()
        session.wait()
    s.restart()
    assert s.ssh("echo back").stdout == "back\n"


def test_close_leaves_no_process_and_no_files_behind():
    try:
        s = sshd_module.Sshd().start()
    except sshd_module.SshdUnavailable as e:
        pytest.skip(str(e))
    session = subprocess.Popen(s.ssh_argv("echo started; sleep 60"), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    try:
        assert _read_line(session) == b"started\n"
        tree = sshd_module._tree(s._listener())
        s.close()
        assert not [p for p in tree if sshd_module._alive(p)]
        assert not s.dir.exists()
        assert session.wait(10) == 255
    finally:
        session.kill()
        session.wait()


def test_sixteen_concurrent_ssh_clients(sshd):
    procs = [subprocess.Popen(sshd.ssh_argv(f"sleep 0.1; echo {i}"), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(16)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [e for _, e in outs]
    assert [o for o, _ in outs] == [f"{i}\n" for i in range(16)]


def test_asyncssh_accepts_the_known_hosts_opens_sixteen_channels_and_sftp(sshd, tmp_path):
    asyncssh = pytest.importorskip("asyncssh")
    work = sshd.device_dir()
    (tmp_path / "runner.py").write_text("print('shipped')\n")

    async def main():
        async with asyncssh.connect(**sshd.asyncssh_options()) as conn:
            results = await asyncio.gather(*(conn.run(f"sleep 0.2; echo {i}", check=True)
                                             for i in range(16)))
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(tmp_path / "runner.py"), f"{work}/runner.py")
            ran = await conn.run(f"{sshd.python} {work}/runner.py", check=True)
            return [r.stdout for r in results], ran.stdout

    outs, ran = asyncio.run(main())
    assert outs == [f"{i}\n" for i in range(16)]
    assert ran == "shipped\n"
    assert (work / "runner.py").stat().st_uid == sshd.uid


def test_asyncssh_refuses_a_changed_host_key_and_the_wrong_key(sshd):
    asyncssh = pytest.importorskip("asyncssh")

    async def connect(**overrides):
        async with asyncssh.connect(**sshd.asyncssh_options(**overrides)) as conn:
            await conn.run("true", check=True)

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(connect(known_hosts=str(sshd.wrong_known_hosts())))
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(connect(client_keys=[str(sshd.other_identity())]))


def test_the_device_disk_fills_up_on_a_tmpfs_workdir(sshd, tmpfs_workdir):
    work = tmpfs_workdir(32)
    proc = sshd.ssh(f"cd {work} && echo small > ok && dd if=/dev/zero of=big bs=1024 count=100")
    assert proc.returncode != 0
    assert "No space left on device" in proc.stderr
    assert (work / "ok").read_text() == "small\n"


def test_device_dir_belongs_to_the_device_user(sshd):
    d = sshd.device_dir()
    proc = sshd.ssh(f"echo hi > {d}/f && cat {d}/f")
    assert proc.stdout == "hi\n", proc.stderr
    assert d.stat().st_uid == sshd.uid


def test_without_root_sshd_logs_in_as_the_same_user(separate_user):
    """The non-root mode, for real: the device user runs the module with the system python."""
    s = separate_user
    d = s.device_dir()
    shutil.copy(sshd_module.__file__, d / "sshd.py")
    os.chown(d / "sshd.py", s.uid, -1)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(s.home), "TMPDIR": "/tmp",
           "LANG": "C.UTF-8"}
    proc = subprocess.run([s.system_python, str(d / "sshd.py"), "--check"], capture_output=True,
                          text=True, timeout=60, user=s.uid, group=os.stat(d).st_gid,
                          extra_groups=[], env=env, cwd=str(d))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["separate_user"] is False and result["user"] == s.user
    assert result["stdout"] == f"{s.python.parent.parent} {s.uid}"
    assert result["start_s"] < 1


def test_an_env_is_stale_when_a_pinned_version_differs():
    stamp = {"packages": {"numpy": "2.4.6", "onnxruntime": "1.32.0"}}
    assert sshd_module._stamp_ok(stamp, {"numpy": "2.4.6", "onnxruntime": "1.32.0"})
    assert not sshd_module._stamp_ok(stamp, {"numpy": "2.4.6", "onnxruntime": "1.33.0"})
    assert not sshd_module._stamp_ok(stamp, {"numpy": "2.4.6"})
    assert sshd_module._stamp_ok(stamp, {"numpy": None, "onnxruntime": None})  # nothing to pin to
    assert not sshd_module._stamp_ok(None, {})


def test_devices_yaml_names_the_server(devices_yaml, sshd):
    doc = yaml.safe_load(devices_yaml.read_text())
    assert doc["version"] == 1
    assert doc["devices"]["loop"] == {"url": sshd.url, "python": str(sshd.python),
                                      "identity_file": str(sshd.identity_file),
                                      "known_hosts": str(sshd.known_hosts)}
    assert sshd.url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"


def test_a_server_starts_in_well_under_a_second():
    t0 = time.monotonic()
    try:
        with sshd_module.Sshd() as s:
            started = time.monotonic() - t0
            assert s.ssh("true").returncode == 0
    except sshd_module.SshdUnavailable as e:
        pytest.skip(str(e))
    assert started < 1, started
