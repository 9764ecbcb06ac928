"""What the device is and has (standard library only: it answers before numpy is known to be there)."""

import glob
import os
import platform
import sys

PROTOCOL = 1
DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert",
                 "tflite_runtime": "tflite-runtime", "openvino": "openvino", "executorch": "executorch",
                 "numpy": "numpy", "torch": "torch"}


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return default


def thermal():
    """{'temp_c': hottest sensor, 'freq_mhz': mean current CPU frequency}; None where the
    device does not expose them (containers, VMs, emulators)."""
    temps = []
    for zone in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        raw = _read(zone)
        if raw and raw.lstrip("-").isdigit():
            temps.append(int(raw) / 1000.0)
    freqs = []
    for cpu in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"):
        raw = _read(cpu)
        if raw and raw.isdigit():
            freqs.append(int(raw) / 1000.0)
    return {"temp_c": max(temps) if temps else None,
            "freq_mhz": round(sum(freqs) / len(freqs), 1) if freqs else None}


# Arm's part numbers (MIDR_EL1 bits 15:4, "CPU part" in /proc/cpuinfo) of the cores edge
# boards carry: ARM's cpuinfo has no model name line.
ARM_PARTS = {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
             0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
             0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
             0xd42: "Cortex-A78AE", 0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710",
             0xd48: "Cortex-X2", 0xd49: "Neoverse-N2", 0xd4b: "Cortex-A78C", 0xd4d: "Cortex-A715",
             0xd4e: "Cortex-X3", 0xd4f: "Neoverse-V2", 0xd80: "Cortex-A520", 0xd81: "Cortex-A720",
             0xd82: "Cortex-X4"}


def _cpu_model_and_arch():
    model, x86_flags, parts = None, False, []
    text = _read("/proc/cpuinfo", "")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware", "cpu model") and not model:
            model = value.strip()
        if key == "flags":
            x86_flags = True
        if key == "CPU part":
            try:
                parts.append(ARM_PARTS.get(int(value.strip(), 16), value.strip()))
            except ValueError:
                pass
    if parts:  # big.LITTLE boards list two kinds
        cores = " + ".join("%dx %s" % (parts.count(p), p) for p in sorted(set(parts), key=parts.index))
        model = "%s (%s)" % (model, cores) if model else cores
    return model, x86_flags


def _emulated(arch, x86_flags):
    """qemu-user: the kernel is another architecture than the interpreter (the kernel's own
    /proc/sys/kernel/arch is not faked, /proc/cpuinfo may be)."""
    kernel = _read("/proc/sys/kernel/arch") or platform.uname().machine

    def family(a):
        a = (a or "").lower()
        return "x86" if a in ("x86_64", "amd64", "i386", "i686") else "arm64" if a in ("aarch64", "arm64") else a

    return family(kernel) != family(arch) or bool(x86_flags and family(arch) != "x86")


def _memory_gb():
    for line in (_read("/proc/meminfo", "") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _versions():
    out, missing = {}, {}
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        metadata = None
    for module, dist in DISTRIBUTIONS.items():
        try:
            __import__(module if module != "ai_edge_litert" else "ai_edge_litert.interpreter")
        except Exception as e:  # ImportError, or a wheel built for another CPU
            missing[dist] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            continue
        version = "?"
        if metadata is not None:
            try:
                version = metadata.version(dist)
            except Exception:
                version = getattr(sys.modules.get(module), "__version__", "?")
        out[dist] = version
    return out, missing


def probe(workdir=None):
    model, x86_flags = _cpu_model_and_arch()
    arch = platform.machine()
    runtimes, missing = _versions()
    free = None
    try:
        st = os.statvfs(workdir or "/tmp")
        free = st.f_bavail * st.f_frsize
    except OSError:
        pass
    governors = sorted({g for g in (_read(p) for p in glob.glob(
        "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")) if g})
    zones = [_read(os.path.join(os.path.dirname(p), "type"), "?")
             for p in sorted(glob.glob("/sys/class/thermal/thermal_zone*/temp"))]
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "protocol": PROTOCOL, "arch": arch, "cpu": model or platform.processor() or arch,
        "cores": os.cpu_count(), "usable_cores": affinity, "memory_gb": _memory_gb(),
        "os": "%s %s" % (platform.system(), platform.release()),
        "distro": _os_release(), "python": platform.python_version(), "runtimes": runtimes,
        "missing": missing, "governor": ",".join(governors) or None, "thermal_zones": zones,
        "state": thermal(), "free_bytes": free,
        "emulated": _emulated(arch, x86_flags),
        "boot_id": boot_id(),
    }


def boot_id():
    """The running kernel's id: two devices with the same one are one machine."""
    return _read("/proc/sys/kernel/random/boot_id")


def _os_release():
    for line in (_read("/etc/os-release", "") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None
