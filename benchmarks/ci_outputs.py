"""What CI systems read from a gate: JUnit XML, a JSON summary, CSV, Markdown for the
job summary and a pull-request comment with deltas against the baseline."""

from __future__ import annotations

import csv
import io
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.device_report import grouped, row_emulated
from benchmarks.gate import Check, number, not_gated
from benchmarks.report import human_size

ARROW_WORSE, ARROW_BETTER, FLAT = "🔺", "🔻", "➖"
MARK = {"ok": "✅", "FAIL": "❌", "skip": "⏭️"}
MARKER_PREFIX = "<!-- compressor-gate"
CSV_COLUMNS = ("artifact", "budget", "verdict", "limit", "measured", "unit", "margin", "decided_by", "raw_change",
               "interval_low", "interval_high", "seconds", "detail")


def marker(report: dict) -> str:
    """The hidden first line of the pull-request comment. The example workflow finds the
    comment it posted earlier by it and updates that one, so a pull request carries one
    comment per report (a matrix of models gets one each)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(report.get("name") or "report"))
    return f"{MARKER_PREFIX}: {name} -->"


def counts(checks: list[Check]) -> dict[str, int]:
    return {"checks": len(checks), "passed": sum(c.passed and not c.skipped for c in checks),
            "failed": sum(not c.passed for c in checks), "skipped": sum(c.skipped for c in checks)}


def verdict_line(checks: list[Check]) -> str:
    """"passed: 5 of 5 budgets hold (1 skipped)" / "FAILED: 1 of 5 budgets exceeded".
    A skipped check was not judged; it holds, as a skipped test does not fail."""
    n = counts(checks)
    skipped = f" ({n['skipped']} skipped)" if n["skipped"] else ""
    if n["failed"]:
        return f"FAILED: {n['failed']} of {n['checks']} budgets exceeded{skipped}"
    return f"passed: {n['checks']} of {n['checks']} budgets hold{skipped}"


def junit_xml(checks: list[Check], suite: str) -> str:
    """One test case per (artifact, budget); a violated budget is a <failure>, one the
    gate did not judge (emulated latency, no baseline row, an artifact the run skipped)
    is <skipped>. Times are the gate's own seconds per check (see Check.seconds)."""
    n = counts(checks)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(n["checks"]), failures=str(n["failed"]),
                       errors="0", skipped=str(n["skipped"]), time=_seconds(sum(c.seconds for c in checks)))
    for c in checks:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{c.artifact}", name=c.limit_name,
                             time=_seconds(c.seconds))
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.line(), type="BudgetExceeded")
            failure.text = c.line()
        elif c.skipped:
            ET.SubElement(case, "skipped", message=c.detail)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = c.line()
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _seconds(s: float) -> str:
    return f"{s:.6f}"


def json_summary(checks: list[Check], report: dict, baseline: dict | None) -> dict:
    n = counts(checks)
    return {"schema": "compressor.gate", "schema_version": 1, "report": report.get("name"),
            "baseline": None if baseline is None else baseline.get("created"),
            "verdict": "failed" if n["failed"] else "passed", "passed": not n["failed"],
            "violations": n["failed"], "counts": n,
            "not_gated": [{"artifact": a, "why": why} for a, why in not_gated(checks).items()],
            "checks": [c.to_json() for c in checks]}


def checks_csv(checks: list[Check]) -> str:
    """One row per check, numbers unformatted (bytes, ms, %, points as the unit says)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for c in checks:
        lat = c.latency
        w.writerow([c.artifact, c.limit_name, c.verdict, _g(c.limit), _g(c.measured), c.unit, c.margin(),
                    "" if lat is None else "normalised" if lat.normalised else "raw",
                    "" if lat is None else _g(lat.raw), "" if lat is None else _g(lat.low),
                    "" if lat is None else _g(lat.high), _seconds(c.seconds), c.detail])
    return out.getvalue()


def _g(x: float | None) -> str:
    return "" if x is None else number(x, ".10g")


def checks_markdown(checks: list[Check]) -> str:
    """The verdict and the failures in sight; passes and skipped checks folded."""
    failed = [c for c in checks if not c.passed]
    held = [c for c in checks if c.passed and not c.skipped]
    skipped = [c for c in checks if c.skipped]
    head, rest = verdict_line(checks).split(": ", 1)
    lines = [f"**Gate: {head}** — {rest}.", ""]
    if failed:
        lines += _table(failed, with_margin=True) + [""]
    for group, summary in ((held, f"✅ {len(held)} judged and held"),
                           (skipped, f"⏭️ {len(skipped)} not judged (skipped)")):
        if group:
            lines += ["<details>", f"<summary>{summary}</summary>", ""] + _table(group) + ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def _table(checks: list[Check], with_margin: bool = False) -> list[str]:
    head = "| | artifact | budget | limit | measured |" + (" past the limit |" if with_margin else "") + " detail |"
    rule = "|---|---|---|---:|---:|" + ("---:|" if with_margin else "") + "---|"
    out = [head, rule]
    for c in sorted(checks, key=lambda c: c.artifact):
        margin = f" {c.margin()} |" if with_margin else ""
        out.append(f"| {MARK[c.verdict]} | {c.artifact} | {c.limit_name} | {c.fmt(c.limit)} | {c.fmt(c.measured)} |"
                   f"{margin} {c.detail.replace('|', '/')} |")
    return out


def _delta(cur: float | None, old: float | None, higher_is_worse: bool, pct: bool = True,
           tolerance: float = 0.01) -> str:
    if cur is None or old is None or old == 0:
        return "-"
    change = (cur - old) / abs(old) if pct else cur - old
    if abs(change) < tolerance:
        arrow = FLAT
    else:
        arrow = ARROW_WORSE if (change > 0) == higher_is_worse else ARROW_BETTER
    return f"{arrow} {number(100 * change, '+.1f')}%" if pct else f"{arrow} {number(100 * change, '+.2f')} pt"


def comment_markdown(report: dict, baseline: dict | None, checks: list[Check]) -> str:
    """A pull-request comment: the gate's verdict first, then per artifact the change
    against the baseline (🔺 worse, 🔻 better, ➖ within 1%), the latency figures the gate
    judged (raw and normalised, and which decided), what was not gated and why, and the
    checks (failures shown, the rest folded). Rows of other devices carry their device
    in the name; an emulated row's latency is shown, marked, with no delta."""
    batch = report["benchmark"]["batch_sizes"][0]
    head, rest = verdict_line(checks).split(": ", 1)
    mark = MARK["FAIL"] if counts(checks)["failed"] else MARK["ok"]
    lines = [marker(report), f"### {mark} {report['name']}: gate {head} — {rest}", ""]
    if baseline is not None:
        lines += [f"Against the baseline report of {baseline.get('created', 'unknown date')}.", ""]
    base_rows = {r["name"]: r for r in (baseline or {}).get("artifacts", [])}
    lines += [f"| artifact | p50 ms (b{batch}) | Δ p50 raw | size | Δ size | accuracy | Δ accuracy |",
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
    lines += latency_markdown(checks)
    skipped = not_gated(checks)
    if skipped:
        lines += ["", "**Not gated:** the run itself skipped these artifacts, so the budgets that select them "
                  "with a wildcard do not apply:", ""] + [f"- {a}: {why}" for a, why in skipped.items()]
    from benchmarks.recommend import markdown as recommended_markdown

    lines += recommended_markdown(report)
    lines += ["", checks_markdown(checks)]
    return "\n".join(lines)


def latency_markdown(checks: list[Check]) -> list[str]:
    """The latency regressions as the gate judged them: the raw change beside the
    normalised one, the reference workload that explains the difference, and which
    figure decided (in bold)."""
    gated = [c for c in checks if c.latency is not None]
    if not gated:
        return []
    conf = f"{round(100 * gated[0].latency.confidence)}%"
    out = ["", "**Latency, as the gate judged it.** Δ p50 raw above is the plain change of the median. "
           "`max_latency_regression` is decided by the **bold** figure: the change normalised by a fixed "
           "reference workload timed right after each block of runs on the same machine (so a runner that is "
           "uniformly slower or faster is not a regression), or the raw change where normalisation is off or a "
           f"report lacks the reference timings. It fails only when the whole {conf} interval lies above the budget."]
    ratios = sorted(c.latency.reference_ms[1] / c.latency.reference_ms[0] for c in gated if c.latency.reference_ms)
    if ratios and abs(ratios[len(ratios) // 2] - 1) >= 0.1:
        r = ratios[len(ratios) // 2]
        out[-1] += (f" This run's machine ran the reference workload {number(100 * abs(r - 1), '.0f')}% "
                    f"{'slower' if r > 1 else 'faster'} than the baseline's: that part of the raw change is the "
                    "machine, not the model.")
    out += ["", "| artifact | reference workload ms | raw Δ | normalised Δ | interval | budget | decided by | |",
            "|---|---:|---:|---:|---:|---:|---|---|"]
    for c in gated:
        lat = c.latency
        ref = "-" if lat.reference_ms is None else f"{lat.reference_ms[0]:.3g} → {lat.reference_ms[1]:.3g}"
        raw = _judged_arrow(lat.raw, lat.raw, lat.raw) + f" {number(lat.raw, '+.1f')}%"
        norm = f"{_judged_arrow(lat.estimate, lat.low, lat.high)} {number(lat.estimate, '+.1f')}%"
        if lat.normalised:
            norm, decided = f"**{norm}**", "normalised"
        else:
            raw, norm, decided = f"**{raw}**", "-", lat.how.removeprefix("raw: ")
        interval = f"{number(lat.low, '+.1f')}% .. {number(lat.high, '+.1f')}%"
        out.append(f"| {c.artifact} | {ref} | {raw} | {norm} | {interval} | {c.fmt(c.limit)} | {decided} | "
                   f"{MARK[c.verdict]} |")
    return out


def _judged_arrow(estimate: float, low: float, high: float) -> str:
    """🔺 when the whole interval is slower (beyond 1% for a bare figure), 🔻 when it is
    faster, ➖ when it spans no change: the noise the gate forgives."""
    if low > 0 and (low != high or estimate >= 1):
        return ARROW_WORSE
    if high < 0 and (low != high or estimate <= -1):
        return ARROW_BETTER
    return FLAT


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
