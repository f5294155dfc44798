"""Parsing of the store's query language: profile type ids, label selectors and time values.

A query is ``<profile type id>{<matchers>}``, for example
``process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app",env=~"prod|staging"}``,
the form Pyroscope's read API uses. The legacy form ``app.cpu{...}`` (an application name with
a suffix, as in ``/ingest?name=``) is accepted too and means ``service_name="app"`` with the
suffix's profile type.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple

from hostprof._errors import FormatError

CPU_TYPE = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

# Legacy application-name suffixes and the profile types Pyroscope maps them to.
SUFFIX_TYPES: Dict[str, str] = {
    "cpu": CPU_TYPE,
    "itimer": CPU_TYPE,
    "wall": "wall:wall:nanoseconds:wall:nanoseconds",
    "alloc_objects": "memory:alloc_objects:count:space:bytes",
    "alloc_space": "memory:alloc_space:bytes:space:bytes",
    "inuse_objects": "memory:inuse_objects:count:space:bytes",
    "inuse_space": "memory:inuse_space:bytes:space:bytes",
    "goroutines": "goroutine:goroutine:count:goroutine:count",
    "mutex_count": "mutex:contentions:count:contentions:count",
    "mutex_duration": "mutex:delay:nanoseconds:contentions:count",
    "block_count": "block:contentions:count:contentions:count",
    "block_duration": "block:delay:nanoseconds:contentions:count",
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPS = ("=~", "!~", "!=", "=")


@dataclasses.dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name op "value"``."""

    name: str
    op: str
    value: str
    regex: Optional[re.Pattern] = dataclasses.field(default=None, compare=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this matcher (a missing label is the empty string)."""
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = self.regex is not None and self.regex.fullmatch(have) is not None
        return hit if self.op == "=~" else not hit


@dataclasses.dataclass(frozen=True)
class Query:
    """A parsed query: an optional profile type id and label matchers."""

    profile_type: str
    matchers: Tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher accepts ``labels``."""
        return all(m.matches(labels) for m in self.matchers)


def parse_selector(text: str) -> Tuple[Matcher, ...]:
    """Parses ``{name="value", other=~"re.*"}`` (braces optional, may be empty).

    Raises:
        FormatError: on a malformed selector.
    """
    s = text.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise FormatError(f"label selector {text[:80]!r} has no closing '}}'")
        s = s[1:-1]
    out: List[Matcher] = []
    pos = 0
    n = len(s)
    while True:
        while pos < n and s[pos] in " \t,":
            pos += 1
        if pos >= n:
            break
        m = _NAME.match(s, pos)
        if not m:
            raise FormatError(f"label selector: expected a label name at {s[pos : pos + 20]!r}")
        name = m.group(0)
        pos = m.end()
        while pos < n and s[pos] == " ":
            pos += 1
        op = next((o for o in _OPS if s.startswith(o, pos)), None)
        if op is None:
            raise FormatError(f"label selector: expected =, !=, =~ or !~ after {name!r}")
        pos += len(op)
        while pos < n and s[pos] == " ":
            pos += 1
        value, pos = _quoted(s, pos)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise FormatError(f"label selector: bad regex {value!r}: {exc}") from None
        out.append(Matcher(name, op, value, regex))
    return tuple(out)


def _quoted(s: str, pos: int) -> Tuple[str, int]:
    if pos >= len(s) or s[pos] not in "\"'`":
        # Legacy /ingest names use bare values: app.cpu{env=prod}.
        end = pos
        while end < len(s) and s[end] not in ",}":
            end += 1
        if end == pos:
            raise FormatError("label selector: expected a quoted value")
        return s[pos:end].strip(), end
    quote = s[pos]
    out = []
    i = pos + 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise FormatError("label selector: unterminated quoted value")


def split_query(text: str) -> Tuple[str, str]:
    """Splits ``head{selector}`` into (head, selector)."""
    text = text.strip()
    brace = text.find("{")
    if brace < 0:
        return text, ""
    return text[:brace].strip(), text[brace:]


def parse_query(text: str, require_type: bool = True) -> Query:
    """Parses a render query (see the module docstring).

    Raises:
        FormatError: on a malformed query, or a missing profile type when one is required.
    """
    if len(text) > 8192:
        raise FormatError("query is longer than 8192 characters")
    head, selector = split_query(text)
    matchers = parse_selector(selector) if selector else ()
    if not head:
        if require_type:
            raise FormatError(
                "query has no profile type",
                'write it as process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="app"}',
            )
        return Query("", matchers)
    if ":" in head:
        parse_profile_type(head)
        return Query(head, matchers)
    service, ptype = legacy_name(head)
    return Query(ptype, (Matcher("service_name", "=", service), *matchers))


def legacy_name(name: str, units: str = "samples") -> Tuple[str, str]:
    """Maps a legacy application name (``app.cpu``) to (service_name, profile type id)."""
    app, dot, suffix = name.rpartition(".")
    if not dot or not app:
        return name, CPU_TYPE
    known = SUFFIX_TYPES.get(suffix)
    if known:
        return app, known
    unit = "count" if units in ("", "samples") else units
    kind = "samples" if units in ("", "samples") else suffix
    return app, f"{suffix}:{kind}:{unit}::"


def parse_profile_type(ptype: str) -> Tuple[str, str, str, str, str]:
    """Splits a profile type id into (name, sample type, sample unit, period type, period unit).

    Raises:
        FormatError: when it does not have five colon-separated parts.
    """
    parts = ptype.split(":")
    if len(parts) != 5 or not parts[0] or not parts[1]:
        raise FormatError(
            f"profile type {ptype[:80]!r} is not <name>:<type>:<unit>:<period_type>:<period_unit>",
            "for example process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


_REL = re.compile(r"^now(?:-(\d+)(s|m|h|d|w))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: Optional[str], default: str, now: Optional[float] = None) -> int:
    """Parses a time parameter into Unix seconds.

    Accepts Unix seconds, Unix milliseconds (>= 1e12), ``now`` and ``now-<N><s|m|h|d|w>``.

    Raises:
        FormatError: on anything else.
    """
    value = (text or "").strip() or default
    now = time.time() if now is None else now
    m = _REL.match(value)
    if m:
        offset = int(m.group(1)) * _UNIT_S[m.group(2)] if m.group(1) else 0
        return int(now) - offset
    try:
        number = float(value)
    except ValueError:
        raise FormatError(
            f"bad time {value[:40]!r}", "use Unix seconds, milliseconds, 'now' or 'now-1h'"
        ) from None
    if number != number or abs(number) > 1e17:
        raise FormatError(f"time {value[:40]!r} is out of range")
    return int(number / 1000) if number >= 1e12 else int(number)


def ms_to_s(ms: int, default: int) -> int:
    """Converts a request's millisecond time to seconds; 0 means ``default``."""
    return int(ms // 1000) if ms else default
