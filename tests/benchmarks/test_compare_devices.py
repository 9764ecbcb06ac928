"""`compressor compare` over devices: rows matched by full name, `--device` keeping one
device on both sides, `--map BASEDEV=NEWDEV` holding one device against another (of the
same file or of two runs), and one-line refusals for devices a report lacks."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks.compare import add_arguments, compare_command
from compressor.errors import RecipeError
from device_reports import devices_report
from gate_reports import report as local_report


@pytest.fixture
def files(tmp_path) -> Path:
    (tmp_path / "run.json").write_text(json.dumps(devices_report()))
    (tmp_path / "local.json").write_text(json.dumps(local_report()))
    return tmp_path


def compared(base: Path, new: Path, **kw) -> dict[str, list[str]]:
    """The table's rows by their first cell, under their heading ('local → pi5: onnx/fp32',
    'pi5: onnx/fp32'). The console is wide: no cell folds."""
    console = Console(width=120, record=True, file=io.StringIO())
    assert compare_command(base, new, console=console, **kw) == 0
    lines = console.export_text().splitlines()
    rule = next(i for i, ln in enumerate(lines) if ln.startswith("─"))
    rows, heading = {}, ""
    for ln in lines[rule + 1:]:
        cells = ln.split()
        if len(cells) == 3 and cells[1] == "→":
            heading = f"{cells[0]} → {cells[2]}: "
        elif len(cells) == 1:
            heading = f"{cells[0]}: "
        elif cells:
            rows[heading + cells[0]] = cells[1:]
    return rows


def test_rows_are_matched_by_full_name_device_included(files):
    rows = compared(files / "run.json", files / "run.json")
    assert rows["pi5: onnx/int8-static"][:2] == ["4.000→4.000", "+0.0%"]
    assert rows["local: onnx/int8-static"][:2] == ["1.000→1.000", "+0.0%"]
    assert rows["pi5: onnx/int8-dynamic"][0] == "failed→failed"
    assert rows["qemu-a76: onnx/int8-static"][:2] == ["50.000→50.000", "emulated"]


def test_a_new_device_is_compared_with_nothing(files):
    rows = compared(files / "local.json", files / "run.json")
    assert rows["pi5: onnx/int8-static"][:2] == ["-→4.000", "-"]
    assert rows["local: onnx/int8-static"][1].endswith("%")  # this machine's rows matched by name


def test_map_holds_one_device_against_another_in_the_same_file(files):
    rows = compared(files / "run.json", files / "run.json", mapping=["local=pi5"])
    assert set(rows) == {"local → pi5: onnx/fp32", "local → pi5: onnx/int8-static", "local → pi5: onnx/int8-dynamic"}
    assert rows["local → pi5: onnx/fp32"][:2] == ["2.000→12.000", "+500.0%"]
    assert rows["local → pi5: onnx/int8-static"][:2] == ["1.000→4.000", "+300.0%"]
    assert rows["local → pi5: onnx/int8-dynamic"][0] == "1.600→failed"


def test_several_maps_come_under_one_heading_each(files):
    rows = compared(files / "run.json", files / "run.json", mapping=["local=pi5", "local=qemu-a76"])
    assert rows["local → pi5: onnx/int8-static"][:2] == ["1.000→4.000", "+300.0%"]
    assert rows["local → qemu-a76: onnx/int8-static"][:2] == ["1.000→50.000", "emulated"]


def test_map_across_two_runs_against_a_local_only_baseline(files):
    rows = compared(files / "local.json", files / "run.json", mapping=["local=qemu-a76"])
    fp32 = rows["local → qemu-a76: onnx/fp32"]
    assert fp32[0].endswith("→40.000") and fp32[1] == "emulated"  # shown, not judged


def test_device_keeps_one_device_on_both_sides(files):
    rows = compared(files / "run.json", files / "run.json", device="pi5")
    assert set(rows) == {"pi5: onnx/fp32", "pi5: onnx/int8-static", "pi5: onnx/int8-dynamic"}


@pytest.mark.parametrize("kw, says", [
    ({"device": "pi6"}, "compare: --device names device 'pi6', which the baseline {base} does not have "
                        "(it has: local, pi5, qemu-a76)"),
    ({"mapping": ["local=pi6"]}, "compare: --map names device 'pi6', which the report {new} does not have "
                                 "(it has: local, pi5, qemu-a76)"),
    ({"mapping": ["pi5"]}, "compare: --map 'pi5': use BASEDEV=NEWDEV, e.g. --map local=pi5"),
    ({"mapping": ["=pi5"]}, "compare: --map '=pi5': use BASEDEV=NEWDEV"),
    ({"device": "pi5", "mapping": ["local=pi5"]}, "compare: give --device or --map, not both"),
])
def test_bad_device_options_are_one_line(files, kw, says):
    base, new = files / "run.json", files / "run.json"
    with pytest.raises(RecipeError) as e:
        compare_command(base, new, **kw)
    assert says.format(base=base, new=new) in str(e.value) and "\n" not in str(e.value)


def test_a_baseline_without_the_device_is_refused_naming_its_devices(files):
    with pytest.raises(RecipeError, match=r"--device names device 'pi5', which the baseline .* \(it has: local\)"):
        compare_command(files / "local.json", files / "run.json", device="pi5")


def test_add_arguments_parses_device_and_repeated_maps():
    parser = argparse.ArgumentParser()
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    add_arguments(parser)
    args = parser.parse_args(["a.json", "b.json", "--map", "local=pi5", "--map", "local=rk3588"])
    assert args.map == ["local=pi5", "local=rk3588"] and args.device is None
    assert parser.parse_args(["a.json", "b.json", "--device", "pi5"]).device == "pi5"
