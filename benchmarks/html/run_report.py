"""report.html of `compressor run` and `compressor bench`: the verdict first, the plots a
reader looks at, then every section report.md has, and where the time goes per operator."""

from __future__ import annotations

from benchmarks.device_report import device_emulated, device_names, device_of, has_devices, reference_device
from benchmarks.html.charts import Dot, Styles, hbars, scatter
from benchmarks.html.markdown import table, to_html
from benchmarks.html.page import figure, page
from benchmarks.html.svg import esc
from benchmarks.report import human_size, rows as table_rows

OP_ROWS = 12  # operator types shown per artifact; the rest are one bar, "other"

def styles_of(report: dict) -> Styles:
    arts = report["artifacts"]
    return Styles(targets=list(dict.fromkeys(r["target"] for r in arts)),
                  devices=[d for d in device_names(report) if not device_emulated(report, d)] or ["local"]
                  if has_devices(report) else ["local"])


def _lat(row: dict, batch: int) -> dict | None:
    return next((l for l in (row.get("metrics") or {}).get("latency", []) if l["batch"] == batch), None)


def _timed(report: dict, batch: int) -> list[dict]:
    """Rows with a latency at `batch`, on devices whose clock means something."""
    return [r for r in report["artifacts"] if r.get("status") == "ok" and _lat(r, batch)
            and not device_emulated(report, device_of(r))]


def _dot(row: dict, batch: int, x: float, styles: Styles, bars: bool) -> Dot:
    lat, m = _lat(row, batch), row["metrics"]
    acc = m.get("accuracy")
    hover = (f"{row['name']}: p50 {lat['p50_ms']:.4g} ms, p90 {lat['p90_ms']:.4g} ms, "
             f"{human_size(m.get('size_bytes'))}" + ("" if acc is None else f", accuracy {100 * acc:.2f}%"))
    return Dot(name=row["name"], label=row["label"], target=row["target"], device=device_of(row), x=x,
               y=100 * (acc or 0.0), x_lo=lat["p50_ms"] if bars else None, x_hi=lat["p90_ms"] if bars else None,
               samples=(lat.get("samples_ms") or None) if bars else None, hover=hover)


def plots(report: dict, styles: Styles) -> str:
    batch = report["benchmark"]["batch_sizes"][0]
    timed = _timed(report, batch)
    with_acc = [r for r in timed if r["metrics"].get("accuracy") is not None]
    figs = []
    legend = styles.legend('<span class="item">— p50 to p90</span><span class="item">- - Pareto front</span>')
    if len(with_acc) >= 2:
        dots = [_dot(r, batch, _lat(r, batch)["p50_ms"], styles, True) for r in with_acc]
        svg_html, cap = scatter(dots, styles, f"latency, ms (batch {batch}: p50 dot, bar to p90)", "accuracy (%)",
                                "Latency against accuracy", x_min_span=0.1 * max(d.x for d in dots),
                                y_min_span=1.0)
        figs.append(figure(svg_html, _front_rule("latency") + (f" {cap}." if cap else ""), legend))
        ref = reference_device(report)
        one = [r for r in with_acc if device_of(r) == ref]  # a file is the same file on every device
        sdots = [_dot(r, batch, r["metrics"]["size_bytes"] / 1e6, styles, False) for r in one]
        if len(sdots) >= 2:
            svg_html, cap = scatter(sdots, styles, "size on disk (MB)", "accuracy (%)", "Size against accuracy",
                                    x_min_span=0.1 * max(d.x for d in sdots), y_min_span=1.0)
            figs.append(figure(svg_html, _front_rule("size") + (f" {cap}." if cap else ""), styles.legend()))
    if timed:
        figs.append(figure(latency_bars(timed, batch, styles), "p50 latency of every artifact, the whisker to p90; "
                           "colour: target.", styles.legend()))
    return f'<div class="grid-plots">{"".join(figs)}</div>' if figs else ""


def _front_rule(kind: str) -> str:
    if kind == "latency":
        return ("Pareto front: the artifacts no other beats on both axes, a latency difference counting only beyond "
                "the timing noise (3% and a Mann-Whitney test on the timed runs, as report.md's notes); ringed "
                "points are on it.")
    return "Pareto front: the artifacts no other is both smaller and at least as accurate as; ringed points are on it."


def latency_bars(rows: list[dict], batch: int, styles: Styles) -> str:
    rows = sorted(rows, key=lambda r: _lat(r, batch)["p50_ms"])[:40]
    items = [(r["name"], _lat(r, batch)["p50_ms"]) for r in rows]
    whiskers = [(_lat(r, batch)["p50_ms"], _lat(r, batch)["p90_ms"]) for r in rows]
    hovers = [f"{r['name']}: p50 {_lat(r, batch)['p50_ms']:.4g} ms, p90 {_lat(r, batch)['p90_ms']:.4g} ms, "
              f"CV {_lat(r, batch)['cv']:.2f}" for r in rows]
    return hbars(items, f"p50 latency, ms (batch {batch})", "Latency of each artifact",
                 colours=[styles.colour(r["target"]) for r in rows], whiskers=whiskers, hovers=hovers,
                 value_fmt="{:.4g}")


def summary(report: dict) -> str:
    header, cells = table_rows(report)
    html_table = table(header, cells, right={2, 3, 4, 5, 6, 7, 8, 9})
    bad = [i for i, c in enumerate(cells) if c[-1].startswith(("FAILED", "⚠"))]
    for i in bad:  # failed rows in red
        html_table = html_table.replace(f"<tr><td>{esc(cells[i][0])}</td>", f'<tr class="bad"><td>{esc(cells[i][0])}</td>', 1)
    return html_table


def batches(report: dict) -> str:
    extra = report["benchmark"]["batch_sizes"][1:]
    if not extra:
        return ""
    header = ["artifact"] + [f"batch {b}: p50 ms" for b in extra] + [f"batch {b}: samples/s" for b in extra]
    cells = []
    for r in report["artifacts"]:
        if not r.get("metrics"):
            continue
        lats = [_lat(r, b) for b in extra]
        cells.append([r["name"]] + ["-" if l is None else f"{l['p50_ms']:.3f}" for l in lats]
                     + ["-" if l is None else f"{l['throughput']:.0f}" for l in lats])
    refused = [f"{r['name']}: batch {b}: {why}" for r in report["artifacts"]
               for b, why in ((r.get("metrics") or {}).get("batches_refused") or {}).items()]
    more = "".join(f"<li>{esc(x)}</li>" for x in refused)
    return (f'<p class="caption">Latency and throughput at the run\'s other batch sizes.</p>'
            + table(header, cells) + (f"<ul>{more}</ul>" if more else ""))


def devices(report: dict, styles: Styles) -> str:
    from benchmarks.device_report import devices_markdown

    if not has_devices(report):
        return ""
    body = to_html(devices_markdown(report))
    if len(device_names(report)) > 1:
        fig = figure(device_bars(report, styles), "p50 at the first batch size on each device, the whisker to "
                     "p90; emulated devices are left out: their clock is qemu's.", styles.legend())
        body = f'<div class="grid-plots">{fig}</div>' + body
    return body


def device_bars(report: dict, styles: Styles) -> str:
    batch = report["benchmark"]["batch_sizes"][0]
    items, colours, whiskers = [], [], []
    for r in _timed(report, batch):
        lat = _lat(r, batch)
        items.append((r["name"], lat["p50_ms"]))
        colours.append(styles.colour(r["target"]))
        whiskers.append((lat["p50_ms"], lat["p90_ms"]))
    return hbars(items, f"p50 latency, ms (batch {batch})", "Latency on each device", colours, whiskers,
                 value_fmt="{:.4g}")


def per_layer(report: dict) -> str:
    figs = []
    for title, values in (report.get("per_layer") or {}).items():
        if values:
            items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:30]
            figs.append(figure(hbars(items, title, title), f"{title}: the {len(items)} largest of {len(values)}."))
    return f'<div class="grid-plots">{"".join(figs)}</div>' if figs else ""


def operators(report: dict) -> str:
    """Where the time goes per operator type, for the artifacts the run profiled."""
    figs = []
    for name, p in (report.get("op_profile") or {}).items():
        if p.get("error"):
            figs.append(f'<figure><h3>{esc(name)}</h3><p class="caption">{esc(", ".join(p["why"]))}; not profiled: '
                        f'{esc(p["error"])}</p></figure>')
            continue
        ops = p["by_op_type"]
        rest = sum(o["ms"] for o in ops[OP_ROWS:])
        items = [(o["op"], o["ms"]) for o in ops[:OP_ROWS]] + ([("other", rest)] if rest > 0 else [])
        hovers = [f"{o['op']}: {o['ms']:.4g} ms per inference, {100 * o['share']:.1f}%, {o['count']} nodes"
                  for o in ops[:OP_ROWS]] + ([f"other: {rest:.4g} ms"] if rest > 0 else [])
        nodes = "".join(f"<li><code>{esc(n['node'])}</code> ({esc(n['op'])}) {n['ms']:.4g} ms</li>"
                        for n in p.get("top_nodes", [])[:5])
        cap = (f"{', '.join(p['why'])}: {p['runtime']}'s profiler, median of {p['runs']} runs at batch {p['batch']} "
               f"per node, {p['total_ms']:.4g} ms of operators per inference (profiled after the timed runs, in a "
               f"session of its own).")
        chart = hbars(items, "ms per inference (median per node, summed per op type)", f"Operators of {name}",
                      hovers=hovers, value_fmt="{:.3g}")
        slow = f'<p class="caption">Slowest nodes:</p><ul class="caption">{nodes}</ul>' if nodes else ""
        figs.append(f"<div>{figure(f'<h3>{esc(name)}</h3>' + chart, cap)}{slow}</div>")
    return f'<div class="grid-plots">{"".join(figs)}</div>' if figs else ""


def notes(report: dict) -> str:
    items = [(r["name"], f"{r['status']}: {r.get('error')}") for r in report["artifacts"] if r.get("status") != "ok"]
    items += [(r["name"], n) for r in report["artifacts"] for n in r.get("notes", [])]
    return "<ul>" + "".join(f"<li><b>{esc(a)}</b>: {esc(n)}</li>" for a, n in items) + "</ul>" if items else ""


def header(report: dict) -> str:
    from benchmarks.recommend import lines as recommended_lines

    b, cpu, ref = report["benchmark"], report["machine"]["cpu"], report["reference"]
    refline = ""
    if ref.get("accuracy") is not None:
        refline = (f" · reference accuracy {100 * ref['accuracy']:.2f}% on {ref.get('eval_samples')} samples")
    meta = (f"{report.get('created', '')} · {cpu['model']} ({', '.join(cpu.get('kernel_flags') or []) or 'no SIMD flags read'})"
            f" · device {b['device']} · {b['threads']} threads · batch {b['batch_sizes'][0]} · {b.get('runs', '?')} timed "
            f"runs after warm-up{refline}; speedup is against the same target's fp32 artifact")
    rec = "".join(f'<p class="verdict">{esc(t)}</p>' for t in recommended_lines(report))
    return f"<h1>compressor: {esc(report['name'])}</h1>\n<p class=\"meta\">{esc(meta)}</p>{rec}"


def render(report: dict) -> str:
    from benchmarks.fallback_report import fallback_markdown
    from benchmarks.qat_report import qat_markdown
    from benchmarks.report import pruning_markdown

    styles = styles_of(report)
    return page(f"compressor: {report['name']}", header(report), [
        ("plots", "Latency, size and accuracy", plots(report, styles)),
        ("summary", "Artifacts", summary(report)),
        ("batches", "Other batch sizes", batches(report)),
        ("devices", "Devices", devices(report, styles)),
        ("pruning", "Pruning", to_html(pruning_markdown(report))),
        ("qat", "Quantization-aware training", to_html(qat_markdown(report))),
        ("fallback", "Int8 fallback", to_html(fallback_markdown(report))),
        ("operators", "Where the time goes, per operator", operators(report)),
        ("per-layer", "Per layer", per_layer(report)),
        ("notes", "Notes", notes(report)),
    ])
