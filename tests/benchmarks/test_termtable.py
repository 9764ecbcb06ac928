"""Terminal tables that fit 80 and 120 columns without cutting a number, and the same
rows as JSON and CSV: the formatter on its own, then `bench`, `compare` and the run table
on real artifacts and a real report."""

import csv
import io
import json
import re
import shutil

import pytest
from rich.console import Console

from benchmarks.termtable import Column, FitTable, ellipsised
from compressor.flows.cli import main

FAST = ["--runs", "5", "--warmup", "1", "--warmup-s", "0", "--no-isolate"]
NUMBER = re.compile(r"\d+\.\d+")


def rendered(table: FitTable, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    table.render(console)
    return console.export_text().splitlines()


def sample_table() -> FitTable:
    cols = (Column("artifact", left=True, shrink=True, min_width=20), Column("size"), Column("p50 ms"),
            Column("p99 ms", drop=9), Column("gzip", drop=8), Column("cosine", drop=1), Column("empty", drop=3))
    t = FitTable(cols, title="t")
    for name, ms in (("executorch/int8-percentile-per-channel", "114.913"), ("onnx/fp32", "0.037")):
        t.add_row([name, "268.1 KB", ms, "120.500", "250.0 KB", "0.9999", "-"])
    return t


@pytest.mark.parametrize("width", [60, 80, 120])
def test_every_line_fits_and_no_number_is_cut(width):
    lines = rendered(sample_table(), width)
    assert all(len(line.rstrip()) <= width for line in lines)
    body = "\n".join(lines)
    for number in ("268.1", "114.913", "0.037"):
        assert number in body                                   # never "114" / ".91"
    assert "empty" not in lines[1]                              # a column of dashes takes no room


def test_extras_go_before_a_name_is_cut_then_names_before_the_rest():
    t = sample_table()
    assert t.layout(84)[2] == [] and t.layout(83)[2] == ["p99 ms"]   # 74 characters of cells, 5 gaps
    kept, widths, dropped = t.layout(70)
    headers = [t.columns[i].header for i in kept]
    assert headers == ["artifact", "size", "p50 ms", "cosine"] and dropped == ["p99 ms", "gzip"]
    assert widths == {}                                         # the long name still whole
    kept, widths, dropped = t.layout(50)
    assert [t.columns[i].header for i in kept] == ["artifact", "size", "p50 ms", "cosine"]
    assert widths == {0: 50 - 2 * 3 - 8 - 7 - 6}                # the name took the cut, numbers kept
    kept, _, dropped = t.layout(40)                             # no room even at min_width: cosine goes
    assert "cosine" in dropped and [t.columns[i].header for i in kept] == ["artifact", "size", "p50 ms"]
    assert "(not shown at 40 columns: p99 ms, gzip, cosine)" in " ".join(" ".join(rendered(t, 40)).split())


def test_with_nothing_left_to_drop_names_shrink_below_their_floor_not_numbers():
    t = sample_table()
    kept, widths, dropped = t.layout(24)                        # 8 + 7 + 2 * 2 of numbers and gaps
    assert [t.columns[i].header for i in kept] == ["artifact", "size", "p50 ms"]
    assert widths == {0: 24 - 2 * 2 - 8 - 7}                    # below min_width 20, header included
    lines = rendered(t, 24)
    assert all(len(line.rstrip()) <= 24 for line in lines)
    assert lines[1].split()[:3] == ["ar…ct", "size", "p50"] and "114.913" in "\n".join(lines)


def test_ellipsis_keeps_both_ends_of_a_name():
    assert ellipsised("onnx/int8-percentile", 12) == "onnx/i…ntile"
    assert ellipsised("onnx/fp32", 12) == "onnx/fp32"
    assert len(ellipsised("x" * 50, 20)) == 20


@pytest.fixture(scope="module")
def long_named(tmp_path_factory, onnx_artifacts):
    """Three real ONNX artifacts under the long names people give their files."""
    d = tmp_path_factory.mktemp("long")
    out = []
    for label in ("fp32", "static-minmax", "static-percentile"):
        dst = d / f"digits_cnn_{label}_calibrated_on_the_train_split.onnx"
        shutil.copy(onnx_artifacts[label].path, dst)
        out.append(dst)
    return out


@pytest.mark.parametrize("width", [80, 120])
def test_bench_tables_fit_the_terminal(long_named, capsys, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["bench", *map(str, long_named), "--batch", "1,4", *FAST]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line.rstrip()) <= width for line in lines), out
    for batch in (1, 4):
        title = next(i for i, line in enumerate(lines) if line.startswith(f"batch {batch},"))
        header = lines[title + 1].split()
        assert header[0] == "file" and "p50" in header and "ms" in header
        rows = lines[title + 3:title + 6]
        for row in rows:                                          # numbers whole, p50 column present
            assert NUMBER.search(row) and "…" in row.split()[0] or row.split()[0].endswith(".onnx")
    if width == 120:                                            # extras made room for whole names
        assert all(p.name in out for p in long_named) and "(not shown at 120 columns: cv, p99 ms" in out


def test_bench_csv_and_json_give_raw_values_on_a_clean_stdout(long_named, capsys):
    assert main(["bench", *map(str, long_named[:2]), "--batch", "1,4", "--format", "csv", *FAST]) == 0
    got = capsys.readouterr()
    records = list(csv.DictReader(io.StringIO(got.out)))
    assert [(r["file"].rsplit("/", 1)[1], r["batch"]) for r in records] == [
        (long_named[0].name, "1"), (long_named[0].name, "4"), (long_named[1].name, "1"), (long_named[1].name, "4")]
    for r in records:
        p50, per_s, batch = float(r["p50_ms"]), float(r["samples_per_s"]), int(r["batch"])
        assert 0 < p50 <= float(r["p90_ms"]) and int(r["size_bytes"]) > 1000
        assert per_s == pytest.approx(batch * 1e3 / p50, rel=1e-6)   # throughput of the batch run
    assert main(["bench", str(long_named[0]), "--format", "json", *FAST]) == 0
    doc = json.loads(capsys.readouterr().out)                   # nothing else on stdout
    assert doc["schema"] == "compressor.bench" and doc["results"][0]["latency"][0]["p50_ms"] > 0


def test_compare_fits_80_columns_and_speaks_json_and_csv(tmp_path, capsys, monkeypatch):
    from gate_reports import report

    base, new = tmp_path / "base.json", tmp_path / "new.json"
    base.write_text(json.dumps(report(int8_ms=1.0)))
    new.write_text(json.dumps(report(int8_ms=1.5, int8_size=260_000)))
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert all(len(line.rstrip()) <= 80 for line in out.splitlines()), out
    assert main(["compare", str(base), str(new), "--format", "json"]) == 0
    rows = {r["artifact"]: r for r in json.loads(capsys.readouterr().out)}
    int8 = next(r for name, r in rows.items() if "int8" in name)
    assert int8["p50_change_pct"] == pytest.approx(100 * (int8["new_p50_ms"] / int8["base_p50_ms"] - 1), abs=1e-3)
    assert int8["new_size_bytes"] == 260_000 and int8["base_size_bytes"] == 250_000
    assert main(["compare", str(base), str(new), "--format", "csv"]) == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["artifact"] for r in records} == set(rows)
