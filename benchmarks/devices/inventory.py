"""Where devices are defined and how they are found by name.

Two files, the second overriding the first by device name:
- the user's: $XDG_CONFIG_HOME/compressor/devices.yaml (~/.config/compressor/devices.yaml);
- the project's: ./devices.yaml, or the file given with --devices or $COMPRESSOR_DEVICES.
`local` is always there: this machine, measured by the local harness.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from compressor.config.device_names import LOCAL, valid_name
from compressor.config.devices import DeviceSpec, DevicesFile
from compressor.config.reading import closest, read_file, read_yaml, validate_yaml
from compressor.errors import RecipeError

WHAT = "a devices file is a YAML mapping with 'version: 1' and 'devices: {NAME: {url: ssh://user@host}}'"


@dataclass(frozen=True)
class Device:
    name: str
    spec: DeviceSpec
    source: Path | None        # the file that defined it (None for local)

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL


LOCAL_DEVICE = Device(LOCAL, DeviceSpec(url=LOCAL), None)


def user_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "compressor" / "devices.yaml"


def project_file(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("COMPRESSOR_DEVICES")
    return Path(env) if env else Path("devices.yaml")


def read_devices_file(path: Path) -> DevicesFile:
    return read_devices_file_text(read_file(path, "devices"), path)


class Inventory:
    def __init__(self, explicit: Path | None = None) -> None:
        self.files: list[Path] = []
        self.devices: dict[str, Device] = {LOCAL: LOCAL_DEVICE}
        if explicit is not None and not Path(explicit).is_file():
            raise RecipeError(f"--devices {explicit}: no such file; create it with `compressor devices add NAME URL "
                              f"--file {explicit}`")
        for path in (user_file(), project_file(explicit)):
            if path.is_file() and path not in self.files:
                self.files.append(path)
                for name, spec in read_devices_file(path).devices.items():
                    self.devices[name] = Device(name, spec, path)

    def get(self, name: str) -> Device:
        if name in self.devices:
            return self.devices[name]
        where = ", ".join(map(str, self.files)) or f"no devices file ({user_file()} or ./devices.yaml)"
        known = ", ".join(sorted(self.devices))
        raise RecipeError(f"device {name!r} is not in the inventory ({where}){closest(name, self.devices)} "
                          f"(known: {known}); add it with `compressor devices add {name} ssh://USER@HOST`")

    def resolve(self, names: list[str]) -> list[Device]:
        seen: list[str] = []
        for n in names:
            if n in seen:
                raise RecipeError(f"device {n!r} is named twice; name each device once")
            seen.append(n)
        return [self.get(n) for n in names]


# --- writing: `devices add` and `devices remove` keep the user's comments -----------

def add_device(path: Path, name: str, entry: dict, replace: bool = False) -> None:
    """Add (or with `replace`, redefine) one device in `path`, creating the file when it
    does not exist. The new entry is inserted as text under `devices:`, so the comments and
    layout of a hand-written file stay as they are."""
    from compressor.fsutil import write_text

    if not valid_name(name) or name == LOCAL:
        raise RecipeError(f"device name {name!r}: use letters, digits, '.', '_' and '-' (not 'local'), "
                          "at most 64 characters")
    from pydantic import ValidationError

    from compressor.config.reading import describe

    try:
        DeviceSpec.model_validate(entry)  # the same checks as reading it back
    except ValidationError as e:
        raise RecipeError(describe(e, None, f"device {name}", DeviceSpec)) from None
    text = read_file(path, "devices") if path.exists() else ""
    current = read_devices_file_text(text, path) if text.strip() else DevicesFile(version=1)
    if name in current.devices:
        if not replace:
            raise RecipeError(f"{path}: device {name!r} is already defined (url {current.devices[name].url}); "
                              "pass --replace to redefine it, or remove it first")
        text = _without(text, path, name)
    block = yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=False)
    text = _with_entry(text, path, block)
    read_devices_file_text(text, path)  # what we write reads back
    write_text(path, text)


def remove_device(path: Path, name: str) -> None:
    from compressor.fsutil import write_text

    if not path.is_file():
        raise RecipeError(f"{path}: no such devices file")
    text = read_file(path, "devices")
    devices = read_devices_file_text(text, path).devices
    if name not in devices:
        raise RecipeError(f"{path}: no device {name!r}{closest(name, devices)} "
                          f"(it has: {', '.join(sorted(devices)) or 'none'})")
    text = _without(text, path, name)
    read_devices_file_text(text, path)
    write_text(path, text)


def read_devices_file_text(text: str, path: Path) -> DevicesFile:
    data, root = read_yaml(text, str(path), WHAT)
    return validate_yaml(DevicesFile, data, root, str(path))


def _devices_node(text: str, path: Path):
    root = yaml.compose(text)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if key.value == "devices":
            return value
    return None


def _with_entry(text: str, path: Path, block: str) -> str:
    if not text.strip():
        return "version: 1\ndevices:\n" + _indent(block, 2)
    node = _devices_node(text, path)
    if node is None:
        return text.rstrip("\n") + "\ndevices:\n" + _indent(block, 2)
    if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
        # `devices: {}` or a flow mapping: the file is rewritten (a hand-formatted file
        # keeps its comments in the common block style handled below).
        data = yaml.safe_load(text)
        data["devices"] = {**(data.get("devices") or {}), **yaml.safe_load(block)}  # `devices:` empty: null
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    indent = node.value[0][0].start_mark.column
    lines = text.splitlines(keepends=True)
    last_line = _last_content_line(lines, node)
    if lines and not lines[last_line].endswith("\n"):
        lines[last_line] += "\n"
    lines.insert(last_line + 1, _indent(block, indent))
    return "".join(lines)


def _last_content_line(lines: list[str], node) -> int:
    """The last line of the mapping `node` that holds something (YAML's end mark points
    past trailing blank and comment lines)."""
    end = min(_end_line(lines, node.end_mark), len(lines) - 1)
    while end > node.start_mark.line and (not lines[end].strip() or lines[end].lstrip().startswith("#")):
        end -= 1
    return end


def _without(text: str, path: Path, name: str) -> str:
    node = _devices_node(text, path)
    for key, value in node.value:
        if key.value == name:
            if node.flow_style:
                data = yaml.safe_load(text)
                data["devices"].pop(name)
                return yaml.safe_dump(data, sort_keys=False)
            lines = text.splitlines(keepends=True)
            first = key.start_mark.line
            last = min(_end_line(lines, value.end_mark), len(lines) - 1)
            while last > first and (not lines[last].strip() or lines[last].lstrip().startswith("#")):
                last -= 1
            return "".join(lines[:first] + lines[last + 1:])
    return text


def _end_line(lines: list[str], mark) -> int:
    """The line a node ends on: YAML's end mark of a block node sits at the start of the
    next token, on a line of its own past the node when only indentation precedes it."""
    if mark.line >= len(lines) or not lines[mark.line][:mark.column].strip():
        return mark.line - 1
    return mark.line


def _indent(block: str, n: int) -> str:
    return "".join((" " * n + ln if ln.strip() else ln) for ln in block.splitlines(keepends=True))

