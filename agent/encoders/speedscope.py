"""speedscope JSON (https://www.speedscope.app/file-format-schema.json): one sampled profile
per thread (label ``thread_name``/``thread_id``), sharing one frame table."""

from __future__ import annotations

import json
from typing import BinaryIO
from typing import Dict
from typing import List
from typing import Optional

from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType

NAME = "speedscope"
EXTENSIONS = (".speedscope.json", ".speedscope")
SCHEMA = "https://www.speedscope.app/file-format-schema.json"

_UNITS = {
    "nanoseconds": "nanoseconds",
    "microseconds": "microseconds",
    "milliseconds": "milliseconds",
    "seconds": "seconds",
    "bytes": "bytes",
}


def to_document(
    profile: Profile, sample_type: Optional[SampleType | str] = None, name: str = "hostprof"
) -> dict:
    """Builds the speedscope document as a dict."""
    col = 0 if sample_type is None else profile.sample_type_index(sample_type)
    unit = _UNITS.get(profile.sample_types[col].unit, "none")
    sids, lids, vals = profile.arrays()
    frames: List[dict] = []
    frame_index: Dict[int, int] = {}
    by_thread: Dict[str, Dict[str, list]] = {}
    for sid, lid, row in zip(sids.tolist(), lids.tolist(), vals[:, col].tolist()):
        if row == 0:
            continue
        labels = dict(profile.labels[lid])
        thread = labels.get("thread_name") or ""
        if labels.get("thread_id"):
            thread = (
                f"{thread} ({labels['thread_id']})" if thread else f"thread {labels['thread_id']}"
            )
        thread = thread or "all threads"
        stack = []
        for fid in profile.stacks.get(sid):
            idx = frame_index.get(fid)
            if idx is None:
                f = profile.frames[fid]
                entry: dict = {"name": f.function}
                if f.kind == FrameKind.PYTHON:
                    entry["file"] = f.file
                    entry["line"] = f.line
                elif f.file:
                    entry["file"] = f.file
                idx = frame_index[fid] = len(frames)
                frames.append(entry)
            stack.append(idx)
        t = by_thread.setdefault(thread, {"samples": [], "weights": []})
        t["samples"].append(stack)
        t["weights"].append(row)
    profiles = []
    for thread in sorted(by_thread):
        t = by_thread[thread]
        total = sum(t["weights"])
        profiles.append(
            {
                "type": "sampled",
                "name": thread,
                "unit": unit,
                "startValue": 0,
                "endValue": total,
                "samples": t["samples"],
                "weights": t["weights"],
            }
        )
    return {
        "$schema": SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": "hostprof",
    }


def write(profile: Profile, out: BinaryIO, sample_type: Optional[SampleType | str] = None) -> None:
    """Writes speedscope JSON."""
    out.write(json.dumps(to_document(profile, sample_type), separators=(",", ":")).encode())
