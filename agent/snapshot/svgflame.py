"""A static SVG flamegraph, small enough to embed inline in report.html (no script needed).

The interactive flamegraphs are the HTML encoder's; this one is a picture for the report, so
the report reads offline, in a mail client that strips scripts, or printed. Each process gets
its own root frame (``pid 123 name``); frames narrower than a pixel are dropped.
"""

from __future__ import annotations

import html
import zlib
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple

from hostprof.model import FrameKind
from hostprof.model import Profile

WIDTH = 1200
ROW = 16
MAX_DEPTH = 48
MAX_PROCESS_ROOTS = 6
CHAR_W = 6.6  # average glyph width of 11px monospace, for cutting labels to fit


class _Node:
    __slots__ = ("children", "kind", "name", "value")

    def __init__(self, name: str, kind: int) -> None:
        self.name = name
        self.kind = kind
        self.value = 0
        self.children: Dict[Tuple[str, int], _Node] = {}


def _colour(name: str, kind: int) -> str:
    # Stable colour per name within a hue band per frame kind.
    h = zlib.crc32(name.encode()) & 0xFFFF
    if kind == FrameKind.PYTHON:
        return f"hsl({40 + h % 20},{75 + h % 20}%,{55 + h % 12}%)"
    if kind == FrameKind.NATIVE:
        return f"hsl({5 + h % 20},{70 + h % 20}%,{58 + h % 10}%)"
    if kind == FrameKind.KERNEL:
        return f"hsl({190 + h % 30},{55 + h % 20}%,{60 + h % 10}%)"
    return f"hsl(0,0%,{70 + h % 12}%)"


def _label(function: str, file: str, line: int, kind: int) -> str:
    if kind == FrameKind.PYTHON and file:
        short = file.rsplit("/", 1)[-1]
        return f"{function} ({short}:{line})" if line else f"{function} ({short})"
    return function


def build_tree(
    profile: Profile, value_index: int = 0, process_names: Optional[Mapping[str, str]] = None
) -> _Node:
    """Folds a profile into a call tree: one subtree per process for up to
    :data:`MAX_PROCESS_ROOTS` processes; beyond that processes are merged, since 20 slivers
    side by side hide the code they all share (the pprof files keep the pid labels)."""
    root = _Node("all", FrameKind.SYNTHETIC)
    pids = {dict(profile.labels[i]).get("pid") for i in range(len(profile.labels))}
    split = len(pids - {None}) <= MAX_PROCESS_ROOTS
    for frames, labels, values in profile.items():
        v = values[value_index]
        if v <= 0:
            continue
        root.value += v
        node = root
        pid = dict(labels).get("pid")
        path: List[Tuple[str, int]] = []
        if pid is not None and split:
            pname = (process_names or {}).get(pid, "")
            path.append((f"pid {pid} {pname}".strip(), int(FrameKind.SYNTHETIC)))
        path.extend((_label(f.function, f.file, f.line, f.kind), int(f.kind)) for f in frames)
        for name, kind in path[:MAX_DEPTH]:
            child = node.children.get((name, kind))
            if child is None:
                child = node.children[(name, kind)] = _Node(name, kind)
            child.value += v
            node = child
    return root


def render(
    profile: Optional[Profile],
    title: str,
    value_index: int = 0,
    unit: str = "samples",
    process_names: Optional[Mapping[str, str]] = None,
) -> str:
    """Returns an ``<svg>`` element (a string) for ``profile``; a note when it is empty."""
    if profile is None or len(profile) == 0:
        return f'<p class="empty">{html.escape(title)}: no samples.</p>'
    root = build_tree(profile, value_index, process_names)
    if root.value <= 0:
        return f'<p class="empty">{html.escape(title)}: no samples.</p>'
    scale = WIDTH / root.value
    rects: List[str] = []
    depth_max = 0
    # (node, x, depth), iterative to avoid recursion limits on deep stacks.
    todo = [(root, 0.0, 0)]
    while todo:
        node, x, depth = todo.pop()
        w = node.value * scale
        if w < 1.0:
            continue
        depth_max = max(depth_max, depth)
        pct = 100.0 * node.value / root.value
        tip = html.escape(f"{node.name} — {node.value:,} {unit} ({pct:.1f}%)")
        text = (
            node.name
            if len(node.name) * CHAR_W < w - 4
            else node.name[: int((w - 4) / CHAR_W) - 1] + "…"
        )
        label = html.escape(text) if w > 3 * CHAR_W else ""
        rects.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{{y{depth}}}" width="{w - 0.5:.1f}" '
            f'height="{ROW - 1}" fill="{_colour(node.name, node.kind)}" rx="1"/>'
            + (f'<text x="{x + 3:.1f}" y="{{t{depth}}}">{label}</text>' if label else "")
            + "</g>"
        )
        cx = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            todo.append((child, cx, depth + 1))
            cx += child.value * scale
    height = (depth_max + 1) * ROW + 24
    body = "\n".join(rects)
    # Flame orientation: the root at the bottom.
    for d in range(depth_max + 1):
        y = height - (d + 1) * ROW
        body = body.replace(f"{{y{d}}}", str(y)).replace(f"{{t{d}}}", str(y + ROW - 4))
    head = html.escape(f"{title} — {root.value:,} {unit}")
    return (
        f'<svg class="flame" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" font-family="monospace" font-size="11">'
        f'<text x="0" y="14" font-size="13" font-weight="bold">{head}</text>\n{body}</svg>'
    )
