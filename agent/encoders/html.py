"""A self-contained interactive HTML flamegraph: one file, no network access.

The page inlines the shared canvas renderer (``assets/flamegraph.js``, also served by the
store UI), the page script (``assets/standalone.js``) and their CSS. The profile is embedded
as JSON holding a trie of the distinct stacks plus one row per distinct (stack, label set), so
the file grows with the number of distinct stacks, never with the number of samples. Every
sample type is embedded; the page has a picker when there are several, and a thread picker
(merged, one root per thread, or one thread) when the profile has ``thread_id`` /
``thread_name`` labels.

The trie is built with numpy one depth at a time: at each depth the (parent node, frame) keys
of all stacks still that deep are uniqued together, so there is no Python loop over stacks or
samples. Frames are ranked by name before keying, which makes every node's children a
contiguous run sorted by name (the flame graph's conventional sibling order) and keeps parent
ids non-decreasing, so they delta-encode to mostly 0s and 1s.
"""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import Dict
from typing import List
from typing import Optional

import numpy as np

from hostprof.model import Profile
from hostprof.model import SampleType

NAME = "html"
EXTENSIONS = (".html", ".htm")

ASSETS = Path(__file__).resolve().parent / "assets"
"""The renderer's JS/CSS and the page template, inlined at write time."""

FORMAT_VERSION = 1


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def build_document(
    profile: Profile,
    sample_type: Optional[SampleType | str] = None,
    title: Optional[str] = None,
) -> Dict[str, Any]:
    """Builds the JSON document the page embeds (see ``assets/standalone.js`` for its shape).

    Args:
        profile: the profile to show.
        sample_type: the sample type selected when the page opens (default: the first).
        title: the page title (default: derived from the sample types and time range).
    """
    default = 0 if sample_type is None else profile.sample_type_index(sample_type)
    sids, lids, vals = profile.arrays()
    keep = (vals != 0).any(axis=1)
    sids, lids, vals = sids[keep], lids[keep], vals[keep]

    flat, offsets = profile.stacks.export()
    flat = np.asarray(flat, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    used, row_stack = np.unique(sids, return_inverse=True)
    starts = offsets[used]
    lens = offsets[used + 1] - starts

    # Rank frames by (function, file, line, kind): siblings then come out sorted by name.
    frames = list(profile.frames)
    order = sorted(range(len(frames)), key=lambda i: _frame_key(frames[i]))
    rank = np.empty(max(len(frames), 1), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(frames), dtype=np.int64)
    n_ranks = max(len(frames), 1)

    node_of = np.zeros(len(used), dtype=np.int64)  # 0 = the root, for empty stacks
    parents: List[np.ndarray] = []
    node_ranks: List[np.ndarray] = []
    next_id = 1
    depth = 0
    max_len = int(lens.max()) if len(lens) else 0
    while depth < max_len:
        active = np.flatnonzero(lens > depth)
        keys = node_of[active] * n_ranks + rank[flat[starts[active] + depth]]
        uniq, inverse = np.unique(keys, return_inverse=True)
        parents.append(uniq // n_ranks)
        node_ranks.append(uniq % n_ranks)
        node_of[active] = next_id + inverse.reshape(-1)
        next_id += len(uniq)
        depth += 1

    parent = np.concatenate(parents) if parents else np.empty(0, dtype=np.int64)
    node_rank = np.concatenate(node_ranks) if node_ranks else np.empty(0, dtype=np.int64)
    # Keep only frames the trie uses, renumbered in rank (name) order.
    used_ranks, node_frame = np.unique(node_rank, return_inverse=True)
    by_rank = [frames[i] for i in order]
    out_frames = [by_rank[r] for r in used_ranks.tolist()]
    files: List[str] = []
    file_ids: Dict[str, int] = {}
    frame_file = []
    for f in out_frames:
        fid = file_ids.get(f.file)
        if fid is None:
            fid = file_ids[f.file] = len(files)
            files.append(f.file)
        frame_file.append(fid)

    parent_delta = np.diff(parent, prepend=0) if len(parent) else parent
    used_lids, row_labels = np.unique(lids, return_inverse=True)
    totals = vals.sum(axis=0) if len(vals) else np.zeros(len(profile.sample_types), np.int64)
    start_ns, end_ns = profile.time_range

    return {
        "v": FORMAT_VERSION,
        "title": title or _default_title(profile, default),
        "generator": _generator(),
        "created": int(time.time()),
        "sampleTypes": [
            {"type": st.type, "unit": st.unit, "total": int(totals[i])}
            for i, st in enumerate(profile.sample_types)
        ],
        "defaultType": default,
        "period": profile.period,
        "periodType": str(profile.period_type) if profile.period_type else None,
        "timeRange": [start_ns, end_ns],
        "stacks": len(used),
        "frames": {
            "names": [f.function for f in out_frames],
            "file": frame_file,
            "files": files,
            "line": [f.line for f in out_frames],
            "kind": [int(f.kind) for f in out_frames],
        },
        "nodes": {
            "parentDelta": parent_delta.tolist(),
            "frame": node_frame.reshape(-1).tolist(),
        },
        "rows": {
            "node": node_of[row_stack.reshape(-1)].tolist(),
            "labels": row_labels.reshape(-1).tolist(),
            "values": [vals[:, i].tolist() for i in range(vals.shape[1])],
        },
        "labelSets": [dict(profile.labels[i]) for i in used_lids.tolist()],
    }


def render(
    profile: Profile,
    sample_type: Optional[SampleType | str] = None,
    title: Optional[str] = None,
) -> str:
    """Returns the complete HTML page for ``profile``."""
    document = build_document(profile, sample_type, title)
    # Inside <script>, "</" could close the element early; "<\/" is the same JSON string.
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    data = data.replace("<!--", "<\\u0021--")
    page = _asset("template.html")
    replacements = {
        "/*@INLINE flamegraph.css@*/": lambda: _asset("flamegraph.css"),
        "/*@INLINE standalone.css@*/": lambda: _asset("standalone.css"),
        "//@INLINE flamegraph.js@": lambda: _asset("flamegraph.js"),
        "//@INLINE standalone.js@": lambda: _asset("standalone.js"),
        "{{TITLE}}": lambda: html.escape(document["title"]),
        "{{GENERATOR}}": lambda: html.escape(document["generator"]),
        "{{DATA}}": lambda: data,
    }
    # One pass: substituted text (the title, the data) is never scanned for markers again.
    pattern = re.compile("|".join(re.escape(m) for m in replacements))
    return pattern.sub(lambda m: replacements[m.group(0)](), page)


def write(
    profile: Profile,
    out: BinaryIO,
    sample_type: Optional[SampleType | str] = None,
    title: Optional[str] = None,
) -> None:
    """Writes the self-contained HTML flamegraph of ``profile`` to ``out``.

    Args:
        profile: the profile to write.
        out: a binary stream.
        sample_type: the sample type shown first (all types are embedded).
        title: the page title.
    """
    out.write(render(profile, sample_type, title).encode("utf-8"))


def _frame_key(frame: Any) -> tuple:
    return (frame.function, frame.file, frame.line, int(frame.kind))


def _default_title(profile: Profile, default: int) -> str:
    """E.g. ``cpu profile · pid 1234 · 2026-01-02 03:04:05 UTC``, from what every row shares."""
    parts = [f"{profile.sample_types[default].type} profile"]
    used = set(profile.arrays()[1].tolist())
    for name, shown in (("service_name", "{}"), ("comm", "{}"), ("pid", "pid {}")):
        values = {dict(profile.labels[i]).get(name) for i in used}
        if len(values) == 1 and None not in values:
            parts.append(shown.format(values.pop()))
    start_ns, _end = profile.time_range
    if start_ns:
        parts.append(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start_ns / 1e9)))
    return " · ".join(parts)


def _generator() -> str:
    try:
        from importlib.metadata import version

        return f"hostprof {version('hostprof')}"
    except Exception:  # not installed (running from a source tree)
        return "hostprof"
