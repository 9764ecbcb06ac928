"""Reports of artifacts measured on several devices: speedups against the fp32 twin of
the same device, the side-by-side table, the Devices section, an 80-column terminal,
the HTML chart, and reading version 1 and 2 reports."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from benchmarks.html import render
from benchmarks.report import SCHEMA_VERSION, build, print_table, to_markdown
from benchmarks.report_read import ReportError, load_report
from device_reports import devices_report, metrics, row
from gate_reports import report as local_report


def by_name(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["artifacts"]}


def md_row(md: str, first_cell: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def md_table_after(md: str, heading: str) -> list[str]:
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(heading))
    table = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        table.append(ln)
    return table


def terminal(report: dict, width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    print_table(report, console)
    return console.export_text()


# --- build ----------------------------------------------------------------------

def test_speedup_and_size_ratio_are_against_the_fp32_twin_on_the_same_device():
    rows = by_name(devices_report())
    assert rows["onnx/int8-static"]["speedup_vs_fp32"] == pytest.approx(2.0)       # 2.0 / 1.0 ms
    assert rows["onnx/int8-dynamic"]["speedup_vs_fp32"] == pytest.approx(1.25)     # 2.0 / 1.6 ms
    assert rows["pi5:onnx/int8-static"]["speedup_vs_fp32"] == pytest.approx(3.0)   # 12.0 / 4.0 ms, not 2.0 / 4.0
    assert rows["qemu-a76:onnx/int8-static"]["speedup_vs_fp32"] == pytest.approx(0.8)  # 40 / 50 ms
    assert rows["pi5:onnx/int8-static"]["size_ratio_vs_fp32"] == pytest.approx(0.25)
    assert "speedup_vs_fp32" not in rows["pi5:onnx/fp32"] and "speedup_vs_fp32" not in rows["pi5:onnx/int8-dynamic"]
    for name in ("onnx/int8-static", "pi5:onnx/int8-static"):
        assert rows[name]["accuracy_delta"] == pytest.approx(0.99 - 0.993)  # against the PyTorch reference


def test_an_emulated_int8_slower_than_fp32_is_not_called_slower():
    row = by_name(devices_report())["qemu-a76:onnx/int8-static"]
    assert "slower_than_fp32" not in row and row["notes"] == []  # qemu's clock says nothing about the board


def test_a_slower_int8_on_a_real_device_is_flagged_naming_the_device():
    base = devices_report(devices=("local", "pi5"), failed=False)
    rows = [row("local", "fp32", 0), row("local", "int8-static", 1), row("pi5", "fp32", 2),
            row("pi5", "int8-static", 3)]
    rows[3]["metrics"] = metrics(18.0, 250_000, 0.99, seed=3)  # slower than the board's 12 ms fp32
    out = by_name(build(base["name"], base["model"], base["reference"], base["benchmark"], base["machine"], rows,
                        devices=base["devices"]))
    slow = out["pi5:onnx/int8-static"]
    assert slow["slower_than_fp32"] is True
    assert slow["notes"] == ["SLOWER than fp32 onnx on pi5 (0.67x at batch 1): do not ship it for speed on pi5"]
    assert "slower_than_fp32" not in out["onnx/int8-static"]


def test_build_stores_the_devices_section_and_schema_version_2():
    r = devices_report()
    assert r["schema_version"] == SCHEMA_VERSION == 2
    assert list(r["devices"]) == ["local", "pi5", "qemu-a76"] and r["devices"]["qemu-a76"]["emulated"] is True
    assert "devices" not in local_report()  # build() without devices= adds no section


# --- markdown -------------------------------------------------------------------

def test_markdown_groups_rows_by_device_with_prefixed_names():
    md = to_markdown(devices_report())
    names = [ln.split("|")[1].strip() for ln in md_table_after(md, "| artifact | precision")]
    assert names == ["onnx/fp32", "onnx/int8-static", "onnx/int8-dynamic", "pi5:onnx/fp32", "pi5:onnx/int8-static",
                     "pi5:onnx/int8-dynamic", "qemu-a76:onnx/fp32", "qemu-a76:onnx/int8-static"]
    header = md_row(md, "artifact")
    pi5 = md_row(md, "pi5:onnx/int8-static")
    assert pi5[header.index("speedup")] == "3.00x" and pi5[header.index("p50 ms (b1)")] == "4.000"
    assert md_row(md, "qemu-a76:onnx/int8-static")[header.index("status")] == "ok, emulated latency"
    failed = md_row(md, "pi5:onnx/int8-dynamic")
    assert failed[header.index("status")] == "FAILED: pi5: connection lost mid-run (ssh exited 255)"


def test_markdown_side_by_side_has_one_column_per_device_and_time_relative_to_local():
    md = to_markdown(devices_report())
    table = md_table_after(md, "Latency on each device")
    assert table[0] == "| artifact | local | pi5 | qemu-a76 (emulated) |"
    assert table[2] == "| onnx/fp32 | 2.000 | 12.000 (6.0x) | 40.000 (qemu) |"
    assert table[3] == "| onnx/int8-static | 1.000 | 4.000 (4.0x) | 50.000 (qemu) |"
    assert table[4] == "| onnx/int8-dynamic | 1.600 | failed | - |"
    assert "time relative to local" in md and "is not the board's" in md


def test_markdown_devices_section_lists_each_device_and_its_notes():
    md = to_markdown(devices_report())
    section = md[md.index("\nDevices:"):]
    assert ("- **pi5**: over SSH, aarch64 Cortex-A76, 4 cores, 8 GB, Linux 6.6, Python 3.11.2, onnxruntime 1.22.0, "
            "4 threads, governor ondemand") in section
    assert "  - onnxruntime 1.22.0 differs from 1.32.0 that validated the artifacts" in section
    assert "  - while measuring: 48-62 °C, 2400 MHz" in section
    assert "- **qemu-a76**: " in section and "emulated (qemu)" in section
    assert "- **local**: this machine, x86_64 AMD EPYC, 16 cores" in section


def test_a_clock_that_falls_while_measuring_is_a_note():
    r = devices_report(devices=("local", "pi5"), failed=False)
    by_name(r)["pi5:onnx/fp32"]["metrics"]["device_state"] = {"before": {"temp_c": 70.0, "freq_mhz": 2400.0},
                                                              "after": {"temp_c": 85.0, "freq_mhz": 1500.0}}
    assert "the clock fell from 2400 to 1500 MHz while measuring pi5:onnx/fp32" in to_markdown(r)


def test_one_device_report_has_no_device_sections():
    md = to_markdown(local_report())
    assert "Devices" not in md and "Latency on each device" not in md and "DEVICE:" not in md
    assert md_row(md, "onnx/int8-static")[-1] == "ok"


# --- terminal -------------------------------------------------------------------

def test_terminal_table_fits_80_columns_with_device_headings():
    text = terminal(devices_report())
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert any(ln.strip() == "pi5" for ln in lines)  # the device heading row
    # Under the heading the plain name: the artifact column stays as narrow as on one machine.
    pi5 = lines.index(next(ln for ln in lines if ln.strip() == "pi5"))
    # (the precision column is the first to go at 80 columns: the label says it)
    assert lines[pi5 + 2].split()[0] == "onnx/int8-static" and "3.00x" in lines[pi5 + 2]
    side = next(ln for ln in lines if ln.startswith("onnx/fp32") and "(6.0x)" in ln)
    assert side.split() == ["onnx/fp32", "2.000", "12.000", "(6.0x)", "40.000", "(qemu)"]
    assert "pi5:onnx/int8-dynamic: failed: pi5: connection lost mid-run (ssh exited 255)" in text
    assert any(ln.startswith("pi5: over SSH, aarch64 Cortex-A76") for ln in lines)


def test_terminal_fits_80_columns_with_long_names_and_five_devices():
    r = devices_report()
    for name in ("rk3588", "jetson-orin-nano"):
        r["devices"][name] = dict(r["devices"]["pi5"], notes=[])
        for src in [x for x in r["artifacts"] if x.get("device") == "pi5"]:
            r["artifacts"].append(dict(src, device=name, name=src["name"].replace("pi5", name)))
    for x in r["artifacts"]:
        if x["label"] == "int8-static":
            x["label"] = "int8-static-percentile"
            x["name"] = x["name"].replace("int8-static", "int8-static-percentile")
    assert max(len(ln) for ln in terminal(r).splitlines()) <= 80


def test_terminal_of_one_device_has_no_device_lines():
    text = terminal(local_report())
    assert "p50 ms on each device" not in text and "this machine" not in text
    assert text.splitlines()[1].split()[0] == "artifact" and text.splitlines()[3].startswith("onnx/fp32")


# --- HTML -----------------------------------------------------------------------

def test_html_has_the_grouped_device_chart_side_by_side_table_and_devices():
    page = render(devices_report())
    assert "<script" not in page
    # the accuracy plots (latency: every real device, a marker each; size: this machine's files),
    # the latency bars, and the latency per device
    assert page.count('<svg class="chart"') == 4
    assert "Latency on each device" in page and "qemu-a76 (emulated)" in page
    assert "<td class=num>12.000 (6.0x)</td>" in page and "<td class=num>40.000 (qemu)</td>" in page
    assert "<h2>Devices</h2>" in page and "onnxruntime 1.22.0 differs from 1.32.0" in page
    assert 'data-name="pi5:onnx/int8-static"' in page and 'data-name="qemu-a76:onnx/fp32"' not in page
    assert "<td>pi5:onnx/int8-static</td>" in page


def test_html_of_one_device_has_no_device_parts():
    page = render(local_report())
    assert page.count('<svg class="chart"') == 3 and "Devices" not in page and "Latency on each device" not in page


# --- reading --------------------------------------------------------------------

def test_reader_accepts_version_1_and_2_and_refuses_3(tmp_path):
    old = local_report()
    old["schema_version"] = 1
    (tmp_path / "v1.json").write_text(json.dumps(old))
    assert [r.get("device") for r in load_report(tmp_path / "v1.json")["artifacts"]] == [None, None]  # local
    (tmp_path / "v2.json").write_text(json.dumps(devices_report()))
    assert load_report(tmp_path / "v2.json")["devices"]["pi5"]["cores"] == 4
    newer = dict(old, schema_version=3)
    (tmp_path / "v3.json").write_text(json.dumps(newer))
    with pytest.raises(ReportError, match="schema version 3, newer than the version 2"):
        load_report(tmp_path / "v3.json")


def test_device_bench_csv_gives_raw_values_per_file_device_and_batch(capsys):
    import csv

    from benchmarks.devices.report_bench import _emit

    emu = metrics(12.5, 2_000_000, 0.98, seed=1, emulated=True)
    rows = [{"file": "m.onnx", "device": "local", "metrics": metrics(4.0, 2_000_000, 0.98, seed=0)},
            {"file": "m.onnx", "device": "pi5", "metrics": emu, "vs_local": {"cosine_mean": 0.99991}},
            {"file": "m.onnx", "device": "jetson", "error": "jetson: host unreachable"}]
    _emit({"results": rows}, rows, [1, 8], "csv")
    got = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["device"], r["batch"]) for r in got] == [(d, b) for d in ("local", "pi5", "jetson") for b in ("1", "8")]
    pi5 = got[2]
    assert float(pi5["p50_ms"]) == 12.5 and float(pi5["samples_per_s"]) == pytest.approx(80.0)
    assert pi5["size_bytes"] == "2000000" and pi5["emulated"] == "True" and pi5["cosine_vs_local"] == "0.99991"
    assert got[3]["p50_ms"] == "" and got[3]["size_bytes"] == "2000000"  # not run at batch 8: no figure
    assert got[4]["error"] == "jetson: host unreachable" and got[4]["p50_ms"] == ""
