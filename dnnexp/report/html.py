"""report.html: the report's markdown (report.md, a sweep's or a search's) as one page to open
and share, its plots embedded (base64 PNG), no other file, no script, no network.

Only the markdown the report writes is read: headings, paragraphs, pipe tables with their
alignment row, numbered and bulleted lists, `code`, **bold** and ![plot](file.png) lines.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_ORDERED = re.compile(r"^\d+\. ")
_ITEM = re.compile(r"^(\d+\. |- )")


def _inline(text: str) -> str:
    """`code` and **bold** in escaped text."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    """A pipe table row's cells (`\\|` is a pipe inside a cell)."""
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _table(lines: list[str]) -> list[str]:
    head, align, *rows = lines
    right = [a.strip().endswith(":") for a in _cells(align)]
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(head)) + "</tr>"]
    for row in rows:
        tds = [
            f'<td class="num">{_inline(c)}</td>'
            if i < len(right) and right[i]
            else f"<td>{_inline(c)}</td>"
            for i, c in enumerate(_cells(row))
        ]
        out.append("<tr>" + "".join(tds) + "</tr>")
    return [*out, "</table>"]


def _image(alt: str, name: str, image_dir: Path) -> str:
    path = image_dir / name
    if not path.is_file():
        return f"<p>(missing plot {html.escape(name)})</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def to_html(markdown: str, image_dir: Path) -> str:
    """The whole page for `markdown`, its images read from `image_dir`."""
    lines = markdown.splitlines()
    title = next((ln[2:] for ln in lines if ln.startswith("# ")), "dnnexp report")
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body += _table(block)
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif (match := _IMAGE.match(line.strip())) is not None:
            body.append(_image(match.group(1), match.group(2), image_dir))
            i += 1
        elif _ORDERED.match(line) or line.startswith("- "):
            tag = "ol" if _ORDERED.match(line) else "ul"
            items = []
            while i < len(lines) and (_ORDERED.match(lines[i]) or lines[i].startswith("- ")):
                items.append(f"<li>{_inline(_ITEM.sub('', lines[i]))}</li>")
                i += 1
            body += [f"<{tag}>", *items, f"</{tag}>"]
        else:
            block = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("|", "#")):
                if _IMAGE.match(lines[i].strip()) or _ORDERED.match(lines[i]):
                    break
                block.append(lines[i])
                i += 1
            body.append(f"<p>{_inline(' '.join(block))}</p>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )
