"""The device dimension of a report: which device measured each row, the side-by-side
latency of every artifact on every device, and what each device is.

A row's `device` is absent or "local" for this machine (every schema-1 report); a row
measured elsewhere carries the device's name and is named "DEVICE:TARGET/LABEL", so the
plain names of local rows, and the budgets and baselines written for them, keep their
meaning."""

from __future__ import annotations

import re

from compressor.config.device_names import LOCAL, NAME

DEVICE_NAME = re.compile(NAME)
EMULATED_CELL = "(qemu)"


def device_of(row: dict) -> str:
    return row.get("device") or LOCAL


def artifact_key(row: dict) -> str:
    """The artifact's name on any device: 'onnx/int8-static'."""
    return f"{row['target']}/{row['label']}"


def qualified(device: str, key: str) -> str:
    """The row name of artifact `key` on `device` (local rows keep the plain name)."""
    return key if device == LOCAL else f"{device}:{key}"


def device_names(report: dict) -> list[str]:
    """Every device of the report, the reference first: this machine when it measured
    anything, then the devices section's order, then any other device rows name."""
    seen = [device_of(r) for r in report["artifacts"]]
    section = list((report.get("devices") or {}).keys())
    order = ([LOCAL] if LOCAL in seen or LOCAL in section else []) + section + seen
    return list(dict.fromkeys(order))


def has_devices(report: dict) -> bool:
    """Whether the report goes beyond this machine (schema-1 reports never do)."""
    return any(device_of(r) != LOCAL for r in report["artifacts"])


def grouped(report: dict) -> list[dict]:
    """The rows grouped by device in device order, each group in the run's order."""
    order = device_names(report)
    return sorted(report["artifacts"], key=lambda r: order.index(device_of(r)))


def device_info(report: dict, device: str) -> dict:
    return (report.get("devices") or {}).get(device) or {}


def device_emulated(report: dict, device: str) -> bool:
    """A qemu-emulated userland: its outputs are real, its latency is not the board's."""
    if device_info(report, device).get("emulated"):
        return True
    return any(row_emulated(report, r) for r in report["artifacts"] if device_of(r) == device)


def row_emulated(report: dict, row: dict) -> bool:
    return bool((row.get("metrics") or {}).get("emulated") or device_info(report, device_of(row)).get("emulated"))


def reference_device(report: dict) -> str | None:
    """The device other devices' latency is expressed against: the first one whose
    clock means something."""
    return next((d for d in device_names(report) if not device_emulated(report, d)), None)


def p50_at(row: dict | None, batch: int) -> float | None:
    m = (row or {}).get("metrics")
    if not m:
        return None
    return next((l["p50_ms"] for l in m["latency"] if l["batch"] == batch), None)


def side_by_side(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per artifact, one column per device: p50 ms, and in parentheses the time
    relative to the reference device (2.4x: takes 2.4 times as long)."""
    batch = report["benchmark"]["batch_sizes"][0]
    devices = device_names(report)
    ref = reference_device(report)
    by = {(device_of(r), artifact_key(r)): r for r in report["artifacts"]}
    keys = list(dict.fromkeys(artifact_key(r) for r in report["artifacts"]))
    header = ["artifact"] + [f"{d} (emulated)" if device_emulated(report, d) else d for d in devices]
    cells = []
    for key in keys:
        base = p50_at(by.get((ref, key)), batch) if ref else None
        cells.append([key] + [_cell(report, by.get((d, key)), batch, base, d == ref) for d in devices])
    return header, cells


def _cell(report: dict, row: dict | None, batch: int, base: float | None, is_ref: bool) -> str:
    if row is None:
        return "-"
    if row.get("status") != "ok" or not row.get("metrics"):
        return str(row.get("status") or "failed")
    p50 = p50_at(row, batch)
    if p50 is None:
        return "-"
    if row_emulated(report, row):
        return f"{p50:.3f} {EMULATED_CELL}"  # shown, but no ratio: qemu's clock says nothing of the board
    if is_ref or not base:
        return f"{p50:.3f}"
    return f"{p50:.3f} ({p50 / base:.1f}x)"


def side_by_side_caption(report: dict) -> str:
    ref = reference_device(report)
    batch = report["benchmark"]["batch_sizes"][0]
    rel = (f"; in parentheses the time relative to {ref} (2.0x takes twice as long)" if ref else "")
    emulated = any(device_emulated(report, d) for d in device_names(report))
    emu = ("; an emulated device runs the board's userland under qemu on this machine: its outputs are real, "
           f"its latency (cells marked \"{EMULATED_CELL}\") is not the board's" if emulated else "")
    return f"p50 ms at batch {batch} on each device{rel}{emu}."


def describe(report: dict, device: str) -> str:
    """One line: what the device is (kind, cpu, cores, memory, os, runtimes, threads)."""
    info = device_info(report, device)
    if not info:
        return "this machine (see the header)" if device == LOCAL else "no description in the report"
    kind = {"local": "this machine", "ssh": "over SSH"}.get(info.get("kind"), info.get("kind"))
    parts = [kind, " ".join(str(x) for x in (info.get("arch"), info.get("cpu")) if x)]
    parts += [f"{info['cores']} cores" if info.get("cores") else None,
              f"{info['memory_gb']:g} GB" if isinstance(info.get("memory_gb"), (int, float)) else None,
              info.get("os"), f"Python {info['python']}" if info.get("python") else None]
    parts += [f"{k} {v}" for k, v in (info.get("runtimes") or {}).items()]
    parts += [f"{info['threads']} threads" if info.get("threads") else None,
              f"governor {info['governor']}" if info.get("governor") else None,
              "emulated (qemu)" if info.get("emulated") else None]
    return ", ".join(str(p) for p in parts if p)


def device_notes(report: dict, device: str) -> list[str]:
    """The device's own notes (what makes its numbers not comparable) and what its
    temperature and clock did while it measured."""
    notes = [str(n) for n in device_info(report, device).get("notes") or []]
    rows = [r for r in report["artifacts"] if device_of(r) == device]
    return notes + _state_notes(rows)


def _state_notes(rows: list[dict]) -> list[str]:
    temps, freqs, out = [], [], []
    for r in rows:
        state = (r.get("metrics") or {}).get("device_state") or {}
        before, after = state.get("before") or {}, state.get("after") or {}
        temps += [x for x in (before.get("temp_c"), after.get("temp_c")) if isinstance(x, (int, float))]
        freqs += [x for x in (before.get("freq_mhz"), after.get("freq_mhz")) if isinstance(x, (int, float))]
        f0, f1 = before.get("freq_mhz"), after.get("freq_mhz")
        if isinstance(f0, (int, float)) and isinstance(f1, (int, float)) and f1 < 0.9 * f0:
            out.append(f"the clock fell from {f0:.0f} to {f1:.0f} MHz while measuring {r['name']} "
                       "(thermal throttling?): its latency is pessimistic")
    span = [_span(temps, "°C"), _span(freqs, "MHz")]
    if any(span):
        out.insert(0, "while measuring: " + ", ".join(s for s in span if s))
    return out


def _span(values: list[float], unit: str) -> str | None:
    if not values:
        return None
    low, high = f"{min(values):.0f}", f"{max(values):.0f}"
    return f"{low} {unit}" if low == high else f"{low}-{high} {unit}"


def devices_markdown(report: dict) -> list[str]:
    """The side-by-side table (several devices) and the Devices section (Markdown lines)."""
    if not has_devices(report):
        return []
    lines = []
    if len(device_names(report)) > 1:
        header, cells = side_by_side(report)
        lines += ["", "Latency on each device: " + side_by_side_caption(report), "",
                  "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", "Devices:", ""]
    for d in device_names(report):
        lines.append(f"- **{d}**: {describe(report, d)}")
        lines += [f"  - {n}" for n in device_notes(report, d)]
    return lines
