"""`compressor compare BASE.json NEW.json`: the two reports side by side in the terminal.

Rows are matched by artifact and device (their full name) and, with devices, shown under
a heading per device with their plain names. `--device NAME` keeps one
device on both sides; `--map BASEDEV=NEWDEV` holds NEW's rows of NEWDEV against BASE's
rows of BASEDEV, e.g. `--map local=pi5` to see what the board costs against this
machine (BASE and NEW may be the same file)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.device_report import LOCAL, artifact_key, device_names, device_of, row_emulated
from benchmarks.report import human_size
from benchmarks.report_read import load_report
from compressor.errors import RecipeError

MAP_FORM = "use BASEDEV=NEWDEV, e.g. --map local=pi5"


def add_arguments(parser) -> None:
    """The device options of `compressor compare` (the CLI's parser calls this)."""
    parser.add_argument("--device", metavar="NAME",
                        help="compare only the rows of this device (on both sides)")
    parser.add_argument("--map", action="append", metavar="BASEDEV=NEWDEV",
                        help="hold NEW's rows of NEWDEV against BASE's rows of BASEDEV (e.g. local=pi5); "
                             "repeatable")


def _pct(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return "-"
    change = 100 * (new - old) / old
    return f"{change:+.1f}%"


def compare_command(base_path: Path, new_path: Path, device: str | None = None,
                    mapping: list[str] | None = None, console=None, fmt: str = "table") -> int:
    from rich.console import Console

    from benchmarks.termtable import Column, FitTable, emit_records

    base, new = load_report(base_path, "baseline"), load_report(new_path)
    pairs = device_pairs(base, new, base_path, new_path, device, mapping)
    batch = new["benchmark"]["batch_sizes"][0]
    matched = matched_rows(base, new, pairs)
    if fmt != "table":
        emit_records([_record(g, name, base, a, new, b, batch) for g, name, a, b in matched], fmt)
        return 0
    # Names shrink first, then accuracy goes, then the size change: the latency stays.
    table = FitTable((Column("artifact", left=True, shrink=True, min_width=20), Column("p50 ms"), Column("Δ p50"),
                      Column("size", drop=1), Column("Δ size", drop=2), Column("accuracy", drop=3)),
                     title=f"{base_path} -> {new_path} (batch {batch})")
    heading = None
    for group, name, a_row, b_row in matched:
        if group is not None and group != heading:
            heading = group
            table.add_heading(group)
        cells, slower = _cells(name, base, a_row, new, b_row, batch)
        table.add_row(cells, style="red" if slower else None)
    table.render(console or Console())
    return 0


def _record(group: str | None, name: str, base: dict, a_row: dict | None, new: dict, b_row: dict | None,
            batch: int) -> dict:
    """One matched row's raw values for --format json/csv: ms, bytes, fractions, the
    change in percent (None where a side has no value or the clock was an emulator's)."""
    a, b = (a_row or {}).get("metrics") or {}, (b_row or {}).get("metrics") or {}
    pa, pb = _p50(a, batch), _p50(b, batch)
    emulated = (a_row is not None and row_emulated(base, a_row)) or (b_row is not None and row_emulated(new, b_row))

    def change(x, y):
        return None if x is None or y is None or x == 0 else round(100 * (y - x) / x, 3)
    return {"device": group, "artifact": name, "batch": batch,
            "base_status": (a_row or {}).get("status"), "new_status": (b_row or {}).get("status"),
            "base_p50_ms": pa, "new_p50_ms": pb, "p50_change_pct": None if emulated else change(pa, pb),
            "base_size_bytes": a.get("size_bytes"), "new_size_bytes": b.get("size_bytes"),
            "size_change_pct": change(a.get("size_bytes"), b.get("size_bytes")),
            "base_accuracy": a.get("accuracy"), "new_accuracy": b.get("accuracy"), "emulated": bool(emulated)}


def device_pairs(base: dict, new: dict, base_path: Path, new_path: Path, device: str | None,
                 mapping: list[str] | None) -> list[tuple[str, str]] | None:
    """(base device, new device) pairs to compare, or None for every row by its name."""
    if device and mapping:
        raise RecipeError("compare: give --device or --map, not both (--map DEV=DEV compares one device)")
    if device:
        mapping = [f"{device}={device}"]
    if not mapping:
        return None
    pairs = []
    for item in mapping:
        b, sep, n = item.partition("=")
        if not sep or not b or not n or "=" in n:
            raise RecipeError(f"compare: --map {item!r}: {MAP_FORM}")
        _has_device(base, b, f"the baseline {base_path}", "--device" if device else "--map")
        _has_device(new, n, f"the report {new_path}", "--device" if device else "--map")
        pairs.append((b, n))
    return pairs


def _has_device(report: dict, name: str, what: str, flag: str) -> None:
    have = device_names(report)
    if name not in have:
        raise RecipeError(f"compare: {flag} names device {name!r}, which {what} does not have "
                          f"(it has: {', '.join(have) or 'no artifacts'})")


def matched_rows(base: dict, new: dict, pairs: list[tuple[str, str]] | None) -> list[tuple]:
    """(heading, artifact, base row or None, new row or None): NEW's order first, then
    rows only the baseline has. With devices the rows come under a heading, the device
    ('pi5') or the pair held against each other ('local → pi5'), by their plain artifact
    names, which keeps the name column narrow; reports of this machine alone have no
    headings and show names as before."""
    old = {(device_of(r), artifact_key(r)): r for r in base["artifacts"]}
    cur = {(device_of(r), artifact_key(r)): r for r in new["artifacts"]}
    devices = dict.fromkeys([k[0] for k in cur] + [k[0] for k in old])
    headed = pairs is not None or list(devices) != [LOCAL]
    out = []
    for bdev, ndev in pairs or [(d, d) for d in devices]:
        heading = (bdev if bdev == ndev else f"{bdev} → {ndev}") if headed else None
        keys = [k for d, k in cur if d == ndev] + [k for d, k in old if d == bdev]
        for key in dict.fromkeys(keys):
            out.append((heading, key, old.get((bdev, key)), cur.get((ndev, key))))
    return out


def _cells(name: str, base: dict, a_row: dict | None, new: dict, b_row: dict | None,
           batch: int) -> tuple[list[str], bool]:
    """The table's cells, and whether NEW is slower beyond 5%."""
    a, b = (a_row or {}).get("metrics"), (b_row or {}).get("metrics")
    pa, pb = _p50(a, batch), _p50(b, batch)
    emulated = (a_row is not None and row_emulated(base, a_row)) or (b_row is not None and row_emulated(new, b_row))
    # Under qemu the clock is the emulator's: the numbers are shown, their change is not judged.
    change = "emulated" if emulated and pa and pb else _pct(pb, pa)
    slower = bool(not emulated and change.startswith("+") and pa and pb and pb / pa > 1.05)
    cells = [name, f"{_ms(pa, a_row)}→{_ms(pb, b_row)}", change,
             f"{human_size(a['size_bytes']) if a else '-'}→{human_size(b['size_bytes']) if b else '-'}",
             _pct(b["size_bytes"] if b else None, a["size_bytes"] if a else None), f"{_acc(a)}→{_acc(b)}"]
    return cells, slower


def _p50(m: dict | None, batch: int) -> float | None:
    return None if not m else next((l["p50_ms"] for l in m["latency"] if l["batch"] == batch), None)


def _ms(x: float | None, row: dict | None) -> str:
    if x is None and row is not None and row.get("status") != "ok":
        return str(row.get("status"))  # failed on that device, or skipped
    return "-" if x is None else f"{x:.3f}"


def _acc(m: dict | None) -> str:
    return "-" if not m or m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}%"
