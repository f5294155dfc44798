"""A self-contained interactive HTML flamegraph: one file, no network access.

The page inlines the shared canvas renderer (``assets/flamegraph.js``, also served by the
store UI), the page script (``assets/standalone.js``) and their CSS. The profile is embedded
as JSON holding a trie of the distinct stacks plus one row per distinct (stack, label set), so
the file grows with the number of distinct stacks, never with the number of samples. Every
sample type is embedded; the page has a picker when there are several, and a thread picker
(merged, one root per thread, or one thread) when the profile has ``thread_id`` /
``thread_name`` labels.

The trie (``_trie.py``) keeps parent ids non-decreasing, so they delta-encode to mostly 0s and
1s, and every node's children contiguous and sorted by name.
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

from hostprof.encoders import _trie
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
    trie = _trie.build(profile)
    files: List[str] = []
    file_ids: Dict[str, int] = {}
    frame_file = []
    for f in trie.frames:
        fid = file_ids.get(f.file)
        if fid is None:
            fid = file_ids[f.file] = len(files)
            files.append(f.file)
        frame_file.append(fid)
    parent = trie.parent[1:]
    parent_delta = np.diff(parent, prepend=0) if len(parent) else parent
    used_lids, row_labels = np.unique(trie.row_labels, return_inverse=True)
    vals = trie.values
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
        "stacks": trie.n_stacks,
        "frames": {
            "names": [f.function for f in trie.frames],
            "file": frame_file,
            "files": files,
            "line": [f.line for f in trie.frames],
            "kind": [int(f.kind) for f in trie.frames],
        },
        "nodes": {
            "parentDelta": parent_delta.tolist(),
            "frame": trie.frame[1:].tolist(),
        },
        "rows": {
            "node": trie.row_node.tolist(),
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
