"""The report as one self-contained HTML page: inline CSS, charts as base64 PNG data URLs, no
script, font, stylesheet or image fetched from anywhere. Every text is HTML-escaped."""

from __future__ import annotations

import base64
import re
from html import escape

from autoaccel.report.content import Bullets, Document, Figure, Para, Table

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       margin: 0 auto; max-width: 1180px; padding: 24px 28px 60px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 34px; border-bottom: 1px solid #d9dee8; padding-bottom: 4px; }
p.sub { color: #5b6475; margin-top: 0; }
p.strong { font-weight: 600; background: #eef4ff; border-left: 4px solid #1f4e8c;
           padding: 8px 12px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 12.5px; width: 100%; }
th, td { border: 1px solid #d9dee8; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f3f5f9; }
tr:nth-child(even) td { background: #fafbfd; }
figure { display: inline-block; margin: 8px 12px 8px 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #e3e7ef; }
figcaption { font-size: 12px; color: #5b6475; max-width: 600px; }
nav a { margin-right: 12px; font-size: 13px; }
"""


def render(doc: Document, images: dict[str, bytes]) -> str:
    """`images` maps a figure key to PNG bytes, embedded as data URLs."""
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{escape(s.title)}</a>' for s in doc.sections)
    body = [
        f"<h1>{escape(doc.title)}</h1>",
        f'<p class="sub">{escape(doc.subtitle)}</p>',
        f"<nav>{nav}</nav>",
    ]
    for section in doc.sections:
        body.append(f'<section id="{_anchor(section.title)}">')
        body.append(f"<h2>{escape(section.title)}</h2>")
        body += [_block(b, images) for b in section.blocks]
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # nothing may be fetched: a report opened offline or from an archive looks the same
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>{escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _block(block, images: dict[str, bytes]) -> str:
    if isinstance(block, Para):
        return (
            f'<p class="strong">{escape(block.text)}</p>'
            if block.strong
            else (f"<p>{escape(block.text)}</p>")
        )
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{escape(h)}</th>" for h in block.headers)
        rows = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        png = images.get(block.key)
        if png is None:
            return ""
        data = base64.b64encode(png).decode("ascii")
        alt = escape(block.caption)
        return (
            f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
            f"<figcaption>{alt}</figcaption></figure>"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
