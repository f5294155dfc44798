"""A tiny document model rendered both as Markdown (summary.md) and HTML (report.html).

The two reports must say the same thing; building both from one list of blocks guarantees it.
Inline text may use ``code`` and **bold**, nothing else.
"""

from __future__ import annotations

import dataclasses
import html
import re
from typing import List
from typing import Sequence
from typing import Union

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


@dataclasses.dataclass
class Heading:
    level: int
    text: str


@dataclasses.dataclass
class Para:
    text: str


@dataclasses.dataclass
class Bullets:
    items: List[str]
    """Each item may hold sub-items as lines starting with two spaces and '- '."""


@dataclasses.dataclass
class Table:
    headers: List[str]
    rows: List[List[str]]


@dataclasses.dataclass
class Pre:
    text: str


@dataclasses.dataclass
class RawHtml:
    """HTML only (flamegraphs); left out of the Markdown."""

    html: str


Block = Union[Heading, Para, Bullets, Table, Pre, RawHtml]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """Renders blocks as GitHub-flavoured Markdown."""
    out: List[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(b.text + "\n")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items) + "\n")
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |"]
            lines.append("|" + "|".join("---" for _ in b.headers) + "|")
            lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows)
            out.append("\n".join(lines) + "\n")
        elif isinstance(b, Pre):
            out.append("```\n" + b.text.rstrip("\n") + "\n```\n")
    return "\n".join(out)


def inline_html(text: str) -> str:
    """Escapes text and turns `code` and **bold** into tags."""
    parts: List[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        parts.append(html.escape(text[pos : m.start()]))
        if m.group(1) is not None:
            parts.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            parts.append(f"<strong>{html.escape(m.group(2))}</strong>")
        pos = m.end()
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def _bullet_html(item: str) -> str:
    lines = item.split("\n")
    head = inline_html(lines[0])
    subs = [ln.strip()[2:] for ln in lines[1:] if ln.strip().startswith("- ")]
    if subs:
        head += "<ul>" + "".join(f"<li>{inline_html(s)}</li>" for s in subs) + "</ul>"
    return f"<li>{head}</li>"


def to_html_body(blocks: Sequence[Block]) -> str:
    """Renders blocks as an HTML fragment."""
    out: List[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            slug = re.sub(r"[^a-z0-9]+", "-", b.text.lower()).strip("-")
            out.append(f'<h{b.level} id="{slug}">{inline_html(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            out.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(_bullet_html(i) for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{inline_html(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>"
                for row in b.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Pre):
            out.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, RawHtml):
            out.append(b.html)
    return "\n".join(out)
