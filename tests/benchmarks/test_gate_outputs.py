"""What CI reads from `compressor gate`: the pull-request comment, JUnit, and the
--format table|json|csv of stdout, on reports with known differences."""

import csv
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest

from benchmarks import ci_outputs
from benchmarks.gate import evaluate
from compressor.config.budgets import BudgetsSpec, Limits
from compressor.flows.cli import main
from gate_reports import report

BUDGETS = """\
version: 1
limits:
  "*": {max_accuracy_drop: 0.5, max_size: 2MB}
  "onnx/int8": {min_speedup: 1.5, max_latency_regression: 5, max_size_regression: 1}
"""
SKIPPED = {"name": "torchscript/fp16", "target": "torchscript", "label": "fp16", "precision": "fp16",
           "status": "skipped", "notes": [],
           "error": "the torchscript target does not offer fp16 quantization (it offers: static, dynamic)"}
LONG = "int8-static-percentile-calibrated-on-natural-images"


def slower_runner(int8_ms: float = 1.0, label: str = "int8-static") -> dict:
    """A candidate measured on a runner 1.7x slower at everything (the reference workload
    too), with an artifact the run skipped."""
    r = report(int8_ms=int8_ms, seed=10, slow=1.7)
    r["artifacts"].append(dict(SKIPPED))
    for row in r["artifacts"]:
        row["name"] = row["name"].replace("int8-static", label)
        row["label"] = row["label"].replace("int8-static", label)
    return r


def baseline(label: str = "int8-static") -> dict:
    b = report(seed=20)
    for row in b["artifacts"]:
        row["name"] = row["name"].replace("int8-static", label)
    return b


@pytest.fixture
def files(tmp_path):
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    (tmp_path / "base.json").write_text(json.dumps(baseline()))
    (tmp_path / "same.json").write_text(json.dumps(slower_runner()))
    (tmp_path / "slow.json").write_text(json.dumps(slower_runner(int8_ms=1.3)))
    return tmp_path


def gate(files, candidate, *extra):
    return main(["gate", str(files / candidate), "--budgets", str(files / "budgets.yaml"),
                 "--baseline", str(files / "base.json"), *extra])


def comment(files, candidate: str) -> str:
    gate(files, candidate, "--markdown", str(files / "c.md"))
    return (files / "c.md").read_text()


def test_the_comment_states_the_verdict_and_the_normalised_figure_that_decided(files):
    text = comment(files, "same.json")
    lines = text.splitlines()
    assert lines[0] == "<!-- compressor-gate: digits -->" == ci_outputs.marker(report())
    assert lines[1] == "### ✅ digits: gate passed — 9 of 9 budgets hold (2 skipped)"
    int8 = next(ln for ln in lines if ln.startswith("| onnx/int8-static | 1.7"))
    assert "🔺 +7" in int8  # the raw median is 70% slower: the runner, not the model
    judged = next(ln for ln in lines if ln.startswith("| onnx/int8-static | 1 → 1.7 |"))
    cells = [c.strip() for c in judged.strip("|").split("|")]
    assert cells[2].startswith("🔺 +7") and re.fullmatch(r"\*\*➖ [+-]\d\.\d%\*\*|\*\*➖ ±0\.0%\*\*", cells[3])
    assert cells[5:] == ["5%", "normalised", "✅"]
    assert "ran the reference workload 70% slower than the baseline's" in text


def test_with_normalisation_off_the_comment_says_the_raw_figure_decided(files):
    (files / "budgets.yaml").write_text(BUDGETS.replace("version: 1\n", "version: 1\nlatency: {normalize: false}\n"))
    text = comment(files, "same.json")
    judged = next(ln for ln in text.splitlines() if ln.startswith("| onnx/int8-static | 1 → 1.7 |"))
    cells = [c.strip() for c in judged.strip("|").split("|")]
    assert cells[2].startswith("**🔺 +7") and cells[3] == "-"
    assert cells[6:] == ["normalisation is off (latency.normalize: false)", "❌"]
    assert text.splitlines()[1] == "### ❌ digits: gate FAILED — 1 of 9 budgets exceeded (2 skipped)"


def test_passes_are_folded_and_failures_stay_in_sight(files):
    text = comment(files, "slow.json")
    checks = text[text.index("**Gate: FAILED**"):]
    visible, folded = checks.split("<details>", 1)
    assert "| ❌ | onnx/int8-static | max_latency_regression | 5% |" in visible and "✅" not in visible
    assert "<summary>✅ 6 judged and held</summary>" in folded and "❌" not in folded
    assert "<summary>⏭️ 2 not judged (skipped)</summary>" in folded
    assert folded.count("</details>") == 2


def test_the_comment_says_which_artifacts_the_run_skipped(files):
    text = comment(files, "same.json")
    assert ("**Not gated:** the run itself skipped these artifacts, so the budgets that select them with a "
            "wildcard do not apply:") in text
    assert "- torchscript/fp16: the torchscript target does not offer fp16 quantization" in text


def test_no_signed_zero_anywhere_in_the_comment(files):
    (files / "base.json").write_text(json.dumps(slower_runner()))  # the candidate against itself
    text = comment(files, "same.json")
    assert not re.search(r"[-+]0(\.0+)?( ?(%|pt))?(?![.\d])", text), text
    assert "➖ ±0.0%" in text and "➖ ±0.00 pt" in text and "| 0 pt |" in text


def test_junit_times_are_the_gates_own_and_skips_are_skipped(files):
    gate(files, "slow.json", "--junit", str(files / "g.xml"))
    suite = ET.parse(files / "g.xml").getroot().find("testsuite")
    cases = {(c.get("classname").rsplit(".", 1)[-1], c.get("name")): c for c in suite.iter("testcase")}
    times = {k: float(c.get("time")) for k, c in cases.items()}
    assert times[("onnx/int8-static", "max_latency_regression")] > times[("onnx/int8-static", "max_size")] > 0
    assert float(suite.get("time")) == pytest.approx(sum(times.values()), abs=1e-5)
    assert suite.get("skipped") == "2" and suite.get("failures") == "1" and suite.get("tests") == "9"
    skip = cases[("torchscript/fp16", "max_size")].find("skipped")
    assert skip is not None and "the run skipped this artifact" in skip.get("message")


def test_format_json_prints_the_checks_and_verdict_only(files, capsys):
    assert gate(files, "slow.json", "--format", "json") == 1
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert out.err == "compressor: error: 1 budget exceeded (of 9; each is shown above)\n"
    assert data["verdict"] == "failed" and data["passed"] is False
    assert data["counts"] == {"checks": 9, "passed": 6, "failed": 1, "skipped": 2}
    assert data["not_gated"] == [{"artifact": "torchscript/fp16", "why": SKIPPED["error"]}]
    lat = next(c for c in data["checks"] if c["limit_name"] == "max_latency_regression")
    assert lat["verdict"] == "FAIL" and lat["latency"]["normalised"] is True and 65 < lat["latency"]["raw"] < 140
    assert gate(files, "same.json", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "passed"


def test_format_csv_has_one_row_per_check_with_plain_numbers(files, capsys):
    assert gate(files, "slow.json", "--format", "csv") == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 9 and tuple(rows[0]) == ci_outputs.CSV_COLUMNS
    size = next(r for r in rows if r["artifact"] == "onnx/int8-static" and r["budget"] == "max_size")
    assert (size["verdict"], size["limit"], size["measured"], size["unit"]) == ("ok", "2000000", "250000", "bytes")
    lat = next(r for r in rows if r["budget"] == "max_latency_regression")
    assert lat["verdict"] == "FAIL" and lat["decided_by"] == "normalised" and 25 < float(lat["measured"]) < 35
    assert float(lat["interval_low"]) > 5 and lat["margin"].endswith(" pt over")
    assert [r["verdict"] for r in rows if r["artifact"] == "torchscript/fp16"] == ["skip", "skip"]


def test_format_table_names_each_failure_once_and_fits_the_rest_in_80_columns(tmp_path, capsys):
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    (tmp_path / "base.json").write_text(json.dumps(baseline(LONG)))
    (tmp_path / "slow.json").write_text(json.dumps(slower_runner(1.3, LONG)))
    assert gate(tmp_path, "slow.json") == 1
    out = capsys.readouterr().out.splitlines()
    fail = [ln for ln in out if ln.startswith("FAIL")]
    assert len(fail) == 1 and fail[0].startswith(f"FAIL onnx/{LONG}: max_latency_regression 5%, measured 30")
    assert "raw change +1" in fail[0]  # 1.3x the work on a 1.7x slower runner: +121% raw, +30% normalised
    table = out[1:out.index(next(ln for ln in out if re.match(r"  \S", ln)))]
    assert table[0].split() == ["artifact", "budget", "limit", "measured"]
    assert max(len(ln) for ln in table) <= 80 and all(ln == ln.rstrip() for ln in table)
    assert sum("max_latency_regression" in ln for ln in out) == 1
    assert set(table[1]) == {"─"}  # the rule under the header, as in the other tables
    rows = [ln.split() for ln in table[2:]]
    assert {r[0] for r in rows} == {"ok", "skip"}
    names = {r[1] for r in rows} - {"onnx/fp32", "torchscript/fp16"}
    assert len(names) == 1 and re.fullmatch(r"onnx/int8-static-\S*…\S*-images", names.pop())  # both ends kept
    assert max(len(ln) for ln in table) == 80  # the names took what the numbers left
    sizes = {tuple(r[-4:]) for r in rows if r[2] == "max_size" and r[0] == "ok"}
    assert sizes == {("2.0", "MB", "1.0", "MB"), ("2.0", "MB", "250.0", "KB")}
    assert out[-1] == "gate: 1 of 9 budgets exceeded (2 skipped)"
    assert ("  not gated: torchscript/fp16: the run skipped it (the torchscript target does not offer fp16 "
            "quantization (it offers: static, dynamic))") in out


def test_a_narrow_terminal_drops_the_limit_column_before_it_cuts_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "48")
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    (tmp_path / "base.json").write_text(json.dumps(baseline()))
    (tmp_path / "slow.json").write_text(json.dumps(slower_runner(1.3)))
    assert gate(tmp_path, "slow.json") == 1
    out = capsys.readouterr().out.splitlines()
    table = out[1:out.index(next(ln for ln in out if re.match(r"  \S", ln)))]
    assert max(len(ln) for ln in table) <= 48 and table[0].split() == ["artifact", "budget", "measured"]
    assert any(re.fullmatch(r"ok +onn\S*…\S* +max_size_regression +0%", ln) for ln in table), table


def test_an_unknown_format_is_one_line_exit_2(files, capsys):
    with pytest.raises(SystemExit) as e:
        gate(files, "same.json", "--format", "yaml")
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith("compressor gate: error: argument --format: invalid choice: 'yaml'")


def test_the_run_flow_names_the_count_not_a_second_copy_of_the_failure():
    from benchmarks.gate_cli import run_gate
    from compressor.errors import BudgetExceeded

    spec = BudgetsSpec(limits={"onnx/int8": Limits(max_p50_ms=0.5)})
    out = io.StringIO()
    with pytest.raises(BudgetExceeded) as e:
        run_gate(report(), spec, stream=out)
    assert str(e.value) == "1 budget exceeded (of 1; each is shown above)"
    assert sum(ln.startswith("FAIL") for ln in out.getvalue().splitlines()) == 1


def test_checks_markdown_alone_folds_passes():
    checks = evaluate(report(), BudgetsSpec(limits={"*": Limits(max_size="2MB")}))
    text = ci_outputs.checks_markdown(checks)
    assert text.startswith("**Gate: passed** — 2 of 2 budgets hold.\n\n<details>\n<summary>✅ 2 judged and held")
