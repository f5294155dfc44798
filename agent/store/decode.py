"""Turns ingest payloads (Pyroscope push requests, pprof, folded text) into series samples.

The store keeps stacks as function names only (that is what flamegraphs show and what Pyroscope
merges on), so this module reads pprof messages directly into name tuples instead of going
through :class:`hostprof.model.Profile`: it is the ingest hot path.

Every function here raises :class:`hostprof._errors.FormatError` on malformed input and
:class:`TooLarge` when inflating would exceed the caller's byte budget; nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np
from google.protobuf.message import DecodeError

from hostprof._errors import FormatError
from hostprof.native import _pprofscan as pprofscan
from hostprof.proto import messages
from hostprof.store.query import CPU_TYPE
from hostprof.store.query import legacy_name
from hostprof.store.query import parse_selector

try:  # ISA-L inflates gzip about 1.7x faster than zlib: every push inflates one or two bodies
    from isal import isal_zlib as _gzip_lib
except ImportError:  # pragma: no cover - the dependency is declared; zlib behaves the same
    _gzip_lib = zlib

MAX_LABELS = 64
MAX_LABEL_LEN = 1024
MAX_DEPTH = 1024


class TooLarge(FormatError):
    """A payload inflates past its size budget (HTTP 413)."""


@dataclasses.dataclass
class StackBatch:
    """Stacks of one payload, as indexes into a local name table (no Python object per frame).

    Stack ``i`` is ``frames[offsets[i]:offsets[i + 1]]``, **leaf first** (pprof's order).
    """

    names: List[str]
    """Local function-name table."""
    frames: np.ndarray
    """uint32 indexes into ``names``."""
    offsets: np.ndarray
    """int64, one more than the number of stacks."""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_stacks(cls, stacks: Sequence[Sequence[str]]) -> StackBatch:
        """Builds a batch from stacks given as names, **root first** (folded order)."""
        names: List[str] = []
        index: Dict[str, int] = {}
        flat: List[int] = []
        offsets = [0]
        for stack in stacks:
            for name in reversed(stack):
                i = index.get(name)
                if i is None:
                    i = index[name] = len(names)
                    names.append(name)
                flat.append(i)
            offsets.append(len(flat))
        return cls(names, np.asarray(flat, dtype=np.uint32), np.asarray(offsets, dtype=np.int64))

    def take(self, rows: np.ndarray) -> StackBatch:
        """The batch of stacks ``rows`` (same name table)."""
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return StackBatch(self.names, self.frames[index], offsets)

    def stack(self, i: int) -> Tuple[str, ...]:
        """Stack ``i`` as names, root first (for tests and tools)."""
        ids = self.frames[self.offsets[i] : self.offsets[i + 1]]
        return tuple(self.names[j] for j in ids[::-1].tolist())


@dataclasses.dataclass
class SeriesData:
    """Samples of one series over one window, ready to store."""

    labels: Dict[str, str]
    """Series labels, including ``__name__`` and ``service_name``."""
    profile_type: str
    """Profile type id, ``name:type:unit:period_type:period_unit``."""
    ts: int
    """Window start, Unix seconds."""
    stacks: StackBatch
    """The stacks (shared by the series of one profile's sample types)."""
    values: np.ndarray
    """int64 value per stack of ``stacks`` (zeros allowed)."""
    spy_name: str = ""
    sample_rate: int = 0


@dataclasses.dataclass
class Upload:
    """One deduplication unit: a push's RawSample or one /ingest request."""

    sample_id: str
    """Client-given id (empty: never deduplicated)."""
    series: List[SeriesData]


def inflate(data: bytes, limit: int) -> bytes:
    """Gunzips ``data`` when it starts with the gzip magic, producing at most ``limit`` bytes.

    Raises:
        TooLarge: the inflated size would exceed ``limit``.
        FormatError: corrupt gzip.
    """
    if data[:2] != b"\x1f\x8b":
        if len(data) > limit:
            raise TooLarge(f"payload of {len(data)} bytes exceeds the {limit}-byte limit")
        return data
    if _gzip_lib is not zlib and len(data) > 3 and not data[3] & 0xE0:
        # ISA-L first; it is laxer than zlib on broken streams (reserved header flags, which
        # are checked above, and truncation: then zlib decides, so errors stay the same).
        out, done = _inflate_with(_gzip_lib, data, limit)
        if done:
            return out
    return _inflate_with(zlib, data, limit)[0]


def _inflate_with(lib, data: bytes, limit: int) -> Tuple[bytes, bool]:
    """Inflates with ``lib`` (zlib or a compatible module): (bytes, whether the stream ended)."""
    d = lib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except (zlib.error, _gzip_lib.error) as exc:
        raise FormatError(f"corrupt gzip data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"gzip data inflates past the {limit}-byte limit")
    return out, d.eof


def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise FormatError(f"too many labels ({len(labels)} > {MAX_LABELS})")
    for k, v in labels.items():
        if not k or len(k) > MAX_LABEL_LEN or len(v) > MAX_LABEL_LEN:
            raise FormatError(f"label {k[:40]!r} is empty or longer than {MAX_LABEL_LEN}")


def _clean_ts(ts: int, now: float) -> int:
    # A window more than a day in the future is a broken clock or garbage: refuse it rather
    # than create a storage partition for year 9999.
    if ts <= 0:
        return int(now)
    if ts > now + 86400:
        raise FormatError(f"profile time {ts} is more than a day in the future")
    return ts


@dataclasses.dataclass
class _Pprof:
    """What the store needs from one pprof profile."""

    types: List[Tuple[str, str]]
    period: Tuple[str, str]
    period_value: int
    time_nanos: int
    # (sorted sample labels) -> (stacks, values matrix (n, len(types)))
    groups: Dict[Tuple[Tuple[str, str], ...], Tuple[StackBatch, np.ndarray]]
    # Known facts about the values of a single group, which spare pprof_series a pass over
    # them: (some value is negative, per type whether some value is not zero).
    value_facts: Optional[Tuple[bool, List[bool]]] = None


def _fast_pprof(data: bytes) -> Optional[_Pprof]:
    """Reads a pprof profile in one C pass (native/pprofscan.c), or returns None when the
    profile needs the general reader (protobuf groups, sparse ids, 10-byte varint overflows).

    Raises:
        FormatError: malformed protobuf or pprof (the general reader rejects it too).
        TooLarge: the stacks expand past the reader's frame cap.
    """
    try:
        scan = pprofscan.scan(data)
    except pprofscan.PprofUnsupported:
        return None
    except pprofscan.PprofTooLarge as exc:
        raise TooLarge(f"pprof profile too large: {exc}") from None
    except pprofscan.PprofError as exc:
        raise FormatError(f"not a pprof profile: {exc}") from None
    types = [(t or "samples", u or "count") for t, u in scan.types]
    period = scan.period_type or ("", "")
    batch = StackBatch(scan.names, scan.frames, scan.offsets)
    values = scan.values
    if scan.labels is None:
        facts = (scan.any_negative, scan.type_nonzero)
        return _Pprof(types, period, scan.period, scan.time_nanos, {(): (batch, values)}, facts)
    # Sample labels split series: group samples by their sorted label set (rare in pushes).
    keys: Dict[Tuple[Tuple[str, str], ...], List[int]] = {}
    label_off = scan.label_off.tolist()
    rows = scan.labels.tolist()
    string = scan.string
    for i in range(len(scan)):
        a, b = label_off[i], label_off[i + 1]
        key: Tuple[Tuple[str, str], ...] = ()
        if b > a:
            key = tuple(sorted((string(k), string(s) if s else str(n)) for k, s, n in rows[a:b]))
        keys.setdefault(key, []).append(i)
    groups = {
        key: (batch.take(np.asarray(idx, dtype=np.int64)), values[idx]) for key, idx in keys.items()
    }
    return _Pprof(types, period, scan.period, scan.time_nanos, groups)


def _slow_pprof(data: bytes) -> _Pprof:
    """Reads any valid pprof profile (inlined lines, addresses, sample labels)."""
    try:
        msg = messages("perftools.profiles.Profile").FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise FormatError(f"not a pprof profile: {exc}") from None
    strings = list(msg.string_table)
    nstr = len(strings)

    def s(i: int) -> str:
        if i < 0 or i >= nstr:
            raise FormatError(f"pprof string index {i} out of range ({nstr} strings)")
        return strings[i]

    types = [(s(v.type) or "samples", s(v.unit) or "count") for v in msg.sample_type]
    if not types:
        raise FormatError("pprof profile has no sample_type")
    period = ("", "")
    if msg.HasField("period_type"):
        period = (s(msg.period_type.type), s(msg.period_type.unit))
    funcs: Dict[int, str] = {f.id: s(f.name) for f in msg.function}
    locs: Dict[int, List[str]] = {}
    for loc in msg.location:
        names = []
        for line in loc.line:  # line[0] is the innermost inlined call: leaf-first order
            name = funcs.get(line.function_id)
            if name is None:
                raise FormatError(f"pprof location {loc.id} names an unknown function")
            names.append(name)
        locs[loc.id] = names if names else [f"0x{loc.address:x}"]
    ntypes = len(types)
    grouped: Dict[Tuple[Tuple[str, str], ...], Tuple[List[List[str]], List[List[int]]]] = {}
    for sample in msg.sample:
        vals = list(sample.value)
        if len(vals) != ntypes:
            raise FormatError(f"pprof sample has {len(vals)} values, expected {ntypes}")
        stack: List[str] = []
        for lid in sample.location_id:
            frames = locs.get(lid)
            if frames is None:
                raise FormatError(f"pprof sample names an unknown location {lid}")
            stack.extend(frames)
        key: Tuple[Tuple[str, str], ...] = ()
        if sample.label:
            key = tuple(
                sorted((s(lb.key), s(lb.str) if lb.str else str(lb.num)) for lb in sample.label)
            )
        group = grouped.setdefault(key, ([], []))
        group[0].append(stack[:MAX_DEPTH][::-1])
        group[1].append(vals)
    groups = {
        key: (StackBatch.from_stacks(st), np.asarray(v, dtype=np.int64).reshape(-1, ntypes))
        for key, (st, v) in grouped.items()
    }
    return _Pprof(types, period, msg.period, msg.time_nanos, groups)


def pprof_series(
    raw: bytes,
    labels: Mapping[str, str],
    limit: int,
    now: Optional[float] = None,
    ts: int = 0,
    spy_name: str = "",
) -> List[SeriesData]:
    """Reads one pprof profile into one :class:`SeriesData` per (sample type, sample labels).

    Args:
        raw: pprof bytes, gzipped or not.
        labels: the series labels (``__name__`` defaults to ``process_cpu``, ``service_name`` to
            ``unknown_service``).
        limit: inflated-size budget in bytes.
        now: the current time (for profiles without a timestamp).
        ts: window start to use instead of the profile's own ``time_nanos``.
        spy_name: recorded with the series.
    """
    now = time.time() if now is None else now
    data = inflate(raw, limit)
    prof = _fast_pprof(data) or _slow_pprof(data)
    base = dict(labels)
    base.setdefault("__name__", "process_cpu")
    if not base.get("service_name"):
        base["service_name"] = "unknown_service"
    _check_labels(base)
    name = base["__name__"]
    when = _clean_ts(ts or prof.time_nanos // 1_000_000_000, now)
    sample_rate = 0
    if prof.period_value > 0 and prof.period[1] == "nanoseconds":
        sample_rate = round(1e9 / prof.period_value)
    out: List[SeriesData] = []
    facts = prof.value_facts
    for key, (batch, values) in prof.groups.items():
        negative = facts[0] if facts else bool(len(values) and values.min() < 0)
        if negative:
            raise FormatError("pprof sample values must not be negative")
        series_labels = dict(base)
        if key:
            series_labels.update(key)
            _check_labels(series_labels)
        for col, (stype, sunit) in enumerate(prof.types):
            column = values[:, col]
            if not len(batch) or not (facts[1][col] if facts else column.any()):
                continue
            ptype = f"{name}:{stype}:{sunit}:{prof.period[0]}:{prof.period[1]}"
            out.append(SeriesData(series_labels, ptype, when, batch, column, spy_name, sample_rate))
    return out


def push_request(body: bytes, content_type: str, limit: int, now: Optional[float] = None):
    """Decodes a connect ``push.v1.PushRequest`` (binary or JSON) into uploads.

    Args:
        body: the (already HTTP-inflated) request body.
        content_type: ``application/proto`` or ``application/json``.
        limit: total inflated-size budget for every ``raw_profile`` together.
    """
    from hostprof.store.connect import parse_message  # local: connect imports this module

    req = parse_message("push.v1.PushRequest", body, content_type)
    uploads: List[Upload] = []
    budget = limit
    for series in req.series:
        labels: Dict[str, str] = {}
        for lp in series.labels:
            labels[lp.name] = lp.value
        for sample in series.samples:
            raw = inflate(sample.raw_profile, budget)
            budget -= len(raw)
            spy = labels.get("__spy_name__", "")
            clean = {k: v for k, v in labels.items() if not k.startswith("__") or k == "__name__"}
            uploads.append(Upload(sample.ID, pprof_series(raw, clean, limit, now, spy_name=spy)))
    return uploads


def folded_series(
    data: bytes,
    labels: Mapping[str, str],
    profile_type: str,
    ts: int,
    scale: float = 1.0,
    spy_name: str = "",
    sample_rate: int = 0,
) -> SeriesData:
    """Reads folded text (``a;b;c 12`` per line) into one series sample.

    Raises:
        FormatError: a line without a count, a bad count, or non-UTF-8 text.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"folded input is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    sums: Dict[Tuple[str, ...], int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        stack_text = stack_text.strip()
        if not sep or not stack_text:
            raise FormatError(f"folded line {lineno}: expected 'frame;frame;... COUNT'")
        try:
            count = int(count_text)
        except ValueError:
            raise FormatError(
                f"folded line {lineno}: count {count_text[:40]!r} is not an integer"
            ) from None
        if count < 0 or count >= 2**62:
            raise FormatError(f"folded line {lineno}: count {count} out of range")
        frames = tuple(f for f in stack_text.split(";") if f)[:MAX_DEPTH]
        if not frames:
            raise FormatError(f"folded line {lineno}: no frames")
        sums[frames] = sums.get(frames, 0) + count
    values = [min(round(v * scale), 2**62) for v in sums.values()]
    return SeriesData(
        dict(labels),
        profile_type,
        ts,
        StackBatch.from_stacks(list(sums)),
        np.asarray(values, dtype=np.int64),
        spy_name,
        sample_rate,
    )


@dataclasses.dataclass
class IngestParams:
    """The query parameters of a legacy ``/ingest`` request."""

    service: str
    labels: Dict[str, str]
    profile_type: str
    ts: int
    fmt: str
    sample_rate: int
    spy_name: str
    units: str


def ingest_params(params: Mapping[str, str], now: Optional[float] = None) -> IngestParams:
    """Validates ``/ingest`` parameters.

    Raises:
        FormatError: missing or malformed ``name``, ``from``, ``sampleRate`` or ``format``.
    """
    now = time.time() if now is None else now
    name = params.get("name", "")
    if not name:
        raise FormatError("ingest needs a name, e.g. ?name=app.cpu{env=prod}")
    brace = name.find("{")
    head, selector = (name, "") if brace < 0 else (name[:brace], name[brace:])
    matchers = parse_selector(selector) if selector else ()
    units = params.get("units", "") or "samples"
    service, ptype = legacy_name(head.strip(), units)
    if not service:
        raise FormatError(f"ingest name {name[:80]!r} has no application name")
    labels = {m.name: m.value for m in matchers}
    labels["service_name"] = service
    labels["__name__"] = ptype.split(":")[0]
    _check_labels(labels)
    fmt = params.get("format", "") or "folded"
    if fmt not in ("folded", "lines", "pprof"):
        raise FormatError(f"unsupported format {fmt!r}", "use format=folded or format=pprof")
    try:
        rate = int(params.get("sampleRate", "") or 100)
        start = int(float(params.get("from", "") or 0))
    except ValueError:
        raise FormatError("sampleRate and from must be integers") from None
    if rate <= 0 or rate > 1_000_000:
        raise FormatError(f"sampleRate {rate} out of range")
    if start > 10**12:  # milliseconds or nanoseconds sent by mistake: normalise to seconds
        start = start // 1000 if start < 10**15 else start // 1_000_000_000
    return IngestParams(
        service,
        labels,
        ptype,
        _clean_ts(start, now),
        fmt,
        rate,
        params.get("spyName", ""),
        units,
    )


def ingest_upload(params: IngestParams, body: bytes, limit: int) -> Upload:
    """Decodes an ``/ingest`` body according to its parameters."""
    if params.fmt == "pprof":
        series = pprof_series(body, params.labels, limit, ts=params.ts, spy_name=params.spy_name)
        for sd in series:
            sd.sample_rate = sd.sample_rate or params.sample_rate
        return Upload("", series)
    data = inflate(body, limit)
    scale = 1.0
    ptype = params.profile_type
    if ptype == CPU_TYPE and params.units in ("", "samples"):
        scale = 1e9 / params.sample_rate  # Pyroscope stores CPU samples as nanoseconds
    sd = folded_series(
        data, params.labels, ptype, params.ts, scale, params.spy_name, params.sample_rate
    )
    return Upload("", [sd] if len(sd.stacks) and sd.values.any() else [])


def warm_up() -> int:
    """Loads the protobuf descriptors (run once in each decoder process at start-up)."""
    for name in ("PushRequest",):
        messages(f"push.v1.{name}")
    messages("perftools.profiles.Profile")
    return os.getpid()


def json_error(code: str, message: str) -> bytes:
    """The ``{"code","message"}`` body every error response carries."""
    return json.dumps({"code": code, "message": message}).encode()
