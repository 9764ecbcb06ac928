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
        raise BudgetExceeded(f"{n['failed']} budget{'s' * (n['failed'] > 1)} exceeded (of {n['checks']}; each is "
                             "shown above)")
    return checks


def print_checks(checks: list[Check], stream) -> None:
    """Each failure once, as a sentence (what, the limit, the measured value, by how
    much, why); then a table of the checks that held or were skipped, fitted to the
    terminal (80 columns when it is not one): artifact names are ellipsised, numbers
    never cut, the limit column goes first when even an 8-character name does not fit.
    Then the latency figures the gate judged, what was not gated, and the verdict.
    Sentences are wrapped at spaces in a terminal, and one line each in a pipe or a CI
    log (whose viewer wraps, and where a failure is one line to grep)."""
    from rich.console import Console

    console = Console(file=stream, highlight=False, markup=False, emoji=False)

    def say(text: str, indent: str = "") -> None:
        if console.is_terminal:
            text = textwrap.fill(text, console.width, initial_indent=indent, subsequent_indent=indent + "    ",
                                 break_long_words=False, break_on_hyphens=False)
        else:
            text = indent + text
        stream.write(text + "\n")

    for c in checks:
        if not c.passed:
            say(c.line())
    rest = [c for c in checks if c.passed]
    if rest:
        stream.write(_table(sorted(rest, key=lambda c: c.skipped), console))
    for c in rest:
        if c.latency is not None:  # the raw and the normalised change, and which decided
            say(f"{c.artifact} {c.limit_name}: {c.detail}", "  ")
    skipped = not_gated(checks)
    for artifact, why in skipped.items():
        say(f"not gated: {artifact}: the run skipped it ({why})", "  ")
    reasons: dict[str, list[str]] = {}
    for c in rest:
        if c.skipped and c.artifact not in skipped:
            reasons.setdefault(c.detail, []).append(f"{c.artifact} {c.limit_name}")
    for why, which in reasons.items():
        say(f"{why}: {', '.join(which)}", "  ")
    stream.write(f"gate: {ci_outputs.verdict_line(checks).split(': ', 1)[1]}\n")


def _table(checks: list[Check], console) -> str:
    from benchmarks.termtable import Column, FitTable

    table = FitTable([Column("", key="verdict", left=True), Column("artifact", left=True, shrink=True, min_width=8),
                      Column("budget", left=True), Column("limit", drop=1), Column("measured")])
    for c in checks:
        table.add_row([c.verdict, c.artifact, c.limit_name, c.fmt(c.limit), c.fmt(c.measured)])
    with console.capture() as captured:
        table.render(console)
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


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
    # Over budget, run_gate raises BudgetExceeded: the CLI's one stderr line (exit 1) counts the
    # failures, which were each shown once already.
    run_gate(report, spec, args.baseline, junit=args.junit, json_out=args.json, markdown=args.markdown,
             fmt=args.format)
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
