"""`compressor gate` and the gate at the end of `compressor run`: evaluate, write what
CI reads, and show the checks: a table that fits the terminal (80 columns when it is not
one), or JSON / CSV on stdout for scripts."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from benchmarks import ci_outputs
from benchmarks.gate import Check, evaluate, not_gated
from benchmarks.outpaths import check_outputs
from benchmarks.report_read import ReportError, load_report
from compressor.config.budgets import BudgetsSpec
from compressor.errors import BudgetExceeded, RecipeError
from compressor.fsutil import write_json, write_text


FORMATS = ("table", "json", "csv")


def run_gate(report: dict, spec: BudgetsSpec, baseline_path: Path | None = None, *, junit: Path | None = None,
             json_out: Path | None = None, markdown: Path | None = None, stream=None,
             fmt: str = "table") -> list[Check]:
    """Evaluate, write the outputs and show the checks in `fmt`; raise BudgetExceeded
    (exit 1) on a violation, after every failure was shown once."""
    stream = stream or sys.stdout
    baseline_path = baseline_path or spec.baseline
    baseline = load_report(baseline_path, "baseline") if baseline_path else None
    checks = evaluate(report, spec, baseline)
    if not checks:
        raise RecipeError("the budgets select no artifact of this report; check the selectors "
                          f"({', '.join(spec.limits) or 'recommended.devices: ' + ', '.join(spec.recommended.devices)})")
    if junit:
        write_text(junit, ci_outputs.junit_xml(checks, f"compressor.gate.{report['name']}"))
    summary = ci_outputs.json_summary(checks, report, baseline)
    if json_out:
        write_json(json_out, summary)
    comment = ci_outputs.comment_markdown(report, baseline, checks)
    if markdown:
        write_text(markdown, comment)
    ci_outputs.append_step_summary(comment)
    if fmt == "json":
        stream.write(json.dumps(summary, indent=2) + "\n")
    elif fmt == "csv":
        stream.write(ci_outputs.checks_csv(checks))
    else:
        print_checks(checks, stream)
    n = ci_outputs.counts(checks)
    if n["failed"]:
        # The failures were shown above, each once: the error names the count only.
        raise BudgetExceeded(f"the gate failed: {n['failed']} of {n['checks']} budgets exceeded (see the gate's "
                             "checks above)")
    return checks


def print_checks(checks: list[Check], stream) -> None:
    """One row per check, failures first, fitted to the terminal: artifact names are
    ellipsised, numbers never cut (the limit and margin columns go first when even an
    8-character name does not fit). Below: why each failure failed, the latency
    figures the gate judged, and what was skipped."""
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    order = {"FAIL": 0, "ok": 1, "skip": 2}
    ordered = sorted(checks, key=lambda c: order[c.verdict])
    columns = {"": [c.verdict for c in ordered], "artifact": [c.artifact for c in ordered],
               "budget": [c.limit_name for c in ordered], "limit": [c.fmt(c.limit) for c in ordered],
               "measured": [c.fmt(c.measured) for c in ordered], "past limit": [c.margin() for c in ordered]}
    if not any(columns["past limit"]):
        del columns["past limit"]
    widths = {k: max(cell_len(x) for x in [k, *v]) for k, v in columns.items()}

    def room() -> int:  # what is left for the artifact names, one space between columns
        return console.width - sum(w for k, w in widths.items() if k != "artifact") - (len(widths) - 1)

    for optional in ("past limit", "limit"):
        if room() < min(8, widths["artifact"]) and optional in widths:
            del columns[optional], widths[optional]
    widths["artifact"] = max(1, min(widths["artifact"], room()))
    table = Table(box=None, padding=(0, 1), collapse_padding=True, pad_edge=False, show_edge=False,
                  header_style="bold")
    for k in columns:
        table.add_column(k, width=widths[k], no_wrap=True, overflow="ellipsis",
                         justify="right" if k in ("limit", "measured", "past limit") else "left")
    for cells in zip(*columns.values()):
        table.add_row(*cells)
    with console.capture() as captured:
        console.print(table)
    stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    # Indented and without a verdict word: each failure is named once, in the table.
    notes = [f"{c.artifact} {c.limit_name}: {c.detail}" for c in ordered
             if (not c.passed and c.detail) or (c.passed and c.latency is not None)]
    notes += [f"not gated: {a}: the run skipped it ({why})" for a, why in not_gated(checks).items()]
    other = {}
    for c in ordered:
        if c.skipped and c.artifact not in not_gated(checks):
            other.setdefault(c.detail, []).append(f"{c.artifact} {c.limit_name}")
    notes += [f"{why}: {', '.join(which)}" for why, which in other.items()]
    for note in notes:  # broken at spaces only: a number or a name is never split
        stream.write(textwrap.fill(note, console.width, initial_indent="  ", subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False) + "\n")
    stream.write(f"gate {ci_outputs.verdict_line(checks)}\n")


def gate_command(args) -> int:
    from compressor.config.budgets import load_budgets

    check_outputs({"--junit": args.junit, "--json": args.json, "--markdown": args.markdown},
                  {"report": args.report, "budgets file": args.budgets, "baseline": args.baseline})
    report = load_report(args.report)
    if args.budgets:
        spec: BudgetsSpec = load_budgets(args.budgets)
    elif report.get("budgets"):
        spec = _report_budgets(report, args.report)
    else:
        raise RecipeError(f"{args.report}: no budgets to check; pass --budgets budgets.yaml "
                          "or add 'budgets' to the recipe")
    try:
        run_gate(report, spec, args.baseline, junit=args.junit, json_out=args.json, markdown=args.markdown,
                 fmt=args.format)
    except BudgetExceeded:
        return BudgetExceeded.exit_code  # the checks and the verdict are out already: no second report of it
    return 0


def _report_budgets(report: dict, path: Path) -> BudgetsSpec:
    """The budgets a run recorded in its report (its recipe's), checked like a budgets file."""
    from pydantic import ValidationError

    try:
        return BudgetsSpec.model_validate(report["budgets"])
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "budgets"
        raise ReportError(f"report {path}: its budgets are invalid at budgets.{where}: {err['msg']}; pass "
                          "--budgets budgets.yaml or give the report.json that `compressor run` wrote") from None
