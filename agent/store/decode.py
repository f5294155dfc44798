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
import time
import zlib
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Tuple

from google.protobuf.message import DecodeError

from hostprof._errors import FormatError
from hostprof.proto import messages
from hostprof.store.query import CPU_TYPE
from hostprof.store.query import legacy_name
from hostprof.store.query import parse_selector

Stack = Tuple[str, ...]
"""A stack as function names, root first."""

MAX_LABELS = 64
MAX_LABEL_LEN = 1024
MAX_DEPTH = 1024


class TooLarge(FormatError):
    """A payload inflates past its size budget (HTTP 413)."""


@dataclasses.dataclass
class SeriesData:
    """Samples of one series over one window, ready to store."""

    labels: Dict[str, str]
    """Series labels, including ``__name__`` and ``service_name``."""
    profile_type: str
    """Profile type id, ``name:type:unit:period_type:period_unit``."""
    ts: int
    """Window start, Unix seconds."""
    stacks: List[Stack]
    values: List[int]
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
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise FormatError(f"corrupt gzip data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"gzip data inflates past the {limit}-byte limit")
    return out


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
    locs: Dict[int, Stack] = {}
    for loc in msg.location:
        names = []
        for line in reversed(loc.line):  # line[0] is the innermost inlined call
            name = funcs.get(line.function_id)
            if name is None:
                raise FormatError(f"pprof location {loc.id} names unknown function")
            names.append(name)
        locs[loc.id] = tuple(names) if names else (f"0x{loc.address:x}",)

    base = dict(labels)
    base.setdefault("__name__", "process_cpu")
    if not base.get("service_name"):
        base["service_name"] = "unknown_service"
    _check_labels(base)
    name = base["__name__"]
    when = _clean_ts(ts or msg.time_nanos // 1_000_000_000, now)
    sample_rate = 0
    if msg.period > 0 and period[1] == "nanoseconds":
        sample_rate = round(1e9 / msg.period)
    ntypes = len(types)
    # (label key) -> per-type (stacks, values)
    groups: Dict[Tuple[Tuple[str, str], ...], List[Tuple[List[Stack], List[int]]]] = {}
    for sample in msg.sample:
        vals = sample.value
        if len(vals) != ntypes:
            raise FormatError(f"pprof sample has {len(vals)} values, expected {ntypes}")
        stack: List[str] = []
        for lid in reversed(sample.location_id):
            frames = locs.get(lid)
            if frames is None:
                raise FormatError(f"pprof sample names unknown location {lid}")
            stack.extend(frames)
        if len(stack) > MAX_DEPTH:
            stack = stack[:MAX_DEPTH]
        key: Tuple[Tuple[str, str], ...] = ()
        if sample.label:
            key = tuple(
                sorted((s(lb.key), s(lb.str) if lb.str else str(lb.num)) for lb in sample.label)
            )
        cols = groups.get(key)
        if cols is None:
            cols = groups[key] = [([], []) for _ in range(ntypes)]
        st = tuple(stack)
        for i in range(ntypes):
            v = vals[i]
            if v:
                cols[i][0].append(st)
                cols[i][1].append(v)
    out: List[SeriesData] = []
    for key, cols in groups.items():
        series_labels = dict(base)
        if key:
            series_labels.update(key)
            _check_labels(series_labels)
        for (stype, sunit), (stacks, values) in zip(types, cols):
            if not stacks:
                continue
            ptype = f"{name}:{stype}:{sunit}:{period[0]}:{period[1]}"
            out.append(
                SeriesData(series_labels, ptype, when, stacks, values, spy_name, sample_rate)
            )
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
    sums: Dict[Stack, int] = {}
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
    if scale != 1.0:
        values = [min(round(v * scale), 2**62) for v in sums.values()]
    else:
        values = list(sums.values())
    keep = [(st, v) for st, v in zip(sums.keys(), values) if v]
    return SeriesData(
        dict(labels),
        profile_type,
        ts,
        [k for k, _ in keep],
        [v for _, v in keep],
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
    return Upload("", [sd] if sd.stacks else [])


def json_error(code: str, message: str) -> bytes:
    """The ``{"code","message"}`` body every error response carries."""
    return json.dumps({"code": code, "message": message}).encode()
