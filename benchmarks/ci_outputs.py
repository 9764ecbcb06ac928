"""What CI systems read from a gate: JUnit XML, a JSON summary, Markdown for the job
summary and a pull-request comment with deltas against the baseline."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.device_report import grouped, row_emulated
from benchmarks.gate import Check
from benchmarks.report import human_size

ARROW_WORSE, ARROW_BETTER, FLAT = "🔺", "🔻", "➖"


def junit_xml(checks: list[Check], suite: str) -> str:
    """One test case per (artifact, budget); a violated budget is a <failure>."""
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                       failures=str(sum(not c.passed for c in checks)), errors="0", skipped="0")
    for c in checks:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{c.artifact}", name=c.limit_name, time="0")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.line(), type="BudgetExceeded")
            failure.text = c.line()
        else:
            out = ET.SubElement(case, "system-out")
            out.text = c.line()
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def json_summary(checks: list[Check], report: dict, baseline: dict | None) -> dict:
    return {"schema": "compressor.gate", "schema_version": 1, "report": report.get("name"),
            "baseline": None if baseline is None else baseline.get("created"),
            "passed": all(c.passed for c in checks), "violations": sum(not c.passed for c in checks),
            "checks": [c.to_json() for c in checks]}


def checks_markdown(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.passed]
    head = (f"**Gate: {'passed' if not failed else 'FAILED'}** — {len(checks) - len(failed)} of {len(checks)} "
            "budgets hold.")
    lines = [head, "", "| | artifact | budget | limit | measured | detail |", "|---|---|---|---:|---:|---|"]
    for c in sorted(checks, key=lambda c: (c.passed, c.artifact)):
        lines.append(f"| {'✅' if c.passed else '❌'} | {c.artifact} | {c.limit_name} | {c.fmt(c.limit)} | "
                     f"{c.fmt(c.measured)} | {c.detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _delta(cur: float | None, old: float | None, higher_is_worse: bool, pct: bool = True,
           tolerance: float = 0.01) -> str:
    if cur is None or old is None or old == 0:
        return "-"
    change = (cur - old) / abs(old) if pct else cur - old
    if abs(change) < tolerance:
        arrow = FLAT
    else:
        arrow = ARROW_WORSE if (change > 0) == higher_is_worse else ARROW_BETTER
    return f"{arrow} {100 * change:+.1f}%" if pct else f"{arrow} {100 * change:+.2f} pt"


def comment_markdown(report: dict, baseline: dict | None, checks: list[Check]) -> str:
    """A pull-request comment: the gate verdict and, per artifact, the change against
    the baseline (🔺 worse, 🔻 better, ➖ within 1%). Rows of other devices carry their
    device in the name; an emulated row's latency is shown, marked, with no delta."""
    batch = report["benchmark"]["batch_sizes"][0]
    lines = [f"### compressor: {report['name']}", ""]
    base_rows = {r["name"]: r for r in (baseline or {}).get("artifacts", [])}
    lines += ["| artifact | p50 ms | Δ p50 | size | Δ size | accuracy | Δ accuracy |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in grouped(report):
        m = r.get("metrics")
        if not m:
            lines.append(f"| {r['name']} | {r.get('status')} | | | | | |")
            continue
        b = (base_rows.get(r["name"]) or {}).get("metrics")
        p50 = _p50(m, batch)
        acc = m.get("accuracy")
        emulated = row_emulated(report, r)
        p50_cell = "-" if p50 is None else f"{p50:.3f}" + (" (emulated)" if emulated else "")
        p50_delta = "-" if emulated else _delta(p50, _p50(b, batch) if b else None, True)
        lines.append(
            f"| {r['name']} | {p50_cell} | {p50_delta} | "
            f"{human_size(m['size_bytes'])} | {_delta(m['size_bytes'], b['size_bytes'] if b else None, True)} | "
            f"{'-' if acc is None else f'{100 * acc:.2f}%'} | "
            f"{_delta(acc, b.get('accuracy') if b else None, False, pct=False, tolerance=0.0005)} |")
    if baseline is None:
        lines += ["", "_No baseline given: deltas are blank._"]
    from benchmarks.recommend import markdown as recommended_markdown

    lines += recommended_markdown(report)
    lines += ["", checks_markdown(checks)]
    return "\n".join(lines)


def _p50(metrics: dict | None, batch: int) -> float | None:
    if not metrics:
        return None
    return next((l["p50_ms"] for l in metrics["latency"] if l["batch"] == batch), None)


def append_step_summary(markdown: str) -> Path | None:
    """GitHub Actions shows $GITHUB_STEP_SUMMARY on the run's page; append, never replace."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return Path(target)
