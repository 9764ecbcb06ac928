"""The recommendation: per device, the fastest artifact that passed validation (and every
budget that selects it), with its speedup over the fastest fp32 artifact of any target
on that device. It is what a user ships to that device; the gate can require it to be
fast enough (`budgets: {recommended: {min_speedup: 2.5}}`).

The comparison is at the first batch size of the run (the one budgets and the summary
table use). A row counts when its status is ok and it was measured there; budgets count
when the run has them (a row failing any budget is not recommended). Rows whose latency
is not different from the winner's beyond the timing noise are named as ties, so a
reader does not take a 2% lead for a verdict. A device measured under qemu gets no
recommendation: its clock is the emulator's.
"""

from __future__ import annotations

from typing import Any, Iterable

from benchmarks.device_report import artifact_key, device_emulated, device_names, device_of

SECTION = "recommended"


def recommend(report: dict, failed: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """{device: entry}. `failed` names rows that broke a budget (not recommended)."""
    batch = report["benchmark"]["batch_sizes"][0]
    failed = set(failed)
    out: dict[str, dict[str, Any]] = {}
    for device in device_names(report):
        rows = [r for r in report["artifacts"] if device_of(r) == device]
        if not any(r.get("metrics") for r in rows):
            continue
        if device_emulated(report, device):
            out[device] = {"artifact": None, "batch": batch,
                           "why": "latency under qemu measures the emulator, not the board"}
            continue
        measured = [(r, _p50(r, batch)) for r in rows if r.get("status") == "ok" and r.get("metrics")]
        measured = [(r, p) for r, p in measured if p is not None]
        fp32 = [(r, p) for r, p in measured if r["precision"] == "fp32"]
        ok = [(r, p) for r, p in measured if r["name"] not in failed]
        if not ok:
            why = ("no artifact passed validation and the budgets" if measured else
                   "no artifact passed validation")
            out[device] = {"artifact": None, "batch": batch, "why": why}
            continue
        best, best_p50 = min(ok, key=lambda rp: rp[1])
        entry: dict[str, Any] = {"artifact": artifact_key(best), "name": best["name"], "batch": batch,
                                 "p50_ms": best_p50, "precision": best["precision"],
                                 "size_bytes": best["metrics"].get("size_bytes"),
                                 "cosine": (best.get("fidelity") or {}).get("cosine_mean"),
                                 "accuracy": best["metrics"].get("accuracy")}
        if fp32:
            base, base_p50 = min(fp32, key=lambda rp: rp[1])
            entry.update(fastest_fp32=artifact_key(base), fastest_fp32_p50_ms=base_p50, speedup=base_p50 / best_p50)
        entry["ties"] = [artifact_key(r) for r, p in ok if r is not best and not _slower(r, best, batch)]
        if failed & {r["name"] for r, _ in measured}:
            entry["over_budget"] = sorted(failed & {r["name"] for r, _ in measured})
        out[device] = entry
    return out


def line(device: str, e: dict[str, Any]) -> str:
    """`recommended on local: openvino/int8-static 8.40 ms (3.12x the fastest fp32,
    onnx/fp32 26.20 ms), cosine 0.9997`"""
    if e.get("artifact") is None:
        return f"recommended on {device}: none ({e['why']})"
    text = f"recommended on {device}: {e['artifact']} {_ms(e['p50_ms'])}"
    if e.get("speedup") is not None:
        if e["artifact"] == e["fastest_fp32"]:
            text += " (fp32 itself is the fastest that passed)"
        else:
            text += f" ({e['speedup']:.2f}x the fastest fp32, {e['fastest_fp32']} {_ms(e['fastest_fp32_p50_ms'])})"
    if e.get("cosine") is not None:
        text += f", cosine {e['cosine']:.4f}"
    if e.get("accuracy") is not None:
        text += f", accuracy {100 * e['accuracy']:.2f}%"
    if e.get("ties"):
        text += f"; within the timing noise of {', '.join(e['ties'][:3])}" + (" ..." if len(e["ties"]) > 3 else "")
    return text


def lines(report: dict) -> list[str]:
    return [line(d, e) for d, e in (report.get(SECTION) or {}).items()]


def markdown(report: dict) -> list[str]:
    """The recommendation under the summary table of report.md (empty without one)."""
    got = lines(report)
    if not got:
        return []
    b = (next(iter(report[SECTION].values())) or {}).get("batch")
    return ["", f"**Recommended** (fastest artifact that passed validation and the budgets, batch {b}; "
            "speedup over the fastest fp32 artifact of any target on that device):", ""] + [f"- {t}" for t in got]


def _ms(x: float) -> str:
    return f"{x:.3f} ms" if x < 1 else f"{x:.2f} ms"


def _p50(row: dict, batch: int) -> float | None:
    return next((l["p50_ms"] for l in row["metrics"].get("latency", []) if l["batch"] == batch), None)


def _slower(row: dict, best: dict, batch: int) -> bool:
    """Whether `row` is slower than `best` beyond the noise (its kept samples; without
    them, by more than 3% at the median)."""
    a = next((l.get("samples_ms") for l in row["metrics"]["latency"] if l["batch"] == batch), None)
    b = next((l.get("samples_ms") for l in best["metrics"]["latency"] if l["batch"] == batch), None)
    if a and b:
        from benchmarks.stats import significantly_slower

        return significantly_slower(a, b)
    return _p50(row, batch) > 1.03 * _p50(best, batch)


__all__ = ["SECTION", "recommend", "line", "lines", "markdown"]
