"""Terminal tables that fit the terminal, and the same rows as JSON or CSV.

A number is never cut or folded: a table too wide for the terminal first ellipsises
the name columns (keeping both ends of a name, where artifact names differ), then drops
whole columns, least useful first, and says which. `--format json|csv` prints the raw
values instead (bytes, ms, fractions), for scripts.

Rich is the renderer (the CLI's tables and progress already use it); the fitting is ours
because rich shrinks every column alike, numbers included, once names alone cannot make
room.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from typing import Any, Sequence

FORMATS = ("table", "json", "csv")
ELLIPSIS = "…"
EXTRA = 5                  # columns with a drop of this or more go before a name is cut


@dataclass(frozen=True)
class Column:
    header: str
    key: str = ""              # its field in JSON/CSV (default: the header)
    left: bool = False         # names and labels; numbers are right-aligned
    shrink: bool = False       # may be ellipsised, down to min_width
    drop: int = 0              # 0: always shown; else dropped for room, the largest first (EXTRA)
    min_width: int = 10

    @property
    def field(self) -> str:
        return self.key or self.header


def ellipsised(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by an ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + ELLIPSIS + (text[-tail:] if tail else "")


class FitTable:
    """Rows of strings under `columns`, rendered within a width. Headings (a device's
    name, say) are rows of their own in the first column."""

    def __init__(self, columns: Sequence[Column], title: str | None = None) -> None:
        self.columns = list(columns)
        self.title = title
        self.rows: list[tuple[list[str], str | None]] = []
        self._headings: set[int] = set()

    def add_row(self, cells: Sequence[str], style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(([str(c) for c in cells], style))

    def add_heading(self, text: str) -> None:
        self._headings.add(len(self.rows))
        self.rows.append(([text] + [""] * (len(self.columns) - 1), "bold"))

    def layout(self, width: int) -> tuple[list[int], dict[int, int], list[str]]:
        """(the columns kept, the width each shrunk column gets, the headers of the
        columns dropped for want of room). Columns with nothing to say go first; then
        the extras (drop >= EXTRA) before any name is cut; then names are ellipsised down
        to their min_width before the remaining optional columns go, largest drop first;
        with none left to drop, names (and their headers) shrink below min_width."""
        kept = [i for i, c in enumerate(self.columns) if not self._empty(i)]
        dropped: list[str] = []
        while True:
            natural = {i: self._natural(i) for i in kept}
            room = width - _overhead(len(kept))
            need = sum(natural.values())
            if need <= room:
                return kept, {}, dropped
            floor = {i: max(min(natural[i], self.columns[i].min_width), len(self.columns[i].header))
                     for i in kept if self.columns[i].shrink}
            slack = sum(natural[i] - floor[i] for i in floor)
            extras = [i for i in kept if self.columns[i].drop >= EXTRA]
            optional = extras or [i for i in kept if self.columns[i].drop]
            if not optional or (not extras and need - slack <= room):
                if need - slack > room:  # nothing left to drop: names go below their floor, numbers stay whole
                    floor = {i: 1 for i in floor}
                return kept, _shrunk(natural, floor, need - room), dropped
            gone = max(optional, key=lambda i: (self.columns[i].drop, i))
            kept.remove(gone)
            dropped.append(self.columns[gone].header)

    def render(self, console) -> None:
        from rich import box
        from rich.table import Table

        kept, widths, dropped = self.layout(console.width)
        table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                      padding=(0, 1), collapse_padding=True, show_edge=False)
        for i in kept:
            c = self.columns[i]
            header = ellipsised(c.header, widths[i]) if i in widths else c.header
            table.add_column(header, justify="left" if c.left else "right", no_wrap=True, overflow="ellipsis")
        for n, (cells, style) in enumerate(self.rows):
            if n in self._headings and n:
                table.add_section()
            table.add_row(*[ellipsised(cells[i], widths[i]) if i in widths else cells[i] for i in kept],
                          style=style)
        console.print(table)
        if dropped:
            console.print(f"  (not shown at {console.width} columns: {', '.join(dropped)})", style="dim",
                          highlight=False)

    def _empty(self, i: int) -> bool:
        """A column with nothing to say in any row (all '-' or blank) takes no room."""
        if not self.columns[i].drop:
            return False
        cells = [cells[i] for n, (cells, _) in enumerate(self.rows) if n not in self._headings]
        return bool(cells) and all(c in ("", "-") for c in cells)

    def _natural(self, i: int) -> int:
        return max([len(self.columns[i].header)] + [len(cells[i]) for cells, _ in self.rows])


def _overhead(n: int) -> int:
    """The characters a SIMPLE_HEAD table without edges, its padding collapsed, adds to
    its cells: two spaces between neighbouring columns."""
    return 2 * (n - 1) if n > 1 else 0


def _shrunk(natural: dict[int, int], floor: dict[int, int], excess: int) -> dict[int, int]:
    """Widths for the shrinkable columns taking `excess` characters off, widest first."""
    widths = {i: natural[i] for i in floor}
    while excess > 0:
        i = max(widths, key=lambda k: (widths[k] - floor[k], widths[k]), default=None)
        if i is None or widths[i] <= floor[i]:
            break
        widths[i] -= 1
        excess -= 1
    return widths


def latency_fields(metrics: dict[str, Any], batch: int) -> dict[str, Any]:
    """The raw figures of one file at one batch from its metrics (Metrics.to_json's
    shape), for the CSV of `bench` and `bench --device`: None where it was not run."""
    lat = next((x for x in metrics.get("latency", []) if x["batch"] == batch), None) or {}
    return {"size_bytes": metrics.get("size_bytes"), "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
            "p99_ms": lat.get("p99_ms"), "cv": lat.get("cv"), "samples_per_s": lat.get("throughput"),
            "peak_rss_mb": metrics.get("peak_rss_mb"), "accuracy": metrics.get("accuracy")}


def emit_records(records: list[dict[str, Any]], fmt: str, out=None) -> None:
    """`records` (field -> raw value) as a JSON array or CSV with a header, on `out`."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(records, indent=2, default=str) + "\n")
        return
    fields = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    out.write(buf.getvalue())
