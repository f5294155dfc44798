"""A standalone SVG flamegraph, in the style flamegraph.pl users know.

The layout is computed here (numpy over the stack trie of ``_trie.py``), so the file opens in
any SVG viewer; browsers also run its small inline script (``assets/svg.js``): click to zoom,
"Search" for a regular expression (matches turn magenta and their share is shown), "Reset
Zoom". Hovering a frame shows its function, location, value and share. Threads are merged
and one sample type is drawn (``sample_type``, default: the first); frames narrower than
``MIN_WIDTH_PX`` are left out, as flamegraph.pl does. For every view at once (threads, sample
types, search, top functions), write ``.html`` instead.
"""

from __future__ import annotations

import html
import zlib
from pathlib import Path
from typing import BinaryIO
from typing import List
from typing import Optional

import numpy as np

from hostprof.encoders import _trie
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType

NAME = "svg"
EXTENSIONS = (".svg",)

WIDTH = 1200
"""Image width in pixels."""
ROW_HEIGHT = 16
PAD = 10
FONT_SIZE = 12
CHAR_WIDTH = 0.59 * FONT_SIZE
"""Average glyph width of the font, for truncating labels."""
MIN_WIDTH_PX = 0.25
"""Frames narrower than this are not drawn."""
ASSETS = Path(__file__).resolve().parent / "assets"


def _colour(frame: Frame) -> str:
    """The fill of a frame, by kind with a per-function shade (same palette as the HTML)."""
    h = zlib.crc32(frame.function.encode()) / 0xFFFFFFFF
    s = zlib.crc32((frame.function + "#").encode()) / 0xFFFFFFFF
    if frame.kind == FrameKind.PYTHON:
        return f"hsl({26 + 22 * h:.1f},88%,{60 + 8 * s:.1f}%)"
    if frame.kind == FrameKind.NATIVE:
        return f"hsl({2 + 12 * h:.1f},72%,{63 + 8 * s:.1f}%)"
    if frame.kind == FrameKind.KERNEL:
        return f"hsl({198 + 18 * h:.1f},62%,{62 + 8 * s:.1f}%)"
    return f"hsl({262 + 16 * h:.1f},30%,{70 + 6 * s:.1f}%)"


def format_value(value: float, unit: str) -> str:
    """Formats a value with its unit: durations, bytes, or a plain count."""
    if unit == "nanoseconds":
        for scale, name in ((3600e9, "h"), (60e9, "min"), (1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:,.0f} ns"
    if unit == "bytes":
        for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:,.0f} B"
    suffix = "" if unit == "count" else f" {unit}"
    return f"{value:,.0f}{suffix}"


def _label(frame: Frame) -> str:
    if frame.kind == FrameKind.PYTHON and frame.file:
        return f"{frame.function} ({frame.file}:{frame.line})"
    if frame.kind == FrameKind.NATIVE and frame.file:
        return f"{frame.function} [{frame.file}]"
    if frame.kind == FrameKind.KERNEL:
        return f"{frame.function} [kernel]"
    return frame.function


def _fit(name: str, width: float) -> str:
    n = int((width - 6) // CHAR_WIDTH)
    if n < 2:
        return ""
    return name if len(name) <= n else name[: n - 1] + "…"


def render(
    profile: Profile,
    sample_type: Optional[SampleType | str] = None,
    title: Optional[str] = None,
) -> str:
    """Returns the SVG document for ``profile``."""
    column = 0 if sample_type is None else profile.sample_type_index(sample_type)
    st = profile.sample_types[column]
    trie = _trie.build(profile)
    self_v, total = trie.sums(column)
    grand = float(total[0]) if len(total) else 0.0
    usable = WIDTH - 2 * PAD

    # x of each node in value units: its parent's x plus the totals of its earlier siblings
    # (siblings are contiguous runs, so an exclusive cumulative sum per run).
    x = np.zeros(len(trie), dtype=np.float64)
    depth_of = np.zeros(len(trie), dtype=np.int64)
    for d in range(1, len(trie.depth_start) - 1):
        lo, hi = int(trie.depth_start[d]), int(trie.depth_start[d + 1])
        if hi <= lo:
            continue
        t = total[lo:hi]
        p = trie.parent[lo:hi]
        before = np.cumsum(t) - t
        first = np.concatenate(([True], p[1:] != p[:-1]))
        run = np.cumsum(first) - 1
        x[lo:hi] = x[p] + before - before[first][run]
        depth_of[lo:hi] = d

    scale = usable / grand if grand > 0 else 0.0
    keep = np.flatnonzero((total > 0) & (total * scale >= MIN_WIDTH_PX))
    max_depth = int(depth_of[keep].max()) if len(keep) else 0
    top = 40
    height = top + (max_depth + 1) * ROW_HEIGHT + 34
    base_y = top + max_depth * ROW_HEIGHT  # the root's row; deeper frames go up

    title = title or f"{st.type} flamegraph"
    parts: List[str] = [
        '<?xml version="1.0" standalone="no"?>\n',
        f'<svg version="1.1" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" data-pad="{PAD}" data-char-width="{CHAR_WIDTH:.2f}" '
        'onload="init(evt)">\n',
        "<style>\n"
        f"text {{ font-family: Verdana, 'DejaVu Sans', sans-serif; font-size: {FONT_SIZE}px;"
        " fill: #1d1f24; }\n"
        "g.f { cursor: pointer; } g.f:hover rect { stroke: #111; stroke-width: 0.8; }\n"
        "g.f rect { rx: 2px; ry: 2px; }\n"
        "g.f text { pointer-events: none; }\n"
        ".btn { cursor: pointer; fill: #1f4fd1; } .muted { fill: #6b7280; }\n"
        "</style>\n",
        '<script type="text/ecmascript"><![CDATA[\n',
        (ASSETS / "svg.js").read_text(encoding="utf-8").replace("]]>", "]]]]><![CDATA[>"),
        "]]></script>\n",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>\n',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="17">'
        f"{html.escape(title)}</text>\n",
        f'<text id="reset" class="btn" x="{PAD}" y="24" style="display:none">Reset Zoom</text>\n',
        f'<text id="search" class="btn" x="{WIDTH - PAD}" y="24" text-anchor="end">Search</text>\n',
        f'<text id="details" class="muted" x="{PAD}" y="{height - 12}"> </text>\n',
        f'<text id="matched" class="muted" x="{WIDTH - PAD}" y="{height - 12}" '
        'text-anchor="end"></text>\n',
        '<g id="frames">\n',
    ]
    frames = trie.frames
    for node in keep.tolist():
        d = int(depth_of[node])
        w = float(total[node]) * scale
        px = PAD + float(x[node]) * scale
        y = base_y - d * ROW_HEIGHT
        value = float(total[node])
        share = 100.0 * value / grand if grand else 0.0
        if node == 0:
            name, label, fill = "all", "all", "hsl(220,10%,78%)"
        else:
            frame = frames[int(trie.frame[node])]
            name, label, fill = frame.function, _label(frame), _colour(frame)
        tip = f"{label} — {format_value(value, st.unit)} ({share:.2f}%)"
        if node and self_v[node]:
            tip += f", self {format_value(float(self_v[node]), st.unit)}"
        # Frames too narrow for a label get no <text> (the script adds one when zoomed).
        text = _fit(name, w)
        label_el = f'<text x="{px + 3:.1f}" y="{y + ROW_HEIGHT - 4.5}">{html.escape(text)}</text>'
        parts.append(
            f'<g class="f" data-d="{d}" data-n="{html.escape(name)}">'
            f"<title>{html.escape(tip)}</title>"
            f'<rect x="{px:.2f}" y="{y}" width="{w:.2f}" height="{ROW_HEIGHT - 1}" fill="{fill}"/>'
            f"{label_el if text else ''}</g>\n"
        )
    parts.append("</g>\n</svg>\n")
    return "".join(parts)


def write(
    profile: Profile,
    out: BinaryIO,
    sample_type: Optional[SampleType | str] = None,
    title: Optional[str] = None,
) -> None:
    """Writes the SVG flamegraph of ``profile`` (one sample type, threads merged) to ``out``."""
    out.write(render(profile, sample_type, title).encode("utf-8"))
