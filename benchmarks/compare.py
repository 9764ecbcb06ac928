"""`compressor compare BASE.json NEW.json`: the two reports side by side in the terminal."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import human_size
from benchmarks.report_read import load_report


def _pct(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return "-"
    change = 100 * (new - old) / old
    return f"{change:+.1f}%"


def compare_command(base_path: Path, new_path: Path) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    base, new = load_report(base_path, "baseline"), load_report(new_path)
    batch = new["benchmark"]["batch_sizes"][0]
    old_rows = {r["name"]: r for r in base["artifacts"]}
    table = Table(title=f"{base_path} -> {new_path} (batch {batch})", title_justify="left",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False, show_edge=False)
    for col in ("artifact", "p50 ms", "Δ p50", "size", "Δ size", "accuracy"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
    names = [r["name"] for r in new["artifacts"]] + [n for n in old_rows if n not in
                                                     {r["name"] for r in new["artifacts"]}]
    new_rows = {r["name"]: r for r in new["artifacts"]}
    for name in names:
        a = (old_rows.get(name) or {}).get("metrics")
        b = (new_rows.get(name) or {}).get("metrics")
        pa, pb = _p50(a, batch), _p50(b, batch)
        change = _pct(pb, pa)
        style = "red" if change.startswith("+") and pa and pb and pb / pa > 1.05 else None
        table.add_row(name, f"{_ms(pa)}→{_ms(pb)}", change,
                      f"{human_size(a['size_bytes']) if a else '-'}→{human_size(b['size_bytes']) if b else '-'}",
                      _pct(b["size_bytes"] if b else None, a["size_bytes"] if a else None),
                      f"{_acc(a)}→{_acc(b)}", style=style)
    Console().print(table)
    return 0


def _p50(m: dict | None, batch: int) -> float | None:
    return None if not m else next((l["p50_ms"] for l in m["latency"] if l["batch"] == batch), None)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _acc(m: dict | None) -> str:
    return "-" if not m or m.get("accuracy") is None else f"{100 * m['accuracy']:.2f}%"
