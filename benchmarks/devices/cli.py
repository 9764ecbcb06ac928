"""`compressor devices add | list | remove | probe | trust`."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typing import TYPE_CHECKING

from compressor.errors import CompressorError, DeviceError, RecipeError

if TYPE_CHECKING:
    from benchmarks.devices.inventory import Inventory

# The inventory (yaml, pydantic) is imported by the subcommands, not by the parser that
# `compressor --help` builds.


def add_arguments(sub) -> None:
    import argparse

    d = sub.add_parser("devices", help="the devices artifacts are measured on (devices.yaml): add, list, remove, "
                       "probe, trust", formatter_class=argparse.RawDescriptionHelpFormatter, epilog="""examples:
  compressor devices add pi5 ssh://pi@192.168.1.20 --threads 4
  compressor devices trust pi5        # check and accept its host key
  compressor devices probe            # CPU, memory, OS, runtimes of every device
  compressor bench model.onnx --device pi5 --device local""")
    dsub = d.add_subparsers(dest="devices_command", required=True, parser_class=type(d))
    a = dsub.add_parser("add", help="add a device: compressor devices add pi5 ssh://pi@192.168.1.20")
    a.add_argument("name", help="the device's name in recipes and --device (letters, digits, \".\", \"-\", \"_\")")
    a.add_argument("url", help="ssh://[user@]host[:port] or local")
    a.add_argument("--python", help="the Python on the device (default python3)")
    a.add_argument("--threads", type=int, help="runtime threads on the device (default: the recipe's or --threads)")
    a.add_argument("--workdir", help="folder on the device for the work folder (default its temp folder)")
    a.add_argument("--identity-file", help="SSH private key (default: your agent and ~/.ssh)")
    a.add_argument("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    a.add_argument("--replace", action="store_true", help="redefine a device of that name")
    for p in (a, dsub.add_parser("remove", help="remove a device from a devices file")):
        where = p.add_mutually_exclusive_group()
        where.add_argument("--project", action="store_true", help="./devices.yaml (default: the user's file, "
                           "$XDG_CONFIG_HOME/compressor/devices.yaml, ~/.config/... without it)")
        where.add_argument("--file", type=Path, help="this devices file")
        if p is not a:
            p.add_argument("name")
    ls = dsub.add_parser("list", help="the devices of the inventory")
    pr = dsub.add_parser("probe", help="what each device is and has: CPU, memory, OS, Python, runtimes, "
                         "governor, temperature")
    pr.add_argument("names", nargs="*", help="devices (default: all)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    tr = dsub.add_parser("trust", help="accept a device's SSH host key (shows its fingerprint first)")
    tr.add_argument("name")
    tr.add_argument("--yes", action="store_true", help="accept without asking")
    for p in (ls, pr, tr):
        p.add_argument("--devices", type=Path, metavar="FILE", help="devices inventory (default ./devices.yaml "
                       "over the user's)")


def devices_command(args: argparse.Namespace) -> int:
    return {"add": _add, "remove": _remove, "list": _list, "probe": _probe, "trust": _trust}[args.devices_command](args)


def _target_file(args) -> Path:
    from benchmarks.devices.inventory import project_file, user_file

    return args.file if args.file else project_file() if args.project else user_file()


def _add(args) -> int:
    entry = {"url": args.url}
    for key in ("python", "threads", "workdir", "identity_file", "known_hosts"):
        if getattr(args, key) is not None:
            entry[key] = getattr(args, key)
    from benchmarks.devices.inventory import add_device, user_file

    path = _target_file(args)
    if path == user_file():
        from compressor.fsutil import make_dirs

        make_dirs(path.parent)
    try:
        add_device(path, args.name, entry, replace=args.replace)
    except RecipeError as e:  # a flag's value: name the flag rather than a YAML line
        raise RecipeError(str(e).replace(f"{path}:", f"devices add {args.name}:", 1)) from None
    print(f"added {args.name} ({args.url}) to {path}; check it with `compressor devices probe {args.name}`")
    return 0


def _remove(args) -> int:
    from benchmarks.devices.inventory import remove_device

    path = _target_file(args)
    remove_device(path, args.name)
    print(f"removed {args.name} from {path}")
    return 0


def _list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from benchmarks.devices.inventory import Inventory

    inv = Inventory(args.devices)
    table = Table(title="devices (" + (", ".join(map(str, inv.files)) or "no devices file") + ")",
                  title_justify="left")
    for col in ("name", "url", "python", "threads", "from"):
        table.add_column(col, overflow="fold")
    for name, d in inv.devices.items():
        table.add_row(name, d.spec.url if not d.is_local else "this machine", d.spec.python if not d.is_local else "-",
                      str(d.spec.threads or "-"), str(d.source or "-"))
    Console().print(table)
    return 0


def probe_devices(inv: Inventory, names: list[str]) -> dict[str, dict]:
    """Probe every named device at the same time: {name: probe} or {name: {'error': line}}."""
    from benchmarks.devices.remote import DeviceSession

    devices = inv.resolve(names)

    def one(device):
        if device.is_local:
            from benchmarks.devices.runner.probe import probe

            return probe()
        session = DeviceSession(device)
        try:
            return session.open()
        except CompressorError as e:
            return {"error": str(e)}
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=max(1, len(devices))) as pool:
        return dict(zip([d.name for d in devices], pool.map(one, devices)))


def _probe(args) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from benchmarks.devices.inventory import Inventory

    inv = Inventory(args.devices)
    names = args.names or [n for n in inv.devices if n != "local"] or ["local"]
    found = probe_devices(inv, names)
    if args.json:
        print(json.dumps(found, indent=2))
        return 2 if any("error" in p for p in found.values()) else 0
    console = Console()
    table = Table(box=box.SIMPLE_HEAD, title_justify="left", title="devices", pad_edge=False, show_edge=False,
                  collapse_padding=True)
    for col in ("device", "arch", "cpu", "cores", "mem", "os", "python", "runtimes", "gov", "temp"):
        table.add_column(col, overflow="fold", justify="right" if col in ("cores", "mem", "temp") else "left",
                         no_wrap=col in ("runtimes", "arch", "python", "device"))
    for name, p in found.items():
        if "error" in p:
            continue
        state = p.get("state") or {}
        runtimes = "\n".join(f"{SHORT.get(k, k)} {v}" for k, v in p.get("runtimes", {}).items()
                              if k != "numpy") or "none"  # one a line: never broken inside a name
        arch = p.get("arch", "?") + (" (emulated)" if p.get("emulated") else "")
        table.add_row(name, arch, str(p.get("cpu") or "?"), str(p.get("cores") or "?"),
                      f"{p['memory_gb']:.0f}G" if p.get("memory_gb") else "?", _short_os(p.get("os", "?")),
                      p.get("python", "?"), runtimes, p.get("governor") or "-",
                      f"{state['temp_c']:.0f}°C" if state.get("temp_c") is not None else "-")
    console.print(table)
    for name, p in found.items():
        if "error" in p:
            console.print(f"[red]{p['error']}[/red]", soft_wrap=True)
        elif "numpy" not in p.get("runtimes", {}):
            console.print(f"[yellow]{name}: numpy is missing there: the runner needs it (pip install numpy)[/yellow]")
        elif p.get("governor") and p["governor"] != "performance":
            console.print(f"[yellow]{name}: the CPU governor is {p['governor']!r}; for steady latency set "
                          "'performance' (cpupower frequency-set -g performance)[/yellow]")
    return 2 if any("error" in p for p in found.values()) else 0


SHORT = {"onnxruntime": "ort", "ai-edge-litert": "litert", "tflite-runtime": "tflite-rt"}


def _short_os(text: str) -> str:
    """'Linux 6.6.31+rpt-rpi-2712' -> 'Linux 6.6': the full release is in --json."""
    system, _, release = text.partition(" ")
    return f"{system} {'.'.join(release.split('.')[:2])}".strip()


def _trust(args) -> int:
    from benchmarks.devices.inventory import Inventory
    from benchmarks.devices.ssh import SshTransport, host_pattern, known_hosts_path

    device = Inventory(args.devices).get(args.name)
    if device.spec.is_local:
        raise RecipeError(f"{args.name} is this machine: there is no host key to trust")
    t = SshTransport(device.name, device.spec)
    try:
        key = t.server_key()
    finally:
        t.close()
    if key is None:
        raise DeviceError(f"{args.name}: {t.host}:{t.port} presented no host key")
    shown = host_pattern(t.host, t.port)
    print(f"{shown} presents {key.get_algorithm()} key {key.get_fingerprint('sha256')}")
    if not args.yes:
        answer = input("accept it? Compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the device "
                       "[y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not accepted")
            return 2
    path = known_hosts_path(device.spec)
    line = f"{shown} {key.export_public_key('openssh').decode().strip()}\n"
    from compressor.fsutil import make_dirs

    make_dirs(path.parent)
    with open(path, "a", encoding="utf-8") as f:  # the user's own file: append, never rewrite
        f.write(line)
    print(f"added the key of {shown} to {path}")
    return 0
