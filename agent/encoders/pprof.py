"""pprof (gzipped ``perftools.profiles.Profile`` protobuf), as read by ``go tool pprof``.

Frame kinds survive a round trip through mappings: Python frames sit in a mapping named
``[python]``, kernel frames in ``[kernel.kallsyms]`` (perf's name), synthetic frames in
``[hostprof]``, and native frames in one mapping per object file. Foreign profiles without
mappings are read as Python frames when the file ends in ``.py``, else native.
"""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import numpy as np

from hostprof._errors import FormatError
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.model import Window
from hostprof.proto import messages

NAME = "pprof"
EXTENSIONS = (".pprof", ".pb.gz", ".pb")

PYTHON_MAPPING = "[python]"
KERNEL_MAPPING = "[kernel.kallsyms]"
SYNTHETIC_MAPPING = "[hostprof]"
UNKNOWN_MAPPING = "[unknown]"
"""Native frames whose object file is not known."""
_KIND_BY_MAPPING = {
    PYTHON_MAPPING: FrameKind.PYTHON,
    KERNEL_MAPPING: FrameKind.KERNEL,
    SYNTHETIC_MAPPING: FrameKind.SYNTHETIC,
}

MAX_DECOMPRESSED = 512 * 1024 * 1024
"""Refuse to inflate more than this (a gzip bomb guard for callers that set no lower cap)."""


def _pb():
    return messages("perftools.profiles.Profile")


class _Strings:
    def __init__(self) -> None:
        self.table: List[str] = [""]
        self.ids: Dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            i = self.ids[s] = len(self.table)
            self.table.append(s)
        return i


def to_message(profile: Profile):
    """Builds the pprof Profile message for ``profile``."""
    msg = _pb()()
    strings = _Strings()
    for st in profile.sample_types:
        msg.sample_type.add(type=strings(st.type), unit=strings(st.unit))
    if profile.period_type is not None:
        msg.period_type.type = strings(profile.period_type.type)
        msg.period_type.unit = strings(profile.period_type.unit)
    msg.period = profile.period
    start, end = profile.time_range
    msg.time_nanos = start
    msg.duration_nanos = max(0, end - start)

    mapping_ids: Dict[str, int] = {}

    def mapping_for(frame: Frame) -> int:
        if frame.kind == FrameKind.NATIVE:
            name = frame.file or UNKNOWN_MAPPING
        else:
            name = {
                FrameKind.PYTHON: PYTHON_MAPPING,
                FrameKind.KERNEL: KERNEL_MAPPING,
                FrameKind.SYNTHETIC: SYNTHETIC_MAPPING,
            }[frame.kind]
        mid = mapping_ids.get(name)
        if mid is None:
            mid = mapping_ids[name] = len(mapping_ids) + 1
            msg.mapping.add(
                id=mid,
                filename=strings(name),
                has_functions=True,
                has_filenames=frame.kind == FrameKind.PYTHON,
                has_line_numbers=frame.kind == FrameKind.PYTHON,
            )
        return mid

    function_ids: Dict[Tuple[str, str], int] = {}
    # Location ids are frame id + 1: every interned frame gets exactly one location.
    used_frames = np.unique(profile.stacks.export()[0]) if len(profile.stacks) else []
    for fid in used_frames.tolist() if len(used_frames) else []:
        frame = profile.frames[fid]
        file = frame.file if frame.kind == FrameKind.PYTHON else ""
        key = (frame.function, file)
        func_id = function_ids.get(key)
        if func_id is None:
            func_id = function_ids[key] = len(function_ids) + 1
            msg.function.add(
                id=func_id,
                name=strings(frame.function),
                # pprof demangles names equal to their system_name, which strips "<...>"
                # as C++ template parameters; an empty system_name keeps "<gc>" intact.
                system_name=strings("" if frame.kind == FrameKind.SYNTHETIC else frame.function),
                filename=strings(file),
            )
        loc = msg.location.add(id=fid + 1, mapping_id=mapping_for(frame))
        loc.line.add(function_id=func_id, line=frame.line)

    sids, lids, vals = profile.arrays()
    label_cache: Dict[int, List[Tuple[int, int]]] = {}
    for sid, lid, row in zip(sids.tolist(), lids.tolist(), vals.tolist()):
        sample = msg.sample.add()
        sample.location_id.extend([f + 1 for f in reversed(profile.stacks.get(sid))])
        sample.value.extend(row)
        pairs = label_cache.get(lid)
        if pairs is None:
            pairs = label_cache[lid] = [(strings(k), strings(v)) for k, v in profile.labels[lid]]
        for k, v in pairs:
            sample.label.add(key=k, str=v)
    msg.string_table.extend(strings.table)
    return msg


def encode(profile: Profile, compresslevel: int = 6) -> bytes:
    """Returns gzipped pprof bytes."""
    raw = to_message(profile).SerializeToString()
    return gzip.compress(raw, compresslevel=compresslevel, mtime=0)


def write(profile: Profile, out: BinaryIO) -> None:
    """Writes gzipped pprof."""
    out.write(encode(profile))


def maybe_gunzip(data: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Inflates gzip data (detected by magic), refusing output beyond ``limit`` bytes.

    Raises:
        FormatError: corrupt gzip, or inflated size over the limit (message says so).
    """
    if data[:2] != b"\x1f\x8b":
        return data
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise FormatError(f"corrupt gzip data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise FormatError(f"decompressed data exceeds the {limit}-byte limit")
    return out


def decode(data: bytes, limit: int = MAX_DECOMPRESSED) -> Profile:
    """Parses pprof bytes (gzipped or not) into a profile.

    Raises:
        FormatError: not a valid pprof profile.
    """
    raw = maybe_gunzip(data, limit)
    try:
        msg = _pb().FromString(raw)
    except Exception as exc:
        raise FormatError(f"not a pprof profile: {type(exc).__name__}: {exc}") from None
    return from_message(msg)


def from_message(msg) -> Profile:
    """Converts a parsed pprof message into a profile."""
    st = list(msg.string_table)

    def s(i: int) -> str:
        if i < 0 or i >= len(st):
            raise FormatError(f"pprof string index {i} out of range ({len(st)} strings)")
        return st[i]

    if st and st[0] != "":
        raise FormatError("pprof string_table[0] must be the empty string")
    sample_types = [
        SampleType(s(v.type) or "samples", s(v.unit) or "count") for v in msg.sample_type
    ]
    if not sample_types:
        raise FormatError("pprof profile has no sample_type")
    period_type = None
    if msg.HasField("period_type") and (msg.period_type.type or msg.period_type.unit):
        period_type = SampleType(s(msg.period_type.type), s(msg.period_type.unit))
    profile = Profile(sample_types, period_type, msg.period)
    if msg.time_nanos or msg.duration_nanos:
        profile.windows.append(Window(msg.time_nanos, msg.duration_nanos))

    mappings = {m.id: s(m.filename) for m in msg.mapping}
    functions = {f.id: (s(f.name), s(f.filename)) for f in msg.function}
    # A location may hold several lines (inlined calls): innermost first, like pprof.
    loc_frames: Dict[int, List[int]] = {}
    for loc in msg.location:
        mname = mappings.get(loc.mapping_id, "")
        ids = []
        for line in loc.line:
            if line.function_id not in functions:
                raise FormatError(
                    f"pprof location {loc.id} names unknown function {line.function_id}"
                )
            name, file = functions[line.function_id]
            ids.append(profile.frames.intern(_frame(name, file, line.line, mname)))
        if not loc.line:
            name = f"0x{loc.address:x}" if loc.address else "[unknown]"
            ids.append(profile.frames.intern(_frame(name, "", 0, mname)))
        loc_frames[loc.id] = ids

    n = len(msg.sample)
    k = len(sample_types)
    flat: List[int] = []
    offsets = np.zeros(n + 1, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.int64)
    label_ids = np.zeros(n, dtype=np.uint32)
    for i, sample in enumerate(msg.sample):
        if len(sample.value) != k:
            raise FormatError(f"pprof sample {i} has {len(sample.value)} values, expected {k}")
        for lid in reversed(sample.location_id):
            frames = loc_frames.get(lid)
            if frames is None:
                raise FormatError(f"pprof sample {i} names unknown location {lid}")
            flat.extend(reversed(frames))
        offsets[i + 1] = len(flat)
        values[i] = list(sample.value)
        if sample.label:
            label_ids[i] = profile.labels.intern(
                [(s(lb.key), s(lb.str) if lb.str else str(lb.num)) for lb in sample.label]
            )
    profile.add_batch(np.asarray(flat, dtype=np.uint32), offsets, values, label_ids)
    return profile


def _frame(name: str, file: str, line: int, mapping: str) -> Frame:
    kind = _KIND_BY_MAPPING.get(mapping)
    if kind is None:
        if mapping:
            return Frame(name, "" if mapping == UNKNOWN_MAPPING else mapping, 0, FrameKind.NATIVE)
        kind = FrameKind.PYTHON if file.endswith(".py") or line else FrameKind.NATIVE
    if kind == FrameKind.PYTHON:
        return Frame(name, file, line, kind)
    return Frame(name, "", 0, kind)


def read(data: bytes) -> Profile:
    """Decoder entry point (same as :func:`decode`)."""
    return decode(data)


def read_stream(stream: BinaryIO, limit: Optional[int] = None) -> Profile:
    """Reads a pprof stream."""
    return decode(stream.read(), limit or MAX_DECOMPRESSED)


__all__ = ["decode", "encode", "from_message", "maybe_gunzip", "read", "to_message", "write"]
