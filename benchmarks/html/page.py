"""The page around the sections: one file, no scripts, no network, a layout that uses
the screen (plots two or three abreast on a wide one, stacked on a narrow one; tables
scroll sideways instead of wrapping numbers)."""

from __future__ import annotations

from benchmarks.html.svg import esc

CSS = """
:root { --fg: #1f2328; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2rem 2rem; color: var(--fg);
       max-width: 1800px; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: .95rem; margin: .2rem 0 .3rem; }
nav { font-size: .85rem; margin: .4rem 0 1rem; }
nav a { margin-right: .9rem; color: #0969da; text-decoration: none; }
.meta, .caption { color: var(--muted); font-size: .85rem; }
.verdict { font-size: 1.05rem; background: #f6f8fa; border-left: 4px solid #0072b2; padding: .5rem .8rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .86rem; }
th, td { padding: .28rem .6rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td:first-child { white-space: nowrap; }
tr.bad td { color: #b42318; }
.grid-plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 1rem 1.6rem; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .82rem; margin-top: .2rem; }
svg.chart { width: 100%; height: auto; display: block; font-family: inherit; }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
svg .frame { fill: none; stroke: #8c959f; stroke-width: 1; }
svg .tick { font-size: 10px; fill: var(--muted); }
svg .axis-title { font-size: 11px; fill: var(--fg); }
svg .point-label, svg .bar-label { font-size: 11px; fill: var(--fg); }
svg .value { font-size: 10px; fill: var(--muted); }
svg .front { fill: none; stroke: #1f2328; stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .ring { fill: none; stroke: #1f2328; stroke-width: 1.3; }
svg .range { stroke-width: 2; opacity: .55; }
svg .whisker { stroke: #1f2328; stroke-width: 1.2; fill: none; }
svg .best-line { fill: none; stroke: #0072b2; stroke-width: 2; }
.legend { display: flex; flex-wrap: wrap; gap: .3rem 1rem; font-size: .82rem; margin: .3rem 0 0 64px; }
.legend .item { display: inline-flex; align-items: center; gap: .3rem; }
svg.key { width: 14px; height: 14px; }
code { font-size: .85em; background: #f6f8fa; padding: 0 .2em; }
@media (max-width: 700px) { body { margin: .8rem; } .grid-plots { grid-template-columns: 1fr; } }
"""


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>'


def figure(svg_html: str, caption: str = "", legend: str = "") -> str:
    if not svg_html:
        return ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg_html}{legend}{cap}</figure>"


def page(title: str, header: str, sections: list[tuple[str, str, str]]) -> str:
    """sections: (id, title, html) in order; empty ones are left out, the rest listed in the nav."""
    shown = [(sid, t, body) for sid, t, body in sections if body]
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in shown)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{header}\n<nav>{nav}</nav>\n"
            + "\n".join(section(*s) for s in shown) + "\n</body></html>\n")
