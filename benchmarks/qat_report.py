"""The Markdown lines of a run with a qat step: accuracy per target, PTQ twin next to
QAT, which layers stayed float and why, and the fine-tuning time per quantizer family."""

from __future__ import annotations


def qat_markdown(report: dict) -> list[str]:
    q = report.get("qat")
    if not q:
        return []
    acc = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    grid = f"{q['weight_bits']}-bit {'per-channel' if q['per_channel'] else 'per-tensor'} weights"
    lines = ["", f"QAT ({grid}); float accuracy {acc(q['float_accuracy'])}. {q['note']}.", "",
             "| target | family | PTQ (same quantizer) acc | QAT acc | QAT p50 ms |", "|---|---|---:|---:|---:|"]
    for t, v in q["by_target"].items():
        ptq, qat = v.get("int8-ptq-same", {}), v.get("int8-qat", {})
        p50 = qat.get("p50_ms")
        lines.append(f"| {t} | {q['target_family'].get(t, '-')} | {acc(ptq.get('accuracy'))} | "
                     f"{acc(qat.get('accuracy'))} | {'-' if p50 is None else f'{p50:.3f}'} |")
    for fam, f in q["families"].items():
        ft = f["finetune"]
        resumed = f" (resumed after epoch {f['resumed_from_epoch']})" if f["resumed_from_epoch"] else ""
        lines.append(f"- {fam}: {len(ft['epochs'])} epochs in {ft['train_wall_s']:.1f} s{resumed}")
    if q["kept_float"]:
        lines += ["", "Kept in float:"] + [f"- `{n}`: {why}" for n, why in q["kept_float"].items()]
    return lines
