"""The device inventory (`devices.yaml`): edge boards and other machines artifacts are
measured on, by name. Plain data, strict like the recipe. Secrets never go here: SSH keys
and agents are used as the user already has them (a key *path* may be named).

    version: 1
    devices:
      pi5:
        url: ssh://pi@192.168.1.20          # ssh://[user@]host[:port], or local
        python: /home/pi/venv/bin/python    # default python3
        threads: 4                          # default: the recipe's / --threads
        env: {OMP_WAIT_POLICY: PASSIVE}
        affinity: [0, 1, 2, 3]              # pin the runner to these CPUs
        cooldown: {mode: temperature, margin_c: 3, max_wait_s: 120}   # or {mode: pause, seconds: 10}
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from compressor.config.strict import MAX_THREADS, Bool, Float, Int, Strict, UserPath, Version

from compressor.config.device_names import LOCAL, NAME

MAX_CPUS = 4096


def _device_url(v: str) -> str:
    if v in (LOCAL, "local://"):
        return LOCAL
    parts = urlsplit(v)
    if parts.scheme == "adb":
        raise ValueError("adb:// devices are not supported yet; reach the device over ssh:// (e.g. Termux's sshd)")
    if parts.scheme != "ssh":
        raise ValueError(f"{v!r}: use ssh://[user@]host[:port] or local")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{v!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise ValueError(f"{v!r}: use ssh://[user@]host[:port] (no path, no password: keys and agents are used "
                         "as your ssh setup has them)")
    if port == 0:
        raise ValueError(f"{v!r}: the port must be a number from 1 to 65535")
    return v


def _remote_path(v: str) -> str:
    if not v.startswith("/") or "\0" in v or len(v) > 1024:
        raise ValueError(f"{v!r}: an absolute path on the device, such as /tmp or /data/local/tmp")
    return v


DeviceUrl = Annotated[str, AfterValidator(_device_url)]
RemotePath = Annotated[str, AfterValidator(_remote_path)]
DeviceName = Annotated[str, Field(pattern=f"^{NAME}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class Cooldown(Strict):
    mode: Literal["none", "pause", "temperature"] = Field(
        "none", description="between artifacts: nothing, a fixed pause, or wait until the temperature is back near "
        "where it was before the first one")
    seconds: Float = Field(0.0, ge=0, le=3600, description="the pause, for mode pause")
    margin_c: Float = Field(3.0, gt=0, le=50, description="degrees above idle that count as cooled down")
    max_wait_s: Float = Field(120.0, ge=0, le=3600, description="give up waiting for the temperature after this")


class DeviceSpec(Strict):
    url: DeviceUrl = Field(description="ssh://[user@]host[:port] or local")
    python: str = Field("python3", min_length=1, max_length=1024, pattern=r"^[^\s\x00]+$",
                        description="the Python to run on the device (a venv's bin/python)")
    threads: Int | None = Field(None, ge=1, le=MAX_THREADS, description="runtime threads on this device")
    env: dict[EnvName, str | Int] = Field(default_factory=dict, max_length=256,
                                          description="environment of the runner on the device")
    affinity: list[Annotated[Int, Field(ge=0, lt=MAX_CPUS)]] | None = Field(
        None, min_length=1, max_length=MAX_CPUS, description="CPU numbers the runner is pinned to")
    cooldown: Cooldown = Cooldown()
    workdir: RemotePath | None = Field(None, description="where the work folder is made on the device "
                                       "(default: its temp folder)")
    identity_file: UserPath | None = Field(None, description="SSH private key (default: your agent and ~/.ssh)")
    known_hosts: UserPath | None = Field(None, description="known_hosts file (default: ~/.ssh/known_hosts)")
    connect_timeout_s: Float = Field(15.0, gt=0, le=600)
    command_timeout_s: Float = Field(3600.0, gt=0, le=86_400, description="longest one measurement may take")
    emulated: Bool | None = Field(None, description="latency is emulated (qemu): never gated; default: detected")
    description: str | None = Field(None, max_length=500)

    @field_validator("affinity")
    @classmethod
    def _each_cpu_once(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"lists each CPU once (got {v})")
        return v

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL


class DevicesFile(Strict):
    version: Version
    devices: dict[DeviceName, DeviceSpec] = Field(default_factory=dict, max_length=1000)

    @field_validator("devices", mode="before")
    @classmethod
    def _none_is_empty(cls, v):
        return {} if v is None else v  # `devices:` with every entry removed

    @field_validator("devices")
    @classmethod
    def _not_reserved(cls, v: dict[str, DeviceSpec]) -> dict[str, DeviceSpec]:
        if LOCAL in v:
            raise ValueError("'local' is this machine and cannot be redefined; name the entry otherwise "
                             "(e.g. local-1t with url: local)")
        return v


def ssh_parts(url: str) -> tuple[str | None, str, int]:
    """(user, host, port) of an ssh:// URL (port 22 by default)."""
    parts = urlsplit(url)
    return parts.username, parts.hostname, parts.port or 22

