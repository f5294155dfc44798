"""Folded stacks (``a;b;c 42`` per line), the input format of flamegraph.pl.

Frame text conventions (so a round trip keeps frame kinds):

* Python:    ``func (file.py:12)``, as py-spy writes it;
* native:    ``func [libz.so.1]`` or a bare ``func``;
* kernel:    ``func_[k]`` (flamegraph.pl's kernel annotation);
* synthetic: ``<gc gen=2>`` (angle brackets).

Only one sample type can be written; pick it with ``sample_type`` (default: the first).
Label sets are not representable, so rows that differ only by labels are summed.
"""

from __future__ import annotations

import re
from typing import BinaryIO
from typing import Dict
from typing import Optional
from typing import Tuple

from hostprof._errors import FormatError
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType

NAME = "folded"
EXTENSIONS = (".folded", ".txt", ".collapsed")

_PY = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
_NATIVE = re.compile(r"^(?P<func>.*) \[(?P<file>[^\[\]]+)\]$")


def _clean(text: str) -> str:
    # ';' separates frames and a newline separates samples: neither may appear inside a name.
    return text.replace(";", ":").replace("\n", " ").replace("\r", " ")


def frame_text(frame: Frame) -> str:
    """The folded-format text of one frame."""
    name = _clean(frame.function)
    if frame.kind == FrameKind.PYTHON:
        return f"{name} ({_clean(frame.file)}:{frame.line})"
    if frame.kind == FrameKind.KERNEL:
        return f"{name}_[k]"
    if frame.kind == FrameKind.SYNTHETIC:
        return name
    return f"{name} [{_clean(frame.file)}]" if frame.file else name


def parse_frame(text: str) -> Frame:
    """Parses one frame's folded text (inverse of :func:`frame_text`)."""
    if text.endswith("_[k]"):
        return Frame(text[:-4], "", 0, FrameKind.KERNEL)
    if text.startswith("<") and text.endswith(">"):
        return Frame.synthetic(text)
    m = _PY.match(text)
    if m:
        return Frame(m["func"], m["file"], int(m["line"]), FrameKind.PYTHON)
    m = _NATIVE.match(text)
    if m:
        return Frame(m["func"], m["file"], 0, FrameKind.NATIVE)
    return Frame(text, "", 0, FrameKind.NATIVE)


def write(profile: Profile, out: BinaryIO, sample_type: Optional[SampleType | str] = None) -> None:
    """Writes ``profile`` as folded text, one line per distinct stack, sorted for stable diffs."""
    col = 0 if sample_type is None else profile.sample_type_index(sample_type)
    sids, _lids, vals = profile.arrays()
    totals: Dict[int, int] = {}
    for sid, v in zip(sids.tolist(), vals[:, col].tolist()):
        totals[sid] = totals.get(sid, 0) + v
    text_cache: Dict[int, str] = {}
    lines = []
    for sid, v in totals.items():
        if v == 0:
            continue
        frame_ids = profile.stacks.get(sid)
        if not frame_ids:
            continue  # an empty stack has no folded form
        parts = []
        for fid in frame_ids:
            t = text_cache.get(fid)
            if t is None:
                t = text_cache[fid] = frame_text(profile.frames[fid])
            parts.append(t)
        lines.append(f"{';'.join(parts)} {v}\n")
    lines.sort()
    out.write("".join(lines).encode("utf-8"))


def read(data: bytes, sample_type: SampleType = SAMPLES) -> Profile:
    """Parses folded text into a profile with one sample type.

    Raises:
        FormatError: on a line that is not ``frames count``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"folded input is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    profile = Profile([sample_type])
    cache: Dict[str, int] = {}
    stacks: Dict[Tuple[int, ...], int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        # Only ASCII blanks are separators: a name may begin with other Unicode spaces.
        line = line.strip(" \t\r")
        if not line:
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        if not sep or not stack_text:
            raise FormatError(f"folded line {lineno}: expected 'frame;frame;... COUNT'")
        try:
            count = int(count_text)
        except ValueError:
            try:
                count = int(float(count_text))
            except ValueError:
                raise FormatError(
                    f"folded line {lineno}: count {count_text[:40]!r} is not a number"
                ) from None
        if count < 0:
            raise FormatError(f"folded line {lineno}: negative count {count}")
        ids = []
        for part in stack_text.split(";"):
            fid = cache.get(part)
            if fid is None:
                fid = cache[part] = profile.frames.intern(parse_frame(part))
            ids.append(fid)
        key = tuple(ids)
        stacks[key] = stacks.get(key, 0) + count
    for key, count in stacks.items():
        profile.add_stacks([profile.stacks.intern(key)], [count])
    return profile
