"""Hostile catalog, reports: `compressor gate` and `compressor compare` handed broken,
foreign or edited report files, budgets that do not fit the report, and output paths
that cannot be written. Every user mistake is exit 2 and one line naming the file and
the problem; exit 1 stays "a budget is exceeded" and nothing else.

Categories: broken reports (read by gate, by compare and as a gate baseline), budgets
against the report, gate output paths, and exit 1's one meaning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.report import build
from hostile_cli import cli, debris, one_line, refused

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gate_reports import report  # noqa: E402  (the gate tests' seeded reports, built by benchmarks.report)

BUDGETS = "version: 1\nlimits:\n  'onnx/int8': {max_size: 1MB}\n"


def _edit(fn):
    def make() -> bytes:
        r = report()
        fn(r)
        return json.dumps(r).encode()
    return make


def _del(*keys):
    def fn(r):
        obj = r
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return _edit(fn)


def _set(value, *keys):
    def fn(r):
        obj = r
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return _edit(fn)


def _raw(data: bytes):
    return lambda: data


INT8 = ("artifacts", 1)
# case -> (bytes of the file, phrases its one line must hold)
BROKEN = {
    "not JSON": (_raw(b"{not json"), "is not JSON (Expecting property name"),
    "truncated JSON": (lambda: json.dumps(report()).encode()[:500], "is not JSON"),
    "JSON list": (_raw(b"[1, 2]"), "its top level is a list, not an object"),
    "JSON string": (_raw(b'"report"'), "its top level is text, not an object"),
    "JSON null": (_raw(b"null"), "its top level is null, not an object"),
    "only the schema header": (_raw(b'{"schema": "compressor.report", "schema_version": 1}'),
                               "artifacts is missing"),
    "no artifacts": (_del("artifacts"), "artifacts is missing"),
    "artifacts an object": (_set({"onnx/fp32": {}}, "artifacts"), "artifacts is an object, not a list"),
    "artifacts a number": (_set(3, "artifacts"), "artifacts is a number, not a list"),
    "artifact entry a string": (_set("onnx/fp32", "artifacts", 0), "artifacts[0] is text, not an artifact object"),
    "artifact without name": (_del("artifacts", 0, "name"), "artifacts[0].name is missing"),
    "artifact with empty name": (_set("", "artifacts", 0, "name"), "artifacts[0].name is empty"),
    "artifact without target": (_del("artifacts", 0, "target"), "artifacts[0].target is missing"),
    "artifact with unknown status": (_set("great", *INT8, "status"), "status is \"great\"; it is one of ok"),
    "ok artifact without metrics": (_del(*INT8, "metrics"), "['onnx/int8-static'].metrics is missing, though"),
    "metrics a list": (_set([1], *INT8, "metrics"), ".metrics is a list, not an object"),
    "string size metric": (_set("big", *INT8, "metrics", "size_bytes"), "size_bytes is \"big\", not a number"),
    "boolean size metric": (_set(True, *INT8, "metrics", "size_bytes"), "size_bytes is true, not a number"),
    "zero size": (_set(0, *INT8, "metrics", "size_bytes"), "size_bytes is 0; it must be at least 1"),
    "string p50": (_set("1ms", *INT8, "metrics", "latency", 0, "p50_ms"), "latency[0].p50_ms is \"1ms\""),
    "NaN p50": (_set(float("nan"), *INT8, "metrics", "latency", 0, "p50_ms"), "p50_ms is nan, not a finite"),
    "Infinity p99": (_set(float("inf"), *INT8, "metrics", "latency", 0, "p99_ms"), "p99_ms is inf, not a finite"),
    "NaN accuracy": (_set(float("nan"), *INT8, "metrics", "accuracy"), "accuracy is nan, not a finite"),
    "accuracy above 1": (_set(99.0, *INT8, "metrics", "accuracy"), "accuracy is 99.0; it must be at most 1"),
    "NaN in the run samples": (_set([1.0, float("nan")], *INT8, "metrics", "latency", 0, "samples_ms"),
                               "samples_ms[1] is nan"),
    "zero reference block": (_set([0.0], *INT8, "metrics", "latency", 0, "ref_blocks_ms"),
                             "ref_blocks_ms[0] is 0.0; it must be above 0"),
    "latency not a list": (_set({"batch": 1}, *INT8, "metrics", "latency"), "latency is an object, not a list"),
    "latency batch 0": (_set(0, *INT8, "metrics", "latency", 0, "batch"), "latency[0].batch is 0"),
    "string speedup": (_set("2x", *INT8, "speedup_vs_fp32"), "speedup_vs_fp32 is \"2x\", not a number"),
    "string cosine": (_set("high", *INT8, "fidelity", "cosine_mean"), "cosine_mean is \"high\""),
    "duplicate artifact names": (_set("onnx/fp32", *INT8, "name"), "repeats 'onnx/fp32'"),
    "no benchmark block": (_del("benchmark"), "benchmark is missing"),
    "empty batch sizes": (_set([], "benchmark", "batch_sizes"), "benchmark.batch_sizes is empty"),
    "string batch size": (_set(["1"], "benchmark", "batch_sizes"), "batch_sizes[0] is \"1\", not an integer"),
    "no model block": (_del("model"), "model is missing"),
    "no name": (_del("name"), "name is missing"),
    "wrong schema name": (_set("my.report", "schema"), "its schema is 'my.report', not 'compressor.report'"),
    "no schema": (_del("schema"), "it has no 'schema'"),
    "a bench --json file": (_set("compressor.bench", "schema"), "it is the output of `compressor bench --json`"),
    "newer schema version": (_set(3, "schema_version"), ("schema version 3, newer than", "upgrade compressor")),
    "older schema version": (_set(0, "schema_version"), ("schema version 0, older than", "run it again")),
    "string schema version": (_set("1", "schema_version"), "schema_version is \"1\", not an integer"),
    "device name with a space": (_set("pi 5", *INT8, "device"), "device is \"pi 5\", not a device name"),
    "device name a number": (_set(5, *INT8, "device"), "device is 5, not a device name"),
    "devices a list": (_set(["pi5"], "devices"), "devices is a list, not an object of device descriptions"),
    "device description text": (_set({"pi5": "a board"}, "devices"), "devices['pi5'] is text, not an object"),
    "emulated as text": (_set("yes", *INT8, "metrics", "emulated"), "emulated is \"yes\", not true/false"),
    "device_state a list": (_set([48.0], *INT8, "metrics", "device_state"), "device_state is a list, not an object"),
    "empty file": (_raw(b""), "is empty"),
    "whitespace only": (_raw(b"  \n\t\n"), "is empty"),
    "non-UTF-8 bytes": (_raw(b"\xff\xfe\x00{\x80garbage"), "is not UTF-8 text (byte 0 is 0xff)"),
    "UTF-16 text": (lambda: json.dumps(report()).encode("utf-16"), "is not UTF-8 text"),
    "nested 100000 deep": (_raw(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "integer of 5000 digits": (_raw(b'{"schema": ' + b"1" * 5000 + b"}"), "not a readable JSON report"),
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    (tmp_path / "good.json").write_text(json.dumps(report()))
    return tmp_path


def _write(files: Path, case: str) -> Path:
    make, _ = BROKEN[case]
    path = files / "bad.json"
    path.write_bytes(make())
    return path


def _says(case: str, path: Path, role: str) -> tuple[str, ...]:
    phrases = BROKEN[case][1]
    return (f"{role} {path}", *((phrases,) if isinstance(phrases, str) else phrases))


# --- broken reports ----------------------------------------------------------------

@pytest.mark.parametrize("case", BROKEN)
def test_gate_refuses_a_broken_report_with_exit_2(files, capsys, case):
    bad = _write(files, case)
    refused(capsys, "gate", bad, "--budgets", files / "budgets.yaml", says=_says(case, bad, "report"))


@pytest.mark.parametrize("case", BROKEN)
def test_compare_refuses_a_broken_candidate_with_exit_2(files, capsys, case):
    bad = _write(files, case)
    refused(capsys, "compare", files / "good.json", bad, says=_says(case, bad, "report"))


@pytest.mark.parametrize("case", ["only the schema header", "string size metric", "NaN p50", "newer schema version",
                                  "non-UTF-8 bytes", "ok artifact without metrics"])
def test_compare_refuses_a_broken_baseline_naming_it_the_baseline(files, capsys, case):
    bad = _write(files, case)
    refused(capsys, "compare", bad, files / "good.json", says=_says(case, bad, "baseline"))


@pytest.mark.parametrize("case", ["only the schema header", "string size metric", "NaN p50", "no model block",
                                  "duplicate artifact names"])
def test_gate_refuses_a_broken_baseline_with_exit_2(files, capsys, case):
    bad = _write(files, case)
    refused(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml", "--baseline", bad,
            says=_says(case, bad, "baseline"))


@pytest.mark.parametrize("command", ["gate", "compare"])
@pytest.mark.parametrize("where, says", [("missing.json", "missing.json: no such file"),
                                         (".", "is a directory; give the report.json file inside it")])
def test_a_missing_report_or_a_directory_is_one_line(files, capsys, command, where, says):
    path = files / where
    argv = ["gate", path, "--budgets", files / "budgets.yaml"] if command == "gate" else \
        ["compare", files / "good.json", path]
    refused(capsys, *argv, says=(str(path), says))


def test_invalid_budgets_recorded_in_the_report_are_one_line(files, capsys):
    r = report()
    r["budgets"] = {"limits": {"onnx/int8": {"max_size": "huge"}}}
    (files / "r.json").write_text(json.dumps(r))
    refused(capsys, "gate", files / "r.json", says=(f"report {files / 'r.json'}: its budgets are invalid at "
                                                    "budgets.limits.onnx/int8.max_size", "pass --budgets"))


def test_budgets_in_a_report_that_are_not_a_mapping_are_one_line(files, capsys):
    r = report()
    r["budgets"] = ["max_size"]
    (files / "r.json").write_text(json.dumps(r))
    refused(capsys, "gate", files / "r.json", says="budgets is a list, not an object")


def test_a_report_written_by_the_toolchain_reads_back_with_failed_and_skipped_rows(files, capsys):
    rows = report()["artifacts"] + [
        {"name": "tflite/int8", "target": "tflite", "label": "int8", "precision": "int8", "status": "failed",
         "error": "export failed", "notes": []},
        {"name": "onnx/fp16", "target": "onnx", "label": "fp16", "precision": "fp16", "status": "skipped",
         "error": "not asked for", "notes": []}]
    r = build(name="digits", model={"source": "m", "inputs": []}, reference={"accuracy": 0.99, "eval_samples": 4},
              bench={"batch_sizes": [1], "threads": 2, "device": "cpu", "runs": 100},
              machine={"cpu": {"model": "test", "kernel_flags": []}}, artifacts=rows)
    (files / "r.json").write_text(json.dumps(r))
    code, out, err = cli(capsys, "compare", files / "good.json", files / "r.json")
    assert code == 0 and err == "" and "tflite/int8" in out


# --- budgets against the report ----------------------------------------------------

def _gate_with(files: Path, capsys, budgets: str, *extra) -> tuple[int, str, str]:
    (files / "b.yaml").write_text(budgets)
    return cli(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml", *extra)


def test_budget_for_an_artifact_the_report_lacks_is_exit_2(files, capsys):
    (files / "b.yaml").write_text("version: 1\nlimits:\n  'tflite/int8': {max_size: 1MB}\n")
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml",
            says=("the budgets name artifact 'tflite/int8', which the report does not have",
                  "onnx/fp32, onnx/int8-static"))


def test_budgets_whose_wildcards_select_nothing_are_exit_2(files, capsys):
    (files / "b.yaml").write_text("version: 1\nlimits:\n  'tflite/*': {max_size: 1MB}\n")
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml",
            says="the budgets select no artifact of this report")


def test_a_wildcard_that_matches_nothing_is_fine_beside_one_that_applies(files, capsys):
    code, out, err = _gate_with(files, capsys, "version: 1\nlimits:\n  'tflite/*': {max_size: 1MB}\n"
                                               "  'onnx/int8': {max_size: 1MB}\n")
    assert code == 0 and "gate: 1 of 1 budgets hold" in out and err == ""


def test_budgets_on_an_empty_report_say_it_has_no_artifacts(files, capsys):
    r = report()
    r["artifacts"] = []
    (files / "good.json").write_text(json.dumps(r))
    (files / "b.yaml").write_text(BUDGETS)
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml", says="(it has: no artifacts)")


def test_accuracy_budget_on_a_report_without_accuracy_is_exit_2(files, capsys):
    r = report()
    for row in r["artifacts"]:
        row["metrics"]["accuracy"] = None
    (files / "good.json").write_text(json.dumps(r))
    (files / "b.yaml").write_text("version: 1\nlimits:\n  'onnx/int8': {min_accuracy: 90}\n")
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml",
            says=("budget min_accuracy for onnx/int8-static", "the report has no accuracy"))


def test_speedup_budget_without_an_fp32_twin_is_exit_2_naming_why(files, capsys):
    r = report()
    r["artifacts"] = [row for row in r["artifacts"] if row["label"] != "fp32"]
    for row in r["artifacts"]:  # as build() leaves them without a twin
        row.pop("speedup_vs_fp32"), row.pop("size_ratio_vs_fp32")
    (files / "good.json").write_text(json.dumps(r))
    (files / "b.yaml").write_text("version: 1\nlimits:\n  'onnx/int8': {min_speedup: 1.5}\n")
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml",
            says=("budget min_speedup for onnx/int8-static", "no measured fp32 onnx artifact"))


def test_latency_budget_at_a_batch_size_that_was_not_run_is_exit_2(files, capsys):
    (files / "b.yaml").write_text("version: 1\nlatency: {batch: 8}\nlimits:\n  'onnx/int8': {max_p50_ms: 5}\n")
    refused(capsys, "gate", files / "good.json", "--budgets", files / "b.yaml",
            says="the report has no latency at batch 8")


def test_regression_budget_for_an_artifact_the_baseline_lacks_is_skipped_and_says_so(files, capsys):
    base = report(seed=3)
    base["artifacts"] = base["artifacts"][:1]
    (files / "base.json").write_text(json.dumps(base))
    code, out, _ = _gate_with(files, capsys, "version: 1\nlimits:\n  'onnx/int8': {max_size_regression: 1}\n",
                              "--baseline", files / "base.json", "--junit", files / "g.xml")
    assert code == 0 and "gate: 1 of 1 budgets hold" in out
    assert "skipped: no baseline for this artifact" in (files / "g.xml").read_text()


# --- gate output paths --------------------------------------------------------------

OUTPUTS = ["--json", "--junit", "--markdown"]


@pytest.mark.parametrize("flag", OUTPUTS)
@pytest.mark.parametrize("where, says", [
    ("missing/out", ("the folder", "missing does not exist; create it first")),
    ("budgets.yaml/out", ("budgets.yaml is a file, not a folder",)),
    (".", ("is a folder; give a file name in it",)),
    ("good.json", ("is the report this command reads",)),
    ("budgets.yaml", ("is the budgets file this command reads",)),
])
def test_gate_output_that_cannot_be_written_is_refused_before_anything_is_read(files, capsys, flag, where, says):
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    out = files / where
    refused(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml", flag, out,
            says=(f"{flag} {out}", *says))
    assert {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()} == before
    assert debris(files) == []


@pytest.mark.parametrize("flag", OUTPUTS)
def test_gate_output_checks_come_before_reading_the_report(files, capsys, flag):
    # A missing report and an unwritable output: the output is named, so it was checked first.
    refused(capsys, "gate", files / "absent.json", flag, files / "no" / "x", says=f"{flag} {files / 'no' / 'x'}")


def test_gate_output_that_is_the_baseline_is_refused(files, capsys):
    (files / "base.json").write_text(json.dumps(report(seed=3)))
    refused(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml", "--baseline",
            files / "base.json", "--markdown", files / "base.json", says="is the baseline this command reads")
    assert json.loads((files / "base.json").read_text())["schema"] == "compressor.report"


def test_two_gate_outputs_into_one_file_are_refused(files, capsys):
    refused(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml", "--json", files / "o",
            "--junit", files / "o", says="--junit and --json both name")
    assert not (files / "o").exists()


def test_gate_outputs_into_existing_folders_are_written(files, capsys):
    code, _, err = cli(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml", "--json",
                       files / "g.json", "--junit", files / "g.xml", "--markdown", files / "g.md")
    assert code == 0 and err == ""
    assert json.loads((files / "g.json").read_text())["passed"] is True
    assert "<testsuite" in (files / "g.xml").read_text() and "Gate: passed" in (files / "g.md").read_text()


# --- exit 1 means over budget, only --------------------------------------------------

def test_exit_1_is_a_budget_exceeded_with_one_line(files, capsys):
    code, out, err = _gate_with(files, capsys, "version: 1\nlimits:\n  'onnx/int8': {max_size: 100KB}\n")
    assert code == 1 and "FAIL onnx/int8-static: max_size 100.0 KB" in out
    assert "1 budget exceeded" in one_line(err)


def test_a_failed_artifact_fails_its_budgets_with_exit_1(files, capsys):
    r = report()
    row = r["artifacts"][1]
    row.update(status="failed", error="validation failed")
    del row["metrics"]
    (files / "good.json").write_text(json.dumps(r))
    code, out, err = _gate_with(files, capsys, BUDGETS)
    assert code == 1 and "artifact failed: validation failed" in out and one_line(err)


def test_no_broken_report_reads_as_over_budget(files, capsys):
    codes = {}
    for case in BROKEN:
        bad = _write(files, case)
        codes[case] = cli(capsys, "gate", bad, "--budgets", files / "budgets.yaml")[0]
    assert set(codes.values()) == {2}, {c: v for c, v in codes.items() if v != 2}


def test_reading_a_report_leaves_it_as_it_was(files, capsys):
    before = (files / "good.json").read_bytes()
    cli(capsys, "gate", files / "good.json", "--budgets", files / "budgets.yaml")
    cli(capsys, "compare", files / "good.json", files / "good.json")
    assert (files / "good.json").read_bytes() == before and debris(files) == []
