"""The run report: versioned JSON for machines, Markdown for pull requests, a rich
table for the terminal. One row per artifact."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from benchmarks.device_report import (LOCAL, artifact_key, describe, device_emulated, device_names, device_notes,
                                      device_of, devices_markdown, grouped, has_devices, row_emulated,
                                      side_by_side, side_by_side_caption)

SCHEMA = "compressor.report"
SCHEMA_VERSION = 2  # 2: rows measured on other devices, and the devices section


def build(name: str, model: dict, reference: dict, bench: dict, machine: dict,
          artifacts: list[dict], devices: dict | None = None) -> dict[str, Any]:
    """Assemble the report and derive the comparisons against each row's fp32 twin: the
    fp32 artifact of the same target measured on the same device. `devices` describes
    each device by name (kind, cpu, runtimes, notes)."""
    rows = [dict(a) for a in artifacts]
    fp32_twin = {(device_of(r), r["target"]): r for r in rows if r["label"] == "fp32" and r.get("metrics")}
    batch = bench["batch_sizes"][0]
    ref_acc = reference.get("accuracy")
    for r in rows:
        r.setdefault("notes", [])
        m = r.get("metrics")
        if not m:
            continue
        if ref_acc is not None and m.get("accuracy") is not None:
            r["accuracy_delta"] = m["accuracy"] - ref_acc
        base = fp32_twin.get((device_of(r), r["target"]))
        if base is not None and base is not r:
            device = (devices or {}).get(device_of(r)) or {}
            _against_fp32(r, base, batch, emulated=bool(m.get("emulated") or device.get("emulated")))
    report = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model, "reference": reference, "benchmark": bench, "machine": machine, "artifacts": rows,
    }
    if devices is not None:
        report["devices"] = devices
    return report


def _against_fp32(r: dict, base: dict, batch: int, emulated: bool) -> None:
    """Speedup and size ratio over the fp32 twin, and a loud note when int8 is slower."""
    m, notes = r["metrics"], r["notes"]
    where = f" on {device_of(r)}" if device_of(r) != LOCAL else ""
    p50 = _p50(m, batch)
    p50_base = _p50(base["metrics"], batch)
    if p50 and p50_base:
        r["speedup_vs_fp32"] = p50_base / p50
        # Under qemu the clock measures the emulator, not the board: no verdict on speed.
        if r["speedup_vs_fp32"] < 1.0 and not emulated:
            # Slower by a margin that matters (3%) and beyond the timing noise.
            if r["speedup_vs_fp32"] < 0.97 and _significantly_slower(m, base["metrics"], batch):
                r["slower_than_fp32"] = True
                notes.append(f"SLOWER than fp32 {r['target']}{where} ({r['speedup_vs_fp32']:.2f}x at batch {batch}): "
                             f"do not ship it for speed on {device_of(r) if where else 'this machine'}")
            else:
                notes.append(f"no measurable speedup over fp32 {r['target']}{where} at batch {batch} "
                             "(the difference is within the timing noise)")
    r["size_ratio_vs_fp32"] = m["size_bytes"] / base["metrics"]["size_bytes"]


def _significantly_slower(m: dict, base: dict, batch: int) -> bool:
    a = next((l.get("samples_ms") for l in m["latency"] if l["batch"] == batch), None)
    b = next((l.get("samples_ms") for l in base["latency"] if l["batch"] == batch), None)
    if not a or not b:
        return True  # no samples kept: trust the medians
    from benchmarks.stats import significantly_slower

    return significantly_slower(a, b)


def _p50(metrics: dict, batch: int) -> float | None:
    return next((l["p50_ms"] for l in metrics["latency"] if l["batch"] == batch), None)


def _lat(metrics: dict, batch: int, key: str) -> float | None:
    return next((l[key] for l in metrics["latency"] if l["batch"] == batch), None)


def human_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table, shared by Markdown and the terminal."""
    batch = report["benchmark"]["batch_sizes"][0]
    header = ["artifact", "precision", "size", "gzip", f"p50 ms (b{batch})", "p90 ms", "speedup",
              "accuracy", "Δ acc", "cosine", "status"]
    out = []
    for r in grouped(report):
        m, fid = r.get("metrics") or {}, r.get("fidelity") or {}
        acc = m.get("accuracy")
        delta = r.get("accuracy_delta")
        status = {"ok": "ok", "skipped": "skipped"}.get(r.get("status"), f"FAILED: {r.get('error', '')}")
        if r.get("slower_than_fp32"):
            status = "⚠ slower than fp32"
        elif status == "ok" and row_emulated(report, r):
            status = "ok, emulated latency"
        out.append([
            r["name"], r["precision"], human_size(m.get("size_bytes")), human_size(m.get("gzip_bytes")),
            _fmt(_lat(m, batch, "p50_ms") if m else None, ".3f"), _fmt(_lat(m, batch, "p90_ms") if m else None, ".3f"),
            _fmt(r.get("speedup_vs_fp32"), ".2f", "x") if r["label"] != "fp32" else "1.00x" if m else "-",
            _fmt(None if acc is None else 100 * acc, ".2f", "%"),
            _fmt(None if delta is None else 100 * delta, "+.2f", " pt"),
            _fmt(fid.get("cosine_mean"), ".4f"), status,
        ])
    return header, out


def to_markdown(report: dict) -> str:
    header, cells = rows(report)
    ref = report["reference"]
    b = report["benchmark"]
    cpu = report["machine"]["cpu"]
    lines = [f"## compressor: {report['name']}", ""]
    if ref.get("accuracy") is not None:
        lines.append(f"Reference ({_framework(ref)} fp32): accuracy {100 * ref['accuracy']:.2f}% on "
                     f"{ref['eval_samples']} evaluation samples.")
    lines += [f"Measured on {cpu['model']} ({', '.join(cpu['kernel_flags']) or 'no SIMD flags read'}), "
              f"device {b['device']}, {b['threads']} threads, batch {b['batch_sizes'][0]}, "
              f"{b['runs']} timed runs after warm-up; speedup is against the same target's fp32 artifact"
              + (" on the same device. Rows named DEVICE:TARGET/LABEL were measured on that device (see Devices)."
                 if has_devices(report) else "."), ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header) - 1)) + "|---|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    from benchmarks.recommend import markdown as recommended_markdown

    lines += recommended_markdown(report)
    extra = [b for b in report["benchmark"]["batch_sizes"][1:]]
    if extra:
        lines += ["", "Latency at other batch sizes (p50 ms / samples per second):", "",
                  "| artifact | " + " | ".join(f"batch {x}" for x in extra) + " |",
                  "|---|" + "---:|" * len(extra)]
        for r in grouped(report):
            m = r.get("metrics")
            if m:
                cells_b = []
                for x in extra:
                    p50 = _lat(m, x, "p50_ms")
                    tp = _lat(m, x, "throughput")
                    cells_b.append("-" if p50 is None else f"{p50:.3f} / {tp:.0f}")
                lines.append(f"| {r['name']} | " + " | ".join(cells_b) + " |")
    lines += devices_markdown(report)
    lines += pruning_markdown(report)
    from benchmarks.qat_report import qat_markdown

    lines += qat_markdown(report)
    from benchmarks.fallback_report import fallback_markdown

    lines += fallback_markdown(report)
    notes = [(r["name"], f"{r['status']}: {r.get('error')}") for r in grouped(report) if r.get("status") != "ok"]
    notes += [(r["name"], n) for r in grouped(report) for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- **{name}**: {n}" for name, n in notes]
    return "\n".join(lines) + "\n"


def pruning_markdown(report: dict) -> list[str]:
    """Before/after lines for a run with a prune step (empty otherwise)."""
    p = report.get("pruning")
    if not p:
        return []
    acc = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    lines = ["", f"Pruning ({', '.join(p['methods'])}): parameters {p['params_before']:,} -> {p['params_after']:,}, "
             f"MACs {p['macs_before']:,} -> {p['macs_after']:,} ({p['macs_before'] / max(1, p['macs_after']):.2f}x "
             f"fewer), weight sparsity {100 * p['sparsity']:.1f}%; PyTorch accuracy {acc(p['accuracy_dense'])} dense, "
             f"{acc(p['accuracy_pruned'])} pruned, {acc(p['accuracy_after_finetune'])} after fine-tuning.", "",
             "| target | dense p50 ms | pruned p50 ms | speedup | size ratio | gzip ratio | dense acc | pruned acc |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for tname, c in p["before_after"].items():
        d, q = c["dense"], c["pruned"] or {}
        lines.append(f"| {tname} | {_fmt(d['p50_ms'], '.3f')} | {_fmt(q.get('p50_ms'), '.3f')} | "
                     f"{_fmt(c['speedup'], '.2f', 'x')} | {_fmt(c['size_ratio'], '.3f')} | "
                     f"{_fmt(c['gzip_ratio'], '.3f')} | {acc(d.get('accuracy'))} | {acc(q.get('accuracy'))} |")
    return lines


def print_table(report: dict, console=None) -> None:
    """A terminal table that fits the terminal (80 columns and up): names ellipsised in the
    middle, then the least useful columns dropped, numbers never cut; the Markdown report
    has the full set. Rows of other devices come under a line naming the device, with
    their plain names, so that the artifact column stays as narrow as on one machine."""
    from rich.console import Console

    from benchmarks.termtable import FitTable

    console = console or Console()
    header, cells = rows(report)
    b = report["benchmark"]
    table = FitTable(_terminal_columns(), title=f"{report['name']}: batch {b['batch_sizes'][0]}, "
                     f"{b['threads']} threads, {b['device']}")
    idx = [header.index(k) for k in ("artifact", "precision", "size", header[4], "p90 ms", "speedup", "accuracy",
                                     "Δ acc", "cosine")]
    current = None
    for r, row in zip(grouped(report), cells):
        if row[-1] == "skipped":
            continue  # the reason is printed below the table
        if has_devices(report) and device_of(r) != current:
            current = device_of(r)
            table.add_heading(f"{current} (emulated)" if device_emulated(report, current) else current)
        bad = row[-1].startswith(("FAILED", "⚠"))
        cells_short = [row[i].removesuffix(" pt") for i in idx]
        if has_devices(report):
            cells_short[0] = artifact_key(r)
        table.add_row(cells_short, style="red" if bad else None)
    table.render(console)
    ref = report["reference"]
    if ref.get("accuracy") is not None:
        console.print(f"reference: {_framework(ref)} fp32, accuracy {100 * ref['accuracy']:.2f}% on {ref['eval_samples']} "
                      "held-out samples; speed is against the same target's fp32 artifact"
                      + (" on the same device" if has_devices(report) else ""))
    for r in grouped(report):
        if r.get("status") == "skipped":
            console.print(f"{r['name']}: skipped: {r.get('error')}")
        elif r.get("status") != "ok":
            console.print(f"[red]{r['name']}: {r.get('status')}: {r.get('error')}[/red]")
        for note in r.get("notes", []):
            console.print(f"[yellow]{r['name']}: {note}[/yellow]")
    if has_devices(report):
        print_devices(report, console)
    from benchmarks.recommend import lines as recommended_lines

    for text in recommended_lines(report):
        console.print(f"[bold]{text}[/bold]", highlight=False, soft_wrap=True)


def _terminal_columns():
    from benchmarks.termtable import Column

    # Dropped when the terminal is narrow, first to last: precision (the label says it), the
    # accuracy change, p90, accuracy, cosine.
    return (Column("artifact", left=True, shrink=True, min_width=20), Column("prec", left=True, drop=5),
            Column("size"), Column("p50 ms"), Column("p90 ms", drop=3), Column("speed"), Column("acc", drop=2),
            Column("Δ acc", drop=4), Column("cosine", drop=1))


def print_devices(report: dict, console) -> None:
    """The side-by-side latency of each artifact on each device, and what each device is."""
    from rich.markup import escape

    from benchmarks.termtable import Column, FitTable

    if len(device_names(report)) > 1:
        header, cells = side_by_side(report)
        table = FitTable([Column(h, left=i == 0, shrink=i == 0, min_width=16) for i, h in enumerate(header)],
                         title="p50 ms on each device")
        for row in cells:
            table.add_row(row)
        table.render(console)
        console.print(side_by_side_caption(report), markup=False)
    for d in device_names(report):
        console.print(f"{d}: {describe(report, d)}", markup=False, highlight=False)
        for n in device_notes(report, d):
            console.print(f"[yellow]  {escape(n)}[/yellow]")


def _framework(ref: dict) -> str:
    return {"keras": "Keras", "tflite": "TFLite", "onnx": "ONNX Runtime"}.get(ref.get("framework", "pytorch"), "PyTorch")
