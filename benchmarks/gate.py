"""The gate: hold a report to its budgets, optionally against a baseline report.

evaluate() returns one Check per (artifact, limit). Exit codes of `compressor gate`:
0 every limit holds, 1 one is exceeded, 2 a usage error (bad budgets, a broken report,
an incompatible baseline, a budget naming an artifact the report lacks).

What budgets that do not fit the report do: a selector without wildcards must name an
artifact of the report, and budgets that select no artifact at all are refused (both
exit 2); a wildcard selector that matches nothing is fine when another one applies.
A limit on something the report did not measure (min_accuracy without evaluation labels,
min_speedup without an fp32 twin, a latency limit at a batch size that was not run) is
exit 2 naming it; a regression limit for an artifact the baseline lacks is skipped (and
says so). An artifact that failed fails every budget that selects it (exit 1: the run's
result does not fit). An artifact the run itself skipped (its target does not offer that
mode, a remote device does not run that target) is not gated by a wildcard selector: its
checks are marked skipped and the outputs say why; an exact selector naming it is exit 2
(the budget can never be judged). A variant skipped because its fp32 export failed fails
like the failure it follows from.

Devices: a selector's DEVICE: prefix picks the rows of that device (none: this machine's);
a prefix without wildcards must name a device of the report, and an exact selector an
artifact measured there (exit 2). Latency limits on a row measured under qemu pass as
skipped: its outputs are real, its clock is the emulator's. A baseline row is the one of
the same name, so the same device.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from benchmarks.device_report import LOCAL, device_names, device_of, row_emulated
from benchmarks.metrics import normalized
from benchmarks.report import human_size
from benchmarks.stats import ratio_of_quantiles
from compressor.config.budgets import BudgetsSpec, Limits, is_exact, named_device, selects
from compressor.errors import RecipeError

# limit name -> (unit, direction): "max" limits fail above, "min" limits below.
UNITS = {"max_size": "bytes", "max_gzip_size": "bytes", "max_p50_ms": "ms", "max_p90_ms": "ms",
         "max_p99_ms": "ms", "min_accuracy": "%", "max_accuracy_drop": "pt", "min_cosine": "",
         "min_speedup": "x", "max_size_ratio": "x", "max_latency_regression": "%",
         "max_size_regression": "%", "max_accuracy_regression": "pt"}
RELATIVE = ("min_speedup", "max_size_ratio")
LATENCY_LIMITS = ("max_p50_ms", "max_p90_ms", "max_p99_ms", "min_speedup", "max_latency_regression")
EMULATED_SKIP = "skipped: emulated latency (qemu) is not gated"
RUN_SKIPPED = "skipped: the run skipped this artifact"


def unsigned_zero(text: str, plus: bool = False) -> str:
    """A value that rounds to zero ("-0", "+0.0", "-0.00 pt") without its sign: a sign on
    a zero claims a direction the figure does not have. With `plus` (a signed change)
    it reads "±0.0"."""
    body = text.lstrip("+-")
    digits = body.rstrip("%ptmsx ").replace(".", "")
    if digits and set(digits) == {"0"}:
        return ("±" if plus else "") + body
    return text


def number(x: float, spec: str = ".4g") -> str:
    """`x` formatted by `spec`, a rounded zero unsigned ("0"; "±0.0" for a "+" spec)."""
    return unsigned_zero(f"{x:{spec}}", plus="+" in spec)


@dataclass(frozen=True)
class LatencyChange:
    """What a latency-regression check computed, in percent against the baseline. The
    judged figure (estimate, low, high) is normalised by the reference workload when
    `normalised`; `raw` is the same statistic on the raw timings, shown beside it."""

    estimate: float
    low: float
    high: float
    raw: float
    normalised: bool
    how: str                                 # why the judged figure is raw or normalised
    reference_ms: tuple[float, float] | None  # the reference workload: baseline, this run
    statistic: str                           # "median" or "p25"...
    confidence: float


@dataclass(frozen=True)
class Check:
    artifact: str
    limit_name: str
    limit: float
    measured: float | None
    passed: bool
    detail: str = ""
    skipped: bool = False       # not judged (passes): the detail says why
    # The gate's own time on this check (JUnit's testcase time): what judging it took,
    # the bootstrap of a latency regression included, not the run's measurement time.
    seconds: float = 0.0
    latency: LatencyChange | None = None

    @property
    def unit(self) -> str:
        return UNITS.get(self.limit_name, "")

    @property
    def verdict(self) -> str:
        return "skip" if self.skipped else "ok" if self.passed else "FAIL"

    def fmt(self, x: float | None) -> str:
        if x is None:
            return "n/a"
        if self.unit == "bytes":
            return human_size(x)
        if self.unit == "%" and abs(x) < 1:
            return f"{number(x, '.2g')}%"  # 0.079%, not 0.07947%: below a point the noise is wider
        if self.unit in ("x", "", "%"):
            return f"{number(x)}{self.unit}"
        return f"{number(x)} {self.unit}".rstrip()

    def _past(self) -> tuple[str, str, str] | None:
        """(side, amount, unit) of a failed check past its limit, else None."""
        if self.passed or self.measured is None:
            return None
        side = "over" if self.limit_name.startswith("max") else "under"
        if self.unit in ("%", "pt"):
            return side, number(abs(self.measured - self.limit), ".3g"), "points" if self.unit == "%" else "pt"
        if self.limit:
            return side, f"{abs(self.measured - self.limit) / abs(self.limit) * 100:.1f}", "%"
        return None

    def margin(self) -> str:
        """How far a failed check is past its limit, for a table cell ("25.1 pt over")."""
        past = self._past()
        if past is None:
            return ""
        side, amount, unit = past
        return f"{amount}% {side}" if unit == "%" else f"{amount} pt {side}"

    def line(self) -> str:
        verdict = {"ok": "ok  "}.get(self.verdict, self.verdict)
        past = self._past()
        by = "" if past is None else f", {past[0]} by {past[1]}{'%' if past[2] == '%' else ' ' + past[2]}"
        detail = f" ({self.detail})" if self.detail else ""
        return (f"{verdict} {self.artifact}: {self.limit_name} {self.fmt(self.limit)}, "
                f"measured {self.fmt(self.measured)}{by}{detail}")

    def to_json(self) -> dict:
        return asdict(self) | {"verdict": self.verdict, "unit": self.unit, "line": self.line()}


def check_compatible(report: dict, baseline: dict) -> None:
    def identity(r: dict) -> tuple:
        return r["model"].get("source"), json.dumps(r["model"].get("inputs"), sort_keys=True)

    if identity(report) != identity(baseline):
        raise RecipeError(f"the baseline is for another model ({baseline['model'].get('source')} with inputs "
                          f"{baseline['model'].get('inputs')}), this report is for {report['model'].get('source')} "
                          f"with inputs {report['model'].get('inputs')}; use a baseline of the same model")


def evaluate(report: dict, spec: BudgetsSpec, baseline: dict | None = None) -> list[Check]:
    if spec.needs_baseline() and baseline is None:
        raise RecipeError("the budgets set regression limits (max_*_regression) but no baseline was given; "
                          "pass --baseline BASE.json or set budgets.baseline")
    if baseline is not None:
        check_compatible(report, baseline)
    rows = report["artifacts"]
    for sel in spec.limits:
        _check_names(report, sel)
        _check_not_only_skipped(report, sel)
    batch = spec.latency.batch or report["benchmark"]["batch_sizes"][0]
    base_rows = {r["name"]: r for r in (baseline or {}).get("artifacts", [])}
    checks: list[Check] = []
    for row in rows:
        for sel, limits in spec.limits.items():
            if _selects(sel, row):
                checks += _check_row(report, row, sel, limits, batch, spec, base_rows.get(row["name"]))
    if spec.recommended is not None:
        checks += _check_recommended(report, spec, checks)
    return checks


def not_gated(checks: list[Check]) -> dict[str, str]:
    """Artifacts the run skipped that budgets selected, with the run's reason."""
    return {c.artifact: c.detail.removeprefix(RUN_SKIPPED).removeprefix(": ")
            for c in checks if c.skipped and c.detail.startswith(RUN_SKIPPED)}


def _timed(make, *args) -> Check:
    start = time.perf_counter()
    check = make(*args)
    return replace(check, seconds=time.perf_counter() - start)


def _check_recommended(report: dict, spec: BudgetsSpec, checks: list[Check]) -> list[Check]:
    """The recommendation of each device the budgets name (default all): it exists (an
    artifact passed validation and the limits) and reaches `recommended`'s limits."""
    import fnmatch

    from benchmarks.recommend import recommend

    start = time.perf_counter()
    got = recommend(report, failed={c.artifact for c in checks if not c.passed})
    wanted = [d for d in device_names(report) if any(fnmatch.fnmatchcase(d, p) for p in spec.recommended.devices)]
    exact = [p for p in spec.recommended.devices if not any(c in p for c in "*?[")]
    for p in exact:
        if p not in device_names(report):
            raise RecipeError(f"budgets.recommended names device {p!r}, which the report does not have "
                              f"(it has: {', '.join(device_names(report)) or 'no devices'})")
    out = []
    for device in wanted:
        entry = got.get(device)
        name = f"recommended on {device}"
        for key, limit in spec.recommended.given().items():
            if entry is None or entry.get("artifact") is None:
                why = (entry or {}).get("why", "nothing was measured there")
                skip = entry is not None and "qemu" in why
                out.append(Check(name, key, limit, None, skip, f"skipped: {why}" if skip else why, skipped=skip))
            elif key == "min_speedup":
                if entry.get("speedup") is None:
                    raise RecipeError(f"budgets.recommended.min_speedup on {device}: the run measured no fp32 "
                                      "artifact there to compare with; add fp32 to the run or drop the limit")
                out.append(Check(name, key, limit, entry["speedup"], entry["speedup"] >= limit,
                                 f"{entry['artifact']} against {entry['fastest_fp32']}, batch {entry['batch']}"))
            else:
                out.append(Check(name, key, limit, entry["p50_ms"], entry["p50_ms"] <= limit,
                                 f"{entry['artifact']}, batch {entry['batch']}"))
    # The recommendation is worked out once for all its checks: each gets an equal share.
    share = (time.perf_counter() - start) / max(len(out), 1)
    out = [replace(c, seconds=share) for c in out]
    return out


def _selects(sel: str, row: dict) -> bool:
    return selects(sel, row["target"], row["label"], row["precision"], device_of(row))


def _check_names(report: dict, sel: str) -> None:
    """A device or artifact named without wildcards must be in the report (exit 2)."""
    rows = report["artifacts"]
    devices = device_names(report)
    device = named_device(sel)
    if device is not None and device not in devices:
        raise RecipeError(f"the budgets name device {device!r} (in {sel!r}), which the report does not have "
                          f"(it has: {', '.join(devices) or 'no devices'})")
    if is_exact(sel) and not any(_selects(sel, r) for r in rows):
        there = [r["name"] for r in rows if device_of(r) == (device or LOCAL)]
        names = sorted(there or [r["name"] for r in rows])
        where = f" on device {device!r}" if device and there else ""
        raise RecipeError(f"the budgets name artifact {sel!r}, which the report does not have{where} "
                          f"(it has{' there' if where else ''}: {', '.join(names) or 'no artifacts'})")


def _check_row(report: dict, row: dict, sel: str, limits: Limits, batch: int, spec: BudgetsSpec,
               base: dict | None) -> list[Check]:
    name = row["name"]
    given = limits.given()
    if _run_skipped(report, row):
        return [Check(name, k, v, None, True, f"{RUN_SKIPPED}: {row.get('error') or 'no reason recorded'}",
                      skipped=True) for k, v in given.items()]
    if row.get("status") != "ok" or not row.get("metrics"):
        why = row.get("error") or "no measurements"
        return [Check(name, k, v, None, False, f"artifact {row.get('status')}: {why}") for k, v in given.items()]
    emulated = row_emulated(report, row)
    # fp32 is the yardstick of its own target's relative limits: they are not checked on it.
    return [_timed(_check_limit, name, key, limit, row, batch, spec, base, emulated)
            for key, limit in given.items() if not (key in RELATIVE and row["label"] == "fp32")]


def _run_skipped(report: dict, row: dict) -> bool:
    """Whether the run chose to leave this artifact out. A variant skipped because the
    fp32 export of its target (on its device) failed does not count: the run could not
    make it, and that fails like the failure it follows from."""
    if row.get("status") != "skipped":
        return False
    return not any(r.get("status") == "failed" and r["target"] == row["target"] and r["label"] == "fp32"
                   and device_of(r) == device_of(row) for r in report["artifacts"])


def _check_not_only_skipped(report: dict, sel: str) -> None:
    """An exact selector whose every artifact the run skipped can never be judged (exit 2)."""
    chosen = [r for r in report["artifacts"] if _selects(sel, r)]
    if is_exact(sel) and chosen and all(_run_skipped(report, r) for r in chosen):
        why = "; ".join(f"{r['name']}: {r.get('error') or 'no reason recorded'}" for r in chosen)
        raise RecipeError(f"the budgets name artifact {sel!r}, which the run skipped ({why}); a budget on it can "
                          "never be judged: drop it, or select it with a wildcard")


def _check_limit(name: str, key: str, limit: float, row: dict, batch: int, spec: BudgetsSpec, base: dict | None,
                 emulated: bool) -> Check:
    if emulated and key in LATENCY_LIMITS:
        return Check(name, key, limit, None, True, EMULATED_SKIP, skipped=True)
    measured, detail = _measure(key, row, batch, spec, base)
    if measured is None and detail.startswith("skip"):
        return Check(name, key, limit, None, True, detail, skipped=True)
    if measured is None:
        raise RecipeError(f"budget {key} for {name}: {detail}")
    if isinstance(measured, LatencyChange):  # only a slowdown beyond the noise fails
        return Check(name, key, limit, measured.estimate, measured.low <= limit, detail, latency=measured)
    passed = measured <= limit if key.startswith("max") else measured >= limit
    return Check(name, key, limit, measured, passed, detail)


def _latency(row: dict, batch: int) -> dict | None:
    return next((l for l in row["metrics"]["latency"] if l["batch"] == batch), None)


def _measure(key: str, row: dict, batch: int, spec: BudgetsSpec, base: dict | None) -> tuple[object, str]:
    """(measured value, detail). The latency regression's value is a LatencyChange."""
    m = row["metrics"]
    if key == "max_size":
        return m["size_bytes"], ""
    if key == "max_gzip_size":
        return m["gzip_bytes"], ""
    if key in ("max_p50_ms", "max_p90_ms", "max_p99_ms"):
        lat = _latency(row, batch)
        if lat is None:
            return None, f"the report has no latency at batch {batch}"
        return lat[key.removeprefix("max_")], f"batch {batch}"
    if key == "min_accuracy":
        if m.get("accuracy") is None:
            return None, "the report has no accuracy (the recipe needs evaluation data with labels)"
        return 100 * m["accuracy"], ""
    if key == "max_accuracy_drop":
        if row.get("accuracy_delta") is None:
            return None, "the report has no accuracy against the reference model"
        return 0.0 - 100 * row["accuracy_delta"], "below the PyTorch fp32 model"  # never -0.0
    if key == "min_cosine":
        fid = row.get("fidelity") or {}
        return (fid.get("cosine_mean"), "") if fid.get("cosine_mean") is not None else (None, "no fidelity data")
    if key in RELATIVE:
        key_of = {"min_speedup": "speedup_vs_fp32", "max_size_ratio": "size_ratio_vs_fp32"}[key]
        if row.get(key_of) is None:
            return None, (f"the report has no {key_of} for it (no measured fp32 {row['target']} artifact{_on(row)} to "
                          "compare with); add fp32 to the run's precisions or drop this budget")
        return row[key_of], f"against fp32 {row['target']}{_on(row)}" + (f", batch {batch}" if key == "min_speedup"
                                                                          else "")
    if base is None or base.get("status") != "ok" or not base.get("metrics"):
        return None, "skipped: no baseline for this artifact"
    bm = base["metrics"]
    if key == "max_size_regression":
        return (m["size_bytes"] / bm["size_bytes"] - 1) * 100, f"baseline {human_size(bm['size_bytes'])}"
    if key == "max_accuracy_regression":
        if m.get("accuracy") is None or bm.get("accuracy") is None:
            return None, "the report or the baseline has no accuracy"
        return 100 * (bm["accuracy"] - m["accuracy"]), f"baseline {100 * bm['accuracy']:.2f}%"
    return _latency_regression(row, base, batch, spec)


def _on(row: dict) -> str:
    return "" if device_of(row) == LOCAL else f" on {device_of(row)}"


def _latency_regression(row: dict, base: dict, batch: int, spec: BudgetsSpec) -> tuple[object, str]:
    cur, old = _latency(row, batch), _latency(base, batch)
    if cur is None or old is None:
        return None, f"the report or the baseline has no latency at batch {batch}"
    a = raw_a = cur.get("samples_ms") or [cur["p50_ms"]]
    b = raw_b = old.get("samples_ms") or [old["p50_ms"]]
    pol = spec.latency
    ra, rb = row["metrics"].get("reference_p50_ms"), base["metrics"].get("reference_p50_ms")
    reference = (rb, ra) if ra and rb else None
    how, normalised = "raw: normalisation is off (latency.normalize: false)", False
    if pol.normalize:
        na = normalized(cur.get("samples_ms") or [], cur.get("ref_blocks_ms") or [], cur.get("block") or 0)
        nb = normalized(old.get("samples_ms") or [], old.get("ref_blocks_ms") or [], old.get("block") or 0)
        if na and nb:  # each block of runs over the reference workload timed right after it
            a, b, normalised = na, nb, True
            how = f"normalised per block by the reference workload ({rb:.3g} -> {ra:.3g} ms)"
        elif reference:
            a, normalised = [x * rb / ra for x in a], True
            how = f"normalised by the reference workload ({rb:.3g} -> {ra:.3g} ms)"
        else:
            how = "raw: a report lacks the reference workload timing"
    est = ratio_of_quantiles(a, b, pol.quantile, pol.confidence, pol.resamples)
    raw = float(np.percentile(raw_a, pol.quantile) / np.percentile(raw_b, pol.quantile))
    conf = int(round(pol.confidence * 100))
    stat = "median" if pol.quantile == 50 else f"p{pol.quantile:g}"
    change = LatencyChange(100 * (est.ratio - 1), 100 * (est.low - 1), 100 * (est.high - 1), 100 * (raw - 1),
                           normalised, how, reference, stat, pol.confidence)
    raw_note = f", raw change {number(change.raw, '+.1f')}%" if normalised else ""
    detail = (f"{how}{raw_note}; {stat} ratio, {conf}% interval {number(change.low, '+.1f')}% .. "
              f"{number(change.high, '+.1f')}%, {len(a)} vs {len(b)} runs")
    return change, detail
