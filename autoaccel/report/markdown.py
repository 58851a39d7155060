"""The report as Markdown. Text is escaped so that no name in it (a study, a recipe value, a
failure reason) can inject HTML or break a table when the file is rendered."""

from __future__ import annotations

import html
import re

from autoaccel.report.content import Bullets, Document, Figure, Para, Table


def render(doc: Document, images: dict[str, str]) -> str:
    """`images` maps a figure key to the image's path relative to the Markdown file."""
    out = [f"# {text(doc.title)}", "", line(doc.subtitle), ""]
    for section in doc.sections:
        out += [f"## {text(section.title)}", ""]
        for block in section.blocks:
            out += _block(block, images) + [""]
    return "\n".join(out).rstrip() + "\n"


def _block(block, images: dict[str, str]) -> list[str]:
    if isinstance(block, Para):
        return [f"**{text(block.text)}**" if block.strong else line(block.text)]
    if isinstance(block, Bullets):
        return [f"- {line(item)}" for item in block.items]
    if isinstance(block, Table):
        rule = "|" + " --- |" * len(block.headers)
        return [_row(block.headers), rule, *map(_row, block.rows)]
    if isinstance(block, Figure):
        if block.key not in images:
            return []
        return [f"![{text(block.caption)}]({images[block.key]})", "", f"*{text(block.caption)}*"]
    raise TypeError(f"unknown block {type(block).__name__}")


_MARKUP = re.compile(r"([\\`*\[\]|])")


def text(value: str) -> str:
    """Plain text for Markdown: HTML escaped, the markup characters that could make a link,
    code, emphasis or a table cell backslashed, newlines folded."""
    escaped = html.escape(" ".join(str(value).split()), quote=False)
    return _MARKUP.sub(r"\\\1", escaped)


def line(value: str) -> str:
    """`text` for a line of its own: a leading `#`, `-` or `+` would start a heading or list."""
    escaped = text(value)
    return "\\" + escaped if escaped[:1] in ("#", "-", "+") else escaped


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(text(c) for c in cells) + " |"
