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
says so). An artifact that failed or was skipped fails every budget that selects it
(exit 1: the run's result does not fit).

Devices: a selector's DEVICE: prefix picks the rows of that device (none: this machine's);
a prefix without wildcards must name a device of the report, and an exact selector an
artifact measured there (exit 2). Latency limits on a row measured under qemu pass as
skipped: its outputs are real, its clock is the emulator's. A baseline row is the one of
the same name, so the same device.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

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


@dataclass(frozen=True)
class Check:
    artifact: str
    limit_name: str
    limit: float
    measured: float | None
    passed: bool
    detail: str = ""

    @property
    def unit(self) -> str:
        return UNITS.get(self.limit_name, "")

    def fmt(self, x: float | None) -> str:
        if x is None:
            return "n/a"
        if self.unit == "bytes":
            return human_size(x)
        if self.unit in ("x", "", "%"):
            return f"{x:.4g}{self.unit}"
        return f"{x:.4g} {self.unit}".rstrip()

    def line(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        by = ""
        side = "over" if self.limit_name.startswith("max") else "under"
        if not self.passed and self.measured is not None and self.unit in ("%", "pt"):
            by = f", {side} by {abs(self.measured - self.limit):.3g} {'points' if self.unit == '%' else 'pt'}"
        elif not self.passed and self.measured is not None and self.limit:
            by = f", {side} by {abs(self.measured - self.limit) / abs(self.limit) * 100:.1f}%"
        detail = f" ({self.detail})" if self.detail else ""
        return (f"{verdict} {self.artifact}: {self.limit_name} {self.fmt(self.limit)}, "
                f"measured {self.fmt(self.measured)}{by}{detail}")

    def to_json(self) -> dict:
        return asdict(self) | {"unit": self.unit, "line": self.line()}


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
    batch = spec.latency.batch or report["benchmark"]["batch_sizes"][0]
    base_rows = {r["name"]: r for r in (baseline or {}).get("artifacts", [])}
    checks: list[Check] = []
    for row in rows:
        for sel, limits in spec.limits.items():
            if _selects(sel, row):
                checks += _check_row(row, limits, batch, spec, base_rows.get(row["name"]),
                                     emulated=row_emulated(report, row))
    if spec.recommended is not None:
        checks += _check_recommended(report, spec, checks)
    return checks


def _check_recommended(report: dict, spec: BudgetsSpec, checks: list[Check]) -> list[Check]:
    """The recommendation of each device the budgets name (default all): it exists (an
    artifact passed validation and the limits) and reaches `recommended`'s limits."""
    import fnmatch

    from benchmarks.recommend import recommend

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
                out.append(Check(name, key, limit, None, skip, f"skipped: {why}" if skip else why))
            elif key == "min_speedup":
                if entry.get("speedup") is None:
                    raise RecipeError(f"budgets.recommended.min_speedup on {device}: the run measured no fp32 "
                                      "artifact there to compare with; add fp32 to the run or drop the limit")
                out.append(Check(name, key, limit, entry["speedup"], entry["speedup"] >= limit,
                                 f"{entry['artifact']} against {entry['fastest_fp32']}, batch {entry['batch']}"))
            else:
                out.append(Check(name, key, limit, entry["p50_ms"], entry["p50_ms"] <= limit,
                                 f"{entry['artifact']}, batch {entry['batch']}"))
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


def _check_row(row: dict, limits: Limits, batch: int, spec: BudgetsSpec, base: dict | None,
               emulated: bool = False) -> list[Check]:
    name = row["name"]
    given = limits.given()
    if row.get("status") != "ok" or not row.get("metrics"):
        why = row.get("error") or "no measurements"
        return [Check(name, k, v, None, False, f"artifact {row.get('status')}: {why}") for k, v in given.items()]
    out = []
    for key, limit in given.items():
        if key in RELATIVE and row["label"] == "fp32":
            continue  # the fp32 artifact is the yardstick of its own target
        if emulated and key in LATENCY_LIMITS:
            out.append(Check(name, key, limit, None, True, EMULATED_SKIP))
            continue
        measured, detail = _measure(key, row, batch, spec, base)
        if measured is None and detail.startswith("skip"):
            out.append(Check(name, key, limit, None, True, detail))
            continue
        if measured is None:
            raise RecipeError(f"budget {key} for {name}: {detail}")
        if isinstance(measured, tuple):  # (estimate, lower bound): only a slowdown beyond the noise fails
            measured, low = measured
            passed = low <= limit
        else:
            passed = measured <= limit if key.startswith("max") else measured >= limit
        out.append(Check(name, key, limit, measured, passed, detail))
    return out


def _latency(row: dict, batch: int) -> dict | None:
    return next((l for l in row["metrics"]["latency"] if l["batch"] == batch), None)


def _measure(key: str, row: dict, batch: int, spec: BudgetsSpec, base: dict | None) -> tuple[object, str]:
    """(measured value, detail). The latency regression's value is (estimate, lower bound)."""
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
        return -100 * row["accuracy_delta"], "below the PyTorch fp32 model"
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
    a, b = cur.get("samples_ms") or [cur["p50_ms"]], old.get("samples_ms") or [old["p50_ms"]]
    how = "raw"
    if spec.latency.normalize:
        na = normalized(cur.get("samples_ms") or [], cur.get("ref_blocks_ms") or [], cur.get("block") or 0)
        nb = normalized(old.get("samples_ms") or [], old.get("ref_blocks_ms") or [], old.get("block") or 0)
        ra, rb = row["metrics"].get("reference_p50_ms"), base["metrics"].get("reference_p50_ms")
        if na and nb:  # each block of runs over the reference workload timed right after it
            a, b, how = na, nb, f"normalised per block by the reference workload ({rb:.3g} -> {ra:.3g} ms)"
        elif ra and rb:
            a, how = [x * rb / ra for x in a], f"normalised by the reference workload ({rb:.3g} -> {ra:.3g} ms)"
        else:
            how = "raw: a report lacks the reference workload timing"
    est = ratio_of_quantiles(a, b, spec.latency.quantile, spec.latency.confidence, spec.latency.resamples)
    conf = int(round(spec.latency.confidence * 100))
    stat = "median" if spec.latency.quantile == 50 else f"p{spec.latency.quantile:g}"
    detail = (f"{how}; {stat} ratio, {conf}% interval {100 * (est.low - 1):+.1f}% .. {100 * (est.high - 1):+.1f}%, "
              f"{len(a)} vs {len(b)} runs")
    return (100 * (est.ratio - 1), 100 * (est.low - 1)), detail
