"""report.md's own sections as HTML: the Markdown lines the report writers produce
(tables, lists, paragraphs, **bold** and `code`) turned into elements, so that the
page says exactly what report.md says without a second copy of each section's wording."""

from __future__ import annotations

import re

from benchmarks.html.svg import esc

NUMERIC = re.compile(r"^[-+−]?[\d.,]+(\s?(%|x|ms|KB|MB|GB|B|pt))?$|^-$")


def inline(text: str) -> str:
    out = esc(text.replace("\\|", "|"))
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A table whose numeric columns align right and never wrap (class num)."""
    right = right if right is not None else {i for i in range(len(header))
                                             if rows and all(NUMERIC.match(r[i].strip()) for r in rows if i < len(r))}
    head = "".join(f'<th{" class=num" if i in right else ""}>{inline(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in right else ""}>{inline(c)}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def to_html(lines: list[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            header, spec = _cells(block[0]), _cells(block[1]) if len(block) > 1 else []
            right = {j for j, s in enumerate(spec) if s.endswith(":")}
            out.append(table(header, [_cells(b) for b in block[2:]], right))
            continue
        if line.lstrip().startswith("- "):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                nested = lines[i].startswith("  ")
                text = inline(lines[i].lstrip()[2:])
                if nested and items:
                    items[-1] += f"<ul><li>{text}</li></ul>"
                else:
                    items.append(text)
                i += 1
            out.append("<ul>" + "".join(f"<li>{t}</li>" for t in items).replace("</ul><ul>", "") + "</ul>")
            continue
        if line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(out)
