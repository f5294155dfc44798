"""HTTP routes of the embedded store: Pyroscope-compatible ingest and read APIs, and the web UI.

The API is described in docs/store-api.md. Every error is a JSON ``{"code", "message"}`` body:
400 for malformed input, 401 for a missing token, 413 for a body (or its inflated form) over
the limits, 503 when storage fails. Handlers never let an exception become a bare 500.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import concurrent.futures.process
import dataclasses
import functools
import hmac
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from hostprof._errors import FormatError
from hostprof._errors import StorageError
from hostprof.proto import messages
from hostprof.store import connect
from hostprof.store.backend import Backend
from hostprof.store.backend import SeriesInfo
from hostprof.store.decode import TooLarge
from hostprof.store.decode import inflate
from hostprof.store.decode import ingest_params
from hostprof.store.decode import ingest_upload
from hostprof.store.decode import push_request
from hostprof.store.flame import Tree
from hostprof.store.flame import diff_flamebearer
from hostprof.store.flame import flamebearer
from hostprof.store.query import Query
from hostprof.store.query import ms_to_s
from hostprof.store.query import parse_profile_type
from hostprof.store.query import parse_query
from hostprof.store.query import parse_selector
from hostprof.store.query import parse_time

log = logging.getLogger("hostprof.store")

UI_DIR = Path(__file__).parent / "ui"
ASSETS_DIR = Path(__file__).parent.parent / "encoders" / "assets"
DEFAULT_TENANT = "anonymous"
DEFAULT_MAX_NODES = 2048
MAX_TIMELINE_POINTS = 1500
MINUTE = 60
HOUR = 3600
_TENANT = re.compile(r"^[A-Za-z0-9_.\-!*'()]{1,150}$")
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,120}$")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".ico": "image/x-icon",
    ".map": "application/json",
}


@dataclasses.dataclass
class Limits:
    """Request size limits, in bytes."""

    max_body: int = 16 * 1024 * 1024
    """Largest request body accepted as sent."""
    max_inflated: int = 64 * 1024 * 1024
    """Largest size a body (and the profiles inside it) may inflate to."""


class ApiError(Exception):
    """An error response: HTTP status, short code, one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    """The JSON error body every failure carries."""
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _handled(fn: Callable) -> Callable:
    """Maps the errors a handler may raise onto JSON error responses."""

    @functools.wraps(fn)
    async def wrapper(*args) -> Response:
        request: Request = args[-1]
        try:
            return await fn(*args)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except TooLarge as exc:
            return error_response(413, "payload_too_large", exc.message)
        except FormatError as exc:
            msg = exc.message + (f" ({exc.hint})" if exc.hint else "")
            return error_response(400, "invalid_argument", msg)
        except StorageError as exc:
            log.error("storage failure: %s", exc.message)
            return error_response(503, "unavailable", exc.message)
        except Exception as exc:  # a bug; keep the server up and say so in one line
            log.exception("internal error in %s", request.url.path)
            return error_response(500, "internal", f"internal error: {type(exc).__name__}")

    return wrapper


class Store:
    """The store's request handlers around one :class:`Backend`.

    Args:
        backend: where profiles are stored.
        limits: request size limits.
        decoders: an optional process pool that decodes pushes, so decoding (the costliest
            part of ingest) runs on other cores than the event loop and the writer.
    """

    def __init__(
        self,
        backend: Backend,
        limits: Optional[Limits] = None,
        decoders: Optional[concurrent.futures.Executor] = None,
    ) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        self.decoders = decoders
        self._bridge: Optional[_WriteBridge] = None

    # ------------------------------------------------------------------------- helpers
    @staticmethod
    def tenant(request: Request) -> str:
        """The tenant of a request (``X-Scope-OrgID``)."""
        value = request.headers.get("x-scope-orgid", "").strip()
        if not value:
            return DEFAULT_TENANT
        if not _TENANT.match(value):
            raise ApiError(400, "invalid_argument", "X-Scope-OrgID has invalid characters")
        return value

    async def body(self, request: Request) -> bytes:
        """Reads the body under the size cap, then undoes ``Content-Encoding: gzip``."""
        cap = self.limits.max_body
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise TooLarge(f"request body of {length} bytes exceeds the {cap}-byte limit")
        chunks: List[bytes] = []
        size = 0
        receive = request.receive  # raw ASGI: Request.stream() costs more per push
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise TooLarge(f"request body exceeds the {cap}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            if data[:2] != b"\x1f\x8b":
                raise FormatError("Content-Encoding is gzip but the body is not gzip data")
            data = inflate(data, self.limits.max_inflated)
        elif encoding not in ("", "identity"):
            raise ApiError(415, "unimplemented", f"unsupported Content-Encoding {encoding!r}")
        return data

    def tree(self, *sides: Dict[int, int]) -> Tree:
        """The merged call tree of one or more ``{stack id: value}`` maps."""
        arrays = [
            (
                np.fromiter(side.keys(), dtype=np.uint32, count=len(side)),
                np.fromiter(side.values(), dtype=np.int64, count=len(side)),
            )
            for side in sides
        ]
        top = max((int(ids.max()) for ids, _ in arrays if len(ids)), default=0)
        try:
            frames, offsets, names = self.backend.stack_arrays(top)
        except NotImplementedError:  # a backend without a stack table: build in Python
            ids = sorted({sid for side in sides for sid in side})
            return Tree.build(self.backend.stack_names(ids), *sides)
        return Tree.build_arrays(frames, offsets, names, *arrays)

    # ------------------------------------------------------------------------- ingest
    @_handled
    async def push(self, request: Request) -> Response:
        tenant = self.tenant(request)
        ctype = request.headers.get("content-type", connect.PROTO)
        body = await self.body(request)
        if self.decoders is not None and len(body) > 512:
            loop = asyncio.get_running_loop()
            try:
                uploads = await loop.run_in_executor(
                    self.decoders, push_request, body, ctype, self.limits.max_inflated
                )
            except concurrent.futures.process.BrokenProcessPool:
                uploads = push_request(body, ctype, self.limits.max_inflated)
        else:
            uploads = push_request(body, ctype, self.limits.max_inflated)
        if uploads:
            loop = asyncio.get_running_loop()
            if self._bridge is None or self._bridge.loop is not loop:
                self._bridge = _WriteBridge(loop)
            await self._bridge.wrap(self.backend.submit(tenant, uploads))
        msg = messages("push.v1.PushResponse")()
        return Response(connect.encode(msg, ctype), media_type=ctype.split(";")[0])

    @_handled
    async def ingest(self, request: Request) -> Response:
        tenant = self.tenant(request)
        params = ingest_params(request.query_params)
        body = await self.body(request)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            body = await self._profile_part(request, body)
            if params.fmt != "pprof":
                params.fmt = "pprof"
        upload = ingest_upload(params, body, self.limits.max_inflated)
        if upload.series:
            await asyncio.wrap_future(self.backend.submit(tenant, [upload]))
        return Response(b"", status_code=200)

    async def _profile_part(self, request: Request, body: bytes) -> bytes:
        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = dict(request.scope)
        scope["headers"] = [
            (k, v) for k, v in request.scope["headers"] if k.lower() != b"content-encoding"
        ]
        replayed = Request(scope, replay)
        try:
            form = await replayed.form(
                max_files=4, max_fields=16, max_part_size=self.limits.max_body
            )
        except Exception as exc:  # python-multipart raises several types on bad input
            raise FormatError(f"bad multipart body: {exc}") from None
        part = form.get("profile")
        if part is None:
            raise FormatError("multipart ingest needs a 'profile' part")
        data = await part.read() if hasattr(part, "read") else str(part).encode()
        await form.close()
        return data

    # ------------------------------------------------------------------------- queries
    def _select(self, tenant: str, query: Query, start: int, end: int) -> List[SeriesInfo]:
        return self.backend.series(tenant, query, start, end)

    def _render_one(
        self, tenant: str, text: str, start: int, end: int
    ) -> Tuple[Query, List[SeriesInfo], Dict[int, int], dict]:
        if end <= start:
            raise FormatError(f"empty time range: from {start} is not before until {end}")
        query = parse_query(text)
        series = self._select(tenant, query, start, end)
        ids = [s.id for s in series]
        values = self.backend.merge(ids, start, end)
        return query, series, values, self._timeline(ids, start, end)

    def _timeline(self, ids: List[int], start: int, end: int) -> dict:
        step = max(10, math.ceil((end - start) / MAX_TIMELINE_POINTS / 10) * 10)
        # Whole minutes or hours let the storage sum rollup rows instead of raw windows.
        for width in (HOUR, MINUTE):
            if step > width:
                step = math.ceil(step / width) * width
                break
        first = start - start % step
        buckets = max(1, math.ceil((end - first) / step))
        samples = [0] * buckets
        for (_sid, b), v in self.backend.totals(ids, first, end, step).items():
            if 0 <= b < buckets:
                samples[b] += v
        return {"startTime": first, "samples": samples, "durationDelta": step}

    @staticmethod
    def _metadata(query: Query, series: List[SeriesInfo], fmt: str) -> dict:
        unit = parse_profile_type(query.profile_type)[2]
        spy = next((s.spy_name for s in series if s.spy_name), "")
        rate = next((s.sample_rate for s in series if s.sample_rate), 0)
        return {
            "format": fmt,
            "name": query.profile_type,
            "spyName": spy,
            "sampleRate": rate,
            "units": unit,
        }

    @staticmethod
    def _max_nodes(request: Request) -> int:
        text = request.query_params.get("maxNodes") or request.query_params.get("max-nodes")
        if not text:
            return DEFAULT_MAX_NODES
        try:
            return max(1, min(int(text), 1_000_000))
        except ValueError:
            raise FormatError(f"maxNodes {text[:20]!r} is not an integer") from None

    @_handled
    async def render(self, request: Request) -> Response:
        tenant = self.tenant(request)
        qp = request.query_params
        text = qp.get("query") or qp.get("name") or ""
        if not text:
            raise FormatError("render needs ?query=<profile type>{labels}")
        start = parse_time(qp.get("from"), "now-1h")
        end = _until(qp.get("until"))
        max_nodes = self._max_nodes(request)

        def work() -> dict:
            query, series, values, timeline = self._render_one(tenant, text, start, end)
            return {
                "version": 1,
                "flamebearer": flamebearer(self.tree(values), max_nodes),
                "metadata": self._metadata(query, series, "single"),
                "timeline": timeline,
            }

        return JSONResponse(await run_in_threadpool(work))

    @_handled
    async def render_diff(self, request: Request) -> Response:
        tenant = self.tenant(request)
        qp = request.query_params
        base = qp.get("query", "")
        lq, rq = qp.get("leftQuery") or base, qp.get("rightQuery") or base
        if not lq or not rq:
            raise FormatError("render-diff needs leftQuery and rightQuery")
        lfrom = parse_time(qp.get("leftFrom") or qp.get("from"), "now-1h")
        luntil = _until(qp.get("leftUntil") or qp.get("until"))
        rfrom = parse_time(qp.get("rightFrom") or qp.get("from"), "now-1h")
        runtil = _until(qp.get("rightUntil") or qp.get("until"))
        max_nodes = self._max_nodes(request)

        def work() -> dict:
            query, lseries, left, ltl = self._render_one(tenant, lq, lfrom, luntil)
            _q, _rs, right, rtl = self._render_one(tenant, rq, rfrom, runtil)
            fb = diff_flamebearer(self.tree(left, right), max_nodes)
            lticks, rticks = fb.pop("leftTicks"), fb.pop("rightTicks")
            return {
                "version": 1,
                "flamebearer": fb,
                "metadata": self._metadata(query, lseries, "double"),
                "leftTicks": lticks,
                "rightTicks": rticks,
                "leftTimeline": ltl,
                "rightTimeline": rtl,
                "timeline": ltl,
            }

        return JSONResponse(await run_in_threadpool(work))

    def _range(self, request: Request, default_from: str = "now-7d") -> Tuple[int, int]:
        qp = request.query_params
        return parse_time(qp.get("from"), default_from), _until(qp.get("until"))

    def _series_for_query(self, tenant: str, text: str, start: int, end: int):
        query = parse_query(text, require_type=False) if text else None
        return self.backend.series(tenant, query, start, end)

    @_handled
    async def label_names(self, request: Request) -> Response:
        tenant = self.tenant(request)
        start, end = self._range(request)
        series = self._series_for_query(tenant, request.query_params.get("query", ""), start, end)
        return JSONResponse(_label_names(series))

    @_handled
    async def label_values(self, request: Request) -> Response:
        tenant = self.tenant(request)
        label = request.query_params.get("label") or request.query_params.get("name") or ""
        if not label:
            raise FormatError("label-values needs ?label=<name>")
        start, end = self._range(request)
        series = self._series_for_query(tenant, request.query_params.get("query", ""), start, end)
        return JSONResponse(_label_values(series, label))

    @_handled
    async def services(self, request: Request) -> Response:
        tenant = self.tenant(request)
        start, end = self._range(request)
        by_service: Dict[str, set] = {}
        for s in self.backend.series(tenant, None, start, end):
            by_service.setdefault(s.labels.get("service_name", ""), set()).add(s.profile_type)
        return JSONResponse(
            [
                {"service_name": name, "profile_types": sorted(types)}
                for name, types in sorted(by_service.items())
            ]
        )

    @_handled
    async def ready(self, request: Request) -> Response:
        return Response(b"ready\n", media_type="text/plain")

    # ------------------------------------------------------------------------- connect querier
    @_handled
    async def querier(self, request: Request) -> Response:
        method = request.path_params["method"]
        handler = _QUERIER.get(method)
        if handler is None:
            raise ApiError(404, "unimplemented", f"querier method {method!r} is not served")
        req_name, fn = handler
        tenant = self.tenant(request)
        ctype = request.headers.get("content-type", connect.PROTO)
        body = await self.body(request)
        req = connect.parse_message(req_name, body, ctype)
        resp = await run_in_threadpool(fn, self, tenant, req)
        return Response(connect.encode(resp, ctype), media_type=ctype.split(";")[0])

    def _q_range(self, req, default_days: int = 7) -> Tuple[int, int]:
        now = int(time.time())
        return ms_to_s(req.start, now - default_days * 86400), ms_to_s(req.end, now) + 1

    def _matched(self, tenant: str, matchers, start: int, end: int) -> List[SeriesInfo]:
        if not matchers:
            return self.backend.series(tenant, None, start, end)
        seen: Dict[int, SeriesInfo] = {}
        for text in matchers:
            q = Query("", parse_selector(text))
            for s in self.backend.series(tenant, q, start, end):
                seen[s.id] = s
        return list(seen.values())

    def q_profile_types(self, tenant: str, req):
        start, end = self._q_range(req)
        out = messages("querier.v1.ProfileTypesResponse")()
        for ptype in sorted(
            {s.profile_type for s in self.backend.series(tenant, None, start, end)}
        ):
            name, stype, sunit, ptype_, punit = parse_profile_type(ptype)
            out.profile_types.add(
                ID=ptype,
                name=name,
                sample_type=stype,
                sample_unit=sunit,
                period_type=ptype_,
                period_unit=punit,
            )
        return out

    def q_label_names(self, tenant: str, req):
        start, end = self._q_range(req)
        out = messages("types.v1.LabelNamesResponse")()
        out.names.extend(_label_names(self._matched(tenant, req.matchers, start, end)))
        return out

    def q_label_values(self, tenant: str, req):
        start, end = self._q_range(req)
        out = messages("types.v1.LabelValuesResponse")()
        series = self._matched(tenant, req.matchers, start, end)
        out.names.extend(_label_values(series, req.name))
        return out

    def q_series(self, tenant: str, req):
        start, end = self._q_range(req)
        out = messages("querier.v1.SeriesResponse")()
        wanted = set(req.label_names)
        seen = set()
        for s in self._matched(tenant, req.matchers, start, end):
            labels = dict(s.labels)
            labels["__profile_type__"] = s.profile_type
            pairs = tuple(sorted((k, v) for k, v in labels.items() if not wanted or k in wanted))
            if pairs in seen:
                continue
            seen.add(pairs)
            ls = out.labels_set.add()
            for k, v in pairs:
                ls.labels.add(name=k, value=v)
        return out

    def _typed(self, tenant: str, req, start: int, end: int) -> Tuple[Query, List[SeriesInfo]]:
        if not req.profile_typeID:
            raise FormatError("profile_typeID is required")
        parse_profile_type(req.profile_typeID)
        query = Query(req.profile_typeID, parse_selector(req.label_selector or "{}"))
        return query, self.backend.series(tenant, query, start, end)

    def q_select_series(self, tenant: str, req):
        start, end = self._q_range(req, 1)
        _query, series = self._typed(tenant, req, start, end)
        step = req.step if math.isfinite(req.step) and req.step > 0 else 15.0
        step = int(min(max(step, 1.0), 365 * 86400))
        groups: Dict[Tuple[Tuple[str, str], ...], List[int]] = {}
        for s in series:
            key = tuple((g, s.labels.get(g, "")) for g in req.group_by)
            groups.setdefault(key, []).append(s.id)
        first = start - start % step
        out = messages("querier.v1.SelectSeriesResponse")()
        for key, ids in sorted(groups.items()):
            sums: Dict[int, int] = {}
            for (_sid, b), v in self.backend.totals(ids, first, end, step).items():
                sums[b] = sums.get(b, 0) + v
            ser = out.series.add()
            for k, v in key:
                ser.labels.add(name=k, value=v)
            for b in sorted(sums):
                ser.points.add(value=float(sums[b]), timestamp=(first + b * step) * 1000)
        return out

    def q_select_merge_stacktraces(self, tenant: str, req):
        start, end = self._q_range(req, 1)
        _query, series = self._typed(tenant, req, start, end)
        values = self.backend.merge([s.id for s in series], start, end)
        fb = flamebearer(self.tree(values), int(req.max_nodes) if req.max_nodes > 0 else 16384)
        out = messages("querier.v1.SelectMergeStacktracesResponse")()
        out.flamegraph.names.extend(fb["names"])
        for level in fb["levels"]:
            out.flamegraph.levels.add().values.extend(level)
        out.flamegraph.total = fb["numTicks"]
        out.flamegraph.max_self = fb["maxSelf"]
        return out

    def q_select_merge_span_profile(self, tenant: str, req):
        # Samples are not stored per span (no span_id labels are kept), so the span flamegraph
        # is empty rather than an error that would break Grafana's trace-to-profile view.
        parse_profile_type(req.profile_typeID or "x:x:x:x:x")
        out = messages("querier.v1.SelectMergeSpanProfileResponse")()
        out.flamegraph.names.append("total")
        out.flamegraph.levels.add().values.extend([0, 0, 0, 0])
        return out

    def q_profile_stats(self, tenant: str, req):
        series = self.backend.series(tenant, None, 0, 2**62)
        out = messages("types.v1.GetProfileStatsResponse")()
        if series:
            out.data_ingested = True
            out.oldest_profile_time = min(s.first_ts for s in series) * 1000
            out.newest_profile_time = (max(s.last_ts for s in series) + 10) * 1000
        return out

    def q_select_merge_profile(self, tenant: str, req):
        start, end = self._q_range(req, 1)
        query, series = self._typed(tenant, req, start, end)
        values = self.backend.merge([s.id for s in series], start, end)
        names = self.backend.stack_names(sorted(values))
        rows = [(names[sid], v) for sid, v in values.items() if v and sid in names]
        return _pprof(query.profile_type, rows, start, end, series)


_QUERIER = {
    "ProfileTypes": ("querier.v1.ProfileTypesRequest", Store.q_profile_types),
    "LabelNames": ("types.v1.LabelNamesRequest", Store.q_label_names),
    "LabelValues": ("types.v1.LabelValuesRequest", Store.q_label_values),
    "Series": ("querier.v1.SeriesRequest", Store.q_series),
    "SelectSeries": ("querier.v1.SelectSeriesRequest", Store.q_select_series),
    "SelectMergeStacktraces": (
        "querier.v1.SelectMergeStacktracesRequest",
        Store.q_select_merge_stacktraces,
    ),
    "SelectMergeProfile": ("querier.v1.SelectMergeProfileRequest", Store.q_select_merge_profile),
    "SelectMergeSpanProfile": (
        "querier.v1.SelectMergeSpanProfileRequest",
        Store.q_select_merge_span_profile,
    ),
    "GetProfileStats": ("types.v1.GetProfileStatsRequest", Store.q_profile_stats),
}


def _until(text: Optional[str]) -> int:
    # ``until`` is inclusive to the second (so ``until=now`` covers a push made this second);
    # ranges are half-open internally.
    return parse_time(text, "now") + 1


def _label_names(series: List[SeriesInfo]) -> List[str]:
    names = set()
    for s in series:
        names.update(k for k in s.labels if not k.startswith("__") or k == "__name__")
    return sorted(names)


def _label_values(series: List[SeriesInfo], label: str) -> List[str]:
    if label == "__profile_type__":
        return sorted({s.profile_type for s in series})
    return sorted({s.labels[label] for s in series if label in s.labels})


def _pprof(ptype: str, rows, start: int, end: int, series: List[SeriesInfo]):
    """A pprof Profile message holding merged stacks (function names only)."""
    _name, stype, sunit, ptype_, punit = parse_profile_type(ptype)
    msg = messages("perftools.profiles.Profile")()
    strings: List[str] = [""]
    index: Dict[str, int] = {"": 0}

    def s(text: str) -> int:
        i = index.get(text)
        if i is None:
            i = index[text] = len(strings)
            strings.append(text)
        return i

    msg.sample_type.add(type=s(stype), unit=s(sunit))
    if ptype_:
        msg.period_type.type = s(ptype_)
        msg.period_type.unit = s(punit)
    rate = next((x.sample_rate for x in series if x.sample_rate), 0)
    if rate and punit == "nanoseconds":
        msg.period = int(1e9 / rate)
    msg.time_nanos = start * 1_000_000_000
    msg.duration_nanos = (end - start) * 1_000_000_000
    func_ids: Dict[str, int] = {}
    for names, value in rows:
        ids = []
        for name in names:
            fid = func_ids.get(name)
            if fid is None:
                fid = func_ids[name] = len(func_ids) + 1
                msg.function.add(id=fid, name=s(name), system_name=s(name))
                msg.location.add(id=fid).line.add(function_id=fid)
            ids.append(fid)
        sample = msg.sample.add()
        sample.location_id.extend(reversed(ids))
        sample.value.append(value)
    msg.string_table.extend(strings)
    return msg


class AuthMiddleware:
    """Requires ``Authorization: Bearer T`` or Basic auth with password (or user) ``T``."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, header: bytes) -> bool:
        scheme, _, cred = header.partition(b" ")
        scheme = scheme.lower()
        cred = cred.strip()
        if scheme == b"bearer":
            return hmac.compare_digest(cred, self.token)
        if scheme == b"basic":
            try:
                user, _, password = base64.b64decode(cred, validate=True).partition(b":")
            except (ValueError, TypeError):
                return False
            return hmac.compare_digest(password, self.token) or (
                not password and hmac.compare_digest(user, self.token)
            )
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/ready":
            await self.app(scope, receive, send)
            return
        header = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                header = v
                break
        if header and self._ok(header):
            await self.app(scope, receive, send)
            return
        resp = error_response(
            401,
            "unauthenticated",
            "missing or wrong token" if header else "this store needs a token",
            headers={"WWW-Authenticate": 'Basic realm="hostprof"'},
        )
        await resp(scope, receive, send)


def _static(folder: Path, name: str) -> Response:
    if not _FILE.match(name):
        return error_response(404, "not_found", f"no file {name!r}")
    path = folder / name
    if not path.is_file():
        return error_response(404, "not_found", f"no file {name!r} in the store UI")
    ctype = _TYPES.get(path.suffix, "application/octet-stream")
    return Response(path.read_bytes(), media_type=ctype, headers={"Cache-Control": "no-cache"})


def create_app(
    backend: Backend,
    token: str = "",
    limits: Optional[Limits] = None,
    decoders: Optional[concurrent.futures.Executor] = None,
):
    """Builds the ASGI application around ``backend`` (see :class:`Store` for the rest)."""
    store = Store(backend, limits, decoders)

    async def index(request: Request) -> Response:
        return _static(UI_DIR, "index.html")

    async def ui_file(request: Request) -> Response:
        return _static(UI_DIR, request.path_params["name"])

    async def asset(request: Request) -> Response:
        return _static(ASSETS_DIR, request.path_params["name"])

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        code = "not_found" if status == 404 else "method_not_allowed"
        return error_response(status, code, f"{request.method} {request.url.path}: {code}")

    routes = [
        Route("/push.v1.PusherService/Push", store.push, methods=["POST"]),
        Route("/ingest", store.ingest, methods=["POST"]),
        Route("/pyroscope/render", store.render, methods=["GET"]),
        Route("/render", store.render, methods=["GET"]),
        Route("/pyroscope/render-diff", store.render_diff, methods=["GET"]),
        Route("/render-diff", store.render_diff, methods=["GET"]),
        Route("/pyroscope/label-names", store.label_names, methods=["GET"]),
        Route("/pyroscope/label-values", store.label_values, methods=["GET"]),
        Route("/api/services", store.services, methods=["GET"]),
        Route("/querier.v1.QuerierService/{method}", store.querier, methods=["POST"]),
        Route("/ready", store.ready, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Route("/ui/assets/{name}", asset, methods=["GET"]),
        Route("/ui/{name}", ui_file, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.store = store
    app = _PushFastPath(app, store)
    if token:
        return AuthMiddleware(app, token)
    return app


class _WriteBridge:
    """Hands the writer thread's results to the event loop with one wake-up per group commit.

    ``asyncio.wrap_future`` wakes the loop once per future (a self-pipe write and read each);
    the writer finishes a whole batch of pushes at once, so their results travel together.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._done: List[Tuple[asyncio.Future, concurrent.futures.Future]] = []

    def wrap(self, fut: concurrent.futures.Future) -> asyncio.Future:
        """An asyncio future that completes like ``fut``."""
        waiter = self.loop.create_future()
        fut.add_done_callback(functools.partial(self._finished, waiter))
        return waiter

    def _finished(self, waiter: asyncio.Future, fut: concurrent.futures.Future) -> None:
        with self._lock:
            first = not self._done
            self._done.append((waiter, fut))
        if first:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for waiter, fut in done:
            if waiter.done():  # the request was cancelled (client went away)
                continue
            exc = fut.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(fut.result())


class _PushFastPath:
    """Sends ``POST /push.v1.PusherService/Push`` straight to its handler.

    Pushes are the one high-rate route; skipping Starlette's routing and middleware stack for
    them saves a noticeable share of the per-push CPU. The handler itself is the same.
    """

    PATH = "/push.v1.PusherService/Push"

    def __init__(self, app, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == self.PATH and scope["method"] == "POST":
            response = await self.store.push(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def json_dumps(value) -> str:
    """Compact JSON (for the CLI)."""
    return json.dumps(value, separators=(",", ":"))
