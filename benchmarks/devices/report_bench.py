"""The terminal and JSON side of `compressor bench --device ...`."""

from __future__ import annotations

from pathlib import Path

from benchmarks.devices.bench import bench_on_devices
from benchmarks.report import human_size
from benchmarks.termtable import Column, FitTable, emit_records, latency_fields

_COLUMNS = (Column("file", left=True, shrink=True, min_width=12), Column("device", left=True, shrink=True),
            Column("size"), Column("p50 ms"), Column("p90 ms", drop=2), Column("cv", drop=5),
            Column("RSS", drop=4), Column("acc", drop=1), Column("cos/local", drop=3))


def bench_devices_command(args, files: list[Path], cfg, console, measure_local) -> int:
    """Measure on every --device, print the tables, write --json; exit 2 when a device or
    one of its rows failed (the others are still shown)."""
    from compressor import sysinfo

    rows, devices, failed = bench_on_devices(files, args.devices_list, cfg, args.eval_data, args.rounds,
                                             measure_local, console, given=getattr(args, "given", None))
    names = list(devices)
    document = {"schema": "compressor.bench", "schema_version": 2,
                "config": {k: v for k, v in cfg.__dict__.items()}, "rounds": args.rounds,
                "machine": sysinfo.machine(), "libraries": sysinfo.library_versions(),
                "devices": devices, "results": rows}
    fmt = getattr(args, "format", "table")
    if fmt != "table":
        _emit(document, rows, cfg.batch_sizes, fmt)
        return _finish(args, document, rows, failed)
    for batch in cfg.batch_sizes if any(r.get("metrics") for r in rows) else ():
        table = FitTable(_COLUMNS, title=f"batch {batch}")
        for r in rows:
            m = r.get("metrics")
            lat = next((l for l in m["latency"] if l["batch"] == batch), None) if m else None
            if lat is None:
                continue
            emulated = " (emu)" if m.get("emulated") else ""
            vs = (r.get("vs_local") or {}).get("cosine_mean")
            table.add_row([Path(r["file"]).name, r["device"] + emulated, human_size(m["size_bytes"]),
                           f"{lat['p50_ms']:.3f}", f"{lat['p90_ms']:.3f}", f"{lat['cv']:.2f}",
                           "-" if m.get("peak_rss_mb") is None else f"{m['peak_rss_mb']:.0f}M",
                           "-" if m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}%",
                           "-" if vs is None else f"{vs:.4f}"])
        table.render(console)
    if len(names) > 1 and any(r.get("metrics") for r in rows):
        side_by_side(rows, names, devices, cfg.batch_sizes[0]).render(console)
    for note, who in notes_by_text(devices).items():
        console.print(f"[yellow]{', '.join(who)}: {note}[/yellow]")
    bad = [r for r in rows if r.get("error")]
    for r in bad:
        if r["error"] not in failed:  # a device that failed as a whole says so once, below
            why = r["error"].removeprefix(f"{r['device']}: ")
            console.print(f"[red]{Path(r['file']).name} on {r['device']}: {why}[/red]", soft_wrap=True)
    return _finish(args, document, rows, failed)


def _finish(args, document: dict, rows: list[dict], failed: list[str]) -> int:
    import sys

    if args.json:
        from compressor.fsutil import write_json

        write_json(args.json, document)
    for line in failed:  # one line per device that could not be used at all
        print(f"compressor: error: {line}", file=sys.stderr)
    return 2 if any(r.get("error") for r in rows) or failed else 0


def _emit(document: dict, rows: list[dict], batches, fmt: str) -> None:
    """--format json: the --json document on stdout; csv: one record per file, device and batch."""
    import json

    if fmt == "json":
        print(json.dumps(document, indent=2, default=str))
        return
    records = []
    for r in rows:
        m = r.get("metrics") or {}
        records += [{"file": r["file"], "device": r["device"], "batch": batch, **latency_fields(m, batch),
                     "emulated": bool(m.get("emulated")),
                     "cosine_vs_local": (r.get("vs_local") or {}).get("cosine_mean"), "error": r.get("error")}
                    for batch in batches]
    emit_records(records, "csv")


def notes_by_text(devices: dict) -> dict[str, list[str]]:
    """Each note once, with the devices it is about."""
    out: dict[str, list[str]] = {}
    for name, info in devices.items():
        for note in info.get("notes", []):
            out.setdefault(note, []).append(name)
    return out


def side_by_side(rows: list[dict], names: list[str], devices: dict, batch: int):
    """One row per file, p50 ms on each device (and how many times the first device's)."""
    columns = [Column("file", left=True, shrink=True, min_width=12)]
    columns += [Column(n + (" (emu)" if devices[n].get("emulated") else "")) for n in names]
    table = FitTable(columns, title=f"p50 ms at batch {batch}, side by side")
    files = list(dict.fromkeys(r["file"] for r in rows))
    for f in files:
        cells, first = [], None
        for n in names:
            r = next((x for x in rows if x["file"] == f and x["device"] == n), None)
            m = (r or {}).get("metrics")
            lat = next((l for l in m["latency"] if l["batch"] == batch), None) if m else None
            if lat is None:
                cells.append("failed" if r and r.get("error") else "-")
                continue
            first = first or lat["p50_ms"]
            cells.append(f"{lat['p50_ms']:.3f}" + ("" if first == lat["p50_ms"] and not cells else
                                                   f" ({lat['p50_ms'] / first:.2f}x)"))
        table.add_row([Path(f).name, *cells])
    return table
