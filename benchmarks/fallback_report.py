"""The Markdown lines of variants lowered with a fallback budget: which lowering met it,
which layers stayed float and what each costs, and every attempt's count."""

from __future__ import annotations


def fallback_markdown(report: dict) -> list[str]:
    rows = [r for r in report["artifacts"] if r.get("fallback")]
    if not rows:
        return []
    lines = ["", "Int8 fallback (fewest float layers that meet the budget, checked on the target's runtime):", "",
             "| artifact | budget | lowering | float layers (ms each at batch 1) | cosine | attempts |",
             "|---|---|---|---|---:|---:|"]
    for r in rows:
        f = r["fallback"]
        b = f["budget"]
        budget = ", ".join(x for x in (f"cosine >= {b['min_cosine']:g}" if b.get("min_cosine") is not None else "",
                                       f"drop <= {b['max_accuracy_drop']:g} pt"
                                       if b.get("max_accuracy_drop") is not None else "") if x)
        layers = ", ".join(f"`{x['name']}`" + ("" if x.get("latency_ms") is None else f" ({x['latency_ms']:+.3f})")
                           for x in f["float_layers"]) or "none"
        cos = (r.get("fidelity") or {}).get("cosine_mean")
        lowering = f["lowering"] or f"refused: {f['refused']}"
        lines.append(f"| {r['name']} | {budget} | {lowering} | {layers} | "
                     f"{'-' if cos is None else f'{cos:.4f}'} | {len(f['attempts'])} |")
    modes = sorted({r["fallback"]["sensitivity_mode"] for r in rows})
    lines += ["", f"Sensitivity ranking: {'; '.join(modes)} (bars in report.html, values in report.json per_layer)."]
    return lines
