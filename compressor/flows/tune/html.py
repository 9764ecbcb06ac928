"""tune.html: the verdict, the trials' front (latency against size), the study's history
(each trial's objective and the best so far) and which parameters mattered (Optuna's
parameter importance), then the trials table. Inline SVG from benchmarks.html, so the
page is one file that opens offline (plotly, which Optuna's own plots need, is not
installed here and would add 3 MB of script to every page)."""

from __future__ import annotations

from benchmarks.html.charts import Dot, Styles, hbars, history, scatter
from benchmarks.html.markdown import table
from benchmarks.html.page import figure, page
from benchmarks.html.svg import esc

KINDS = {"within budget": "#0072b2", "over budget": "#d55e00", "plain static int8": "#009e73"}


def _kind(r: dict, baseline) -> str:
    if r["number"] == baseline:
        return "plain static int8"
    return "within budget" if r["feasible"] else "over budget"


def front_plot(report: dict) -> str:
    done = [r for r in report["trials"] if r.get("latency") is not None and r.get("size_bytes")]
    if len(done) < 2:
        return ""
    styles = Styles(targets=list(KINDS), devices=["local"], fixed=KINDS)
    dots = [Dot(name=f"trial {r['number']}", label=str(r["number"]), target=_kind(r, report["baseline"]),
                device="local", x=r["latency"], y=r["size_bytes"] / 1e3,
                hover=f"trial {r['number']}: {r.get('describe') or ''}; latency {r['latency']:.4g} x reference, "
                      f"{r['size_bytes'] / 1e3:.1f} KB")
            for r in done]
    svg_html, cap = scatter(dots, styles, "p50 latency / reference workload p50 (same process)", "size on disk, KB",
                            "Trials: latency against size", x_min_span=0.1 * max(d.x for d in dots),
                            y_min_span=1.0, lower_y_better=True)
    return figure(svg_html, "Numbers: trial. Ringed: the study's front (no trial both faster beyond the noise "
                  "and smaller). " + cap, styles.legend())


def history_plot(report: dict) -> str:
    obj = (report.get("objectives") or ["latency"])[0]
    key = {"latency": "latency", "size": "size_bytes"}.get(obj, obj)
    done = [r for r in report["trials"] if r.get(key) is not None]
    if not done:
        return ""
    points, best, best_line = [], None, []
    for r in sorted(done, key=lambda r: r["number"]):
        kind = _kind(r, report["baseline"])
        v = r[key] / 1e3 if key == "size_bytes" else r[key]
        points.append((r["number"], v, kind, f"trial {r['number']} ({kind}): {v:.4g}; {r.get('describe') or ''}"))
        if r["feasible"] and (best is None or v < best):
            best = v
            best_line.append((r["number"], v))
    unit = "size, KB" if key == "size_bytes" else "p50 latency / reference p50"
    svg_html = history(points, best_line, "trial", unit, "Study history", 0.05 * max(p[1] for p in points), KINDS)
    legend = ('<div class="legend">' + "".join(f'<span class="item"><span style="color:{c}">●</span>{esc(k)}</span>'
                                               for k, c in KINDS.items())
              + '<span class="item">— best within budget so far</span></div>')
    return figure(svg_html, f"The first objective ({obj}) of every measured trial in order; the line is the best "
                  "trial within budget so far.", legend)


def importance_plot(report: dict) -> str:
    imp = report.get("importance") or {}
    if imp.get("error"):
        return f'<figure><p class="caption">Parameter importance: {esc(imp["error"])}</p></figure>'
    values = imp.get("values") or {}
    if not values:
        return ""
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
    return figure(hbars(items, "importance (share of the objective's variance)", "Parameter importance",
                        value_fmt="{:.2f}"),
                  f"Optuna's {imp.get('evaluator', 'fANOVA')} importance of each parameter for {imp.get('objective')} "
                  f"over {imp.get('trials')} completed trials.")


def to_html(report: dict, header_cells: list[str], cells: list[list[str]]) -> str:
    c = report["counts"]
    meta = (f"{report['created']} · study {report['study']} ({report['engine']}, {report['sampler']}) · "
            f"{report['machine']['cpu']['model']} · objectives {', '.join(report['objectives'])} · {c['trials']} trials, "
            f"{c['feasible']} within budget, {c['failed']} failed")
    head = (f"<h1>compressor tune: {esc(report['name'])} on {esc(report['target'])}</h1>"
            f'<p class="meta">{esc(meta)}</p><p class="verdict">{esc(report["verdict"])}</p>')
    plots = "".join(x for x in (front_plot(report), history_plot(report), importance_plot(report)) if x)
    errors = "".join(f"<li>{r['number']}: {esc(r['error'])}</li>" for r in report["trials"] if r.get("error"))
    return page(f"compressor tune: {report['name']}", head, [
        ("plots", "The study", f'<div class="grid-plots">{plots}</div>' if plots else ""),
        ("trials", "Trials", table(header_cells, cells) + (f"<p>Failed trials:</p><ul>{errors}</ul>" if errors else "")),
    ])
