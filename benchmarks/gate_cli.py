"""`compressor gate` and the gate at the end of `compressor run`: evaluate, write what
CI reads, print one line per violated budget."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import ci_outputs
from benchmarks.gate import Check, evaluate
from benchmarks.outpaths import check_outputs
from benchmarks.report_read import ReportError, load_report
from compressor.config.budgets import BudgetsSpec
from compressor.errors import BudgetExceeded, RecipeError
from compressor.fsutil import write_json, write_text


def run_gate(report: dict, spec: BudgetsSpec, baseline_path: Path | None = None, *, junit: Path | None = None,
             json_out: Path | None = None, markdown: Path | None = None, stream=None) -> list[Check]:
    """Evaluate and write the outputs; raise BudgetExceeded (exit 1) on a violation."""
    stream = stream or sys.stdout
    baseline_path = baseline_path or spec.baseline
    baseline = load_report(baseline_path, "baseline") if baseline_path else None
    checks = evaluate(report, spec, baseline)
    if not checks:
        raise RecipeError("the budgets select no artifact of this report; check the selectors "
                          f"({', '.join(spec.limits) or 'recommended.devices: ' + ', '.join(spec.recommended.devices)})")
    if junit:
        write_text(junit, ci_outputs.junit_xml(checks, f"compressor.gate.{report['name']}"))
    if json_out:
        write_json(json_out, ci_outputs.json_summary(checks, report, baseline))
    comment = ci_outputs.comment_markdown(report, baseline, checks)
    if markdown:
        write_text(markdown, comment)
    ci_outputs.append_step_summary(comment)
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print(c.line(), file=stream)
    print(f"gate: {len(checks) - len(failed)} of {len(checks)} budgets hold", file=stream)
    if failed:
        raise BudgetExceeded(f"{len(failed)} budget{'s' if len(failed) > 1 else ''} exceeded; first: "
                             f"{failed[0].line().removeprefix('FAIL ')}")
    return checks


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
    run_gate(report, spec, args.baseline, junit=args.junit, json_out=args.json, markdown=args.markdown)
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
