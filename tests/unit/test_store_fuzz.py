"""Fuzzing the store's decoders and HTTP handlers with hypothesis (10,000 cases in all).

Every input must end in a result or a FormatError (HTTP 400/413): never another exception,
never a 5xx. Valid profiles that take the vectorized pprof path must decode exactly like the
general reader.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import time
import zlib
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from hostprof._errors import FormatError
from hostprof.encoders import folded as folded_encoder
from hostprof.encoders import pprof as pprof_encoder
from hostprof.model import CPU_NS
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import Window
from hostprof.native import _pprofscan as pprofscan
from hostprof.proto import messages
from hostprof.store.backend import SQLiteBackend
from hostprof.store.decode import _fast_pprof
from hostprof.store.decode import _inflate_with
from hostprof.store.decode import _slow_pprof
from hostprof.store.decode import folded_series
from hostprof.store.decode import inflate
from hostprof.store.decode import pprof_series
from hostprof.store.decode import push_request
from hostprof.store.query import CPU_TYPE
from hostprof.store.server import Limits
from hostprof.store.server import create_app

LIMIT = 1 << 20
NOW = time.time()
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def fuzz(n: int) -> settings:
    """Settings for one fuzz target of ``n`` cases (they add up to 10,000)."""
    return settings(FUZZ, max_examples=n)


# ------------------------------------------------------------------------------ strategies
small = st.integers(min_value=0, max_value=12)
ids = st.integers(min_value=0, max_value=2**64 - 1) | small


@st.composite
def pprof_messages(draw) -> bytes:
    """Structurally valid protobuf whose pprof semantics are random (ids, indices, counts)."""
    pb = messages("perftools.profiles.Profile")()
    strings = draw(st.lists(st.text(max_size=8), max_size=8))
    if draw(st.booleans()):
        strings = ["", *strings]
    pb.string_table.extend(strings)
    for _ in range(draw(st.integers(0, 3))):
        pb.sample_type.add(type=draw(small), unit=draw(small))
    if draw(st.booleans()):
        pb.period_type.type, pb.period_type.unit = draw(small), draw(small)
        pb.period = draw(st.integers(-5, 10**9))
    for _ in range(draw(st.integers(0, 6))):
        pb.function.add(id=draw(small), name=draw(small))
    for _ in range(draw(st.integers(0, 6))):
        loc = pb.location.add(id=draw(small), address=draw(st.sampled_from([0, 0, 4096])))
        for _ in range(draw(st.integers(0, 2))):
            loc.line.add(function_id=draw(small), line=draw(small))
    for _ in range(draw(st.integers(0, 8))):
        s = pb.sample.add()
        s.location_id.extend(draw(st.lists(ids, max_size=6)))
        s.value.extend(draw(st.lists(st.integers(-(2**40), 2**40), max_size=3)))
        for _ in range(draw(st.integers(0, 1))):
            s.label.add(key=draw(small), str=draw(small), num=draw(small))
    pb.time_nanos = draw(st.sampled_from([0, int(NOW * 1e9), 2**62]))
    return pb.SerializeToString()


@st.composite
def valid_pprofs(draw) -> bytes:
    """Profiles hostprof's own encoder writes (these take the vectorized path)."""
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=10, unique=True))
    prof = Profile([CPU_NS], CPU_NS, 10_000_000)
    for _ in range(draw(st.integers(1, 12))):
        stack = draw(st.lists(st.sampled_from(names), min_size=1, max_size=8))
        prof.add([Frame(n, "x.py", 1) for n in stack], draw(st.integers(1, 10**6)))
    prof.windows.append(Window(int(NOW) * 10**9, 10**10))
    return pprof_encoder.to_message(prof).SerializeToString()


def mutated(base: st.SearchStrategy) -> st.SearchStrategy:
    @st.composite
    def go(draw) -> bytes:
        data = bytearray(draw(base))
        for _ in range(draw(st.integers(1, 4))):
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.sampled_from(["flip", "cut", "dup"]))
            if op == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del data[i:]
            else:
                data[i:i] = data[i : i + draw(st.integers(1, 8))]
        return bytes(data)

    return go()


def _only_format_errors(fn, *args) -> None:
    with contextlib.suppress(FormatError):
        fn(*args)


def _pprof(data: bytes) -> None:
    pprof_series(data, {"service_name": "f"}, LIMIT, NOW)


# ------------------------------------------------------------------------------ decoders
@fuzz(1500)
@given(st.binary(max_size=400))
def test_pprof_decoder_random_bytes(data: bytes) -> None:
    _only_format_errors(_pprof, data)
    _only_format_errors(_pprof, gzip.compress(data))


@fuzz(2000)
@given(pprof_messages())
def test_pprof_decoder_random_semantics(data: bytes) -> None:
    _only_format_errors(_pprof, data)
    # Whatever the vectorized reader accepts, the general reader reads the same way.
    try:
        fast = _fast_pprof(data)
    except FormatError:
        return
    if fast is not None:
        assert _norm(fast) == _norm(_slow_pprof(data))


def _norm(p):
    out = {}
    for key, (batch, vals) in p.groups.items():
        for i in range(len(batch)):
            k = (key, batch.stack(i))
            out[k] = tuple(a + int(b) for a, b in zip(out.get(k, (0,) * vals.shape[1]), vals[i]))
    return p.types, p.period, out


@fuzz(1000)
@given(valid_pprofs())
def test_vectorized_pprof_path_matches_general_reader(data: bytes) -> None:
    fast = _fast_pprof(data)
    assert fast is not None
    assert _norm(fast) == _norm(_slow_pprof(data))


@fuzz(1500)
@given(mutated(valid_pprofs()))
def test_pprof_decoder_mutated_profiles(data: bytes) -> None:
    _only_format_errors(_pprof, data)


# ------------------------------------------------------------------------------ C pprof reader
# Wire-level messages over pprof's schema: known fields with their own wire type most of the
# time, otherwise another one (an unknown field to protobuf), unknown field numbers, packed and
# unpacked repeated scalars, strings that are not UTF-8. The C reader must agree with the
# general (upb) reader field by field, which random semantics alone do not exercise.
_MSG = {
    "Profile": {
        1: "ValueType",
        2: "Sample",
        3: "Mapping",
        4: "Location",
        5: "Function",
        6: "string",
        9: "int",
        11: "ValueType",
        12: "int",
        13: "ints",
    },
    "ValueType": {1: "int", 2: "int"},
    "Sample": {1: "ints", 2: "ints", 3: "Label"},
    "Label": {1: "int", 2: "int", 3: "int", 4: "int"},
    "Mapping": {1: "int", 2: "int", 5: "int", 7: "int"},
    "Location": {1: "int", 2: "int", 3: "int", 4: "Line", 5: "int"},
    "Line": {1: "int", 2: "int"},
    "Function": {1: "int", 2: "int", 3: "int", 5: "int"},
}


def _varint(v: int) -> bytes:
    v &= 2**64 - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


@st.composite
def _wire_message(draw, kind: str, depth: int = 0) -> bytes:
    fields = _MSG[kind]
    out = bytearray()
    n = draw(st.integers(0, 10 if kind == "Profile" else 4))
    for _ in range(n):
        field = draw(st.sampled_from(sorted(fields)) | st.sampled_from([7, 15, 2000]))
        typ = fields.get(field, "int")
        if typ == "int":
            wire = 0
        elif typ == "ints":
            wire = draw(st.sampled_from([0, 2]))
        else:
            wire = 2
        if draw(st.integers(0, 15)) == 0:
            wire = draw(st.sampled_from([0, 1, 2, 5, 3, 4, 6, 7]))
        out += _varint(field << 3 | wire)
        if wire == 0:
            out += _varint(draw(small | st.integers(-(2**63), 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire == 2:
            if typ == "ints":
                body = b"".join(_varint(v) for v in draw(st.lists(small, max_size=5)))
            elif typ == "string":
                body = draw(st.text(max_size=6).map(str.encode) | st.binary(max_size=4))
            elif typ in _MSG and depth < 3:
                body = draw(_wire_message(typ, depth + 1))
            else:
                body = draw(st.binary(max_size=6))
            out += _varint(len(body)) + body
    return bytes(out)


def _wire_pprof(draw_profile: bytes) -> bytes:
    # Usually a well-formed string table start and one sample type, so that reads go deep.
    head = b"\x32\x00\x32\x03cpu\x0a\x04\x08\x01\x10\x01"
    return head + draw_profile


def _agree(data: bytes) -> None:
    """The C reader (through _fast_pprof) and the general reader agree, or both reject."""
    try:
        scan = pprofscan.scan(data)
    except pprofscan.PprofUnsupported:
        return  # the general reader decides
    except pprofscan.PprofError:
        with pytest.raises(FormatError):
            _slow_pprof(data)
        return
    assert len(scan.offsets) == len(scan) + 1 and scan.offsets[-1] == len(scan.frames)
    assert not len(scan.frames) or int(scan.frames.max()) < len(scan.names)
    assert _norm(_fast_pprof(data)) == _norm(_slow_pprof(data))


@fuzz(1500)
@given(_wire_message("Profile").map(_wire_pprof) | _wire_message("Profile"))
def test_c_pprof_reader_agrees_on_wire_level_variants(data: bytes) -> None:
    _agree(data)


@fuzz(500)
@given(pprof_messages() | mutated(valid_pprofs()) | st.binary(max_size=200))
def test_c_pprof_reader_agrees_or_rejects_cleanly(data: bytes) -> None:
    _agree(data)


def test_c_pprof_reader_hostile_shapes() -> None:
    # Found by the fuzzer: an empty packed value list after an unpacked value is valid.
    _agree(_wire_pprof(b"\x12\x04\x10\x00\x12\x00"))
    # Varint of 11 bytes, a length past the end, a 10-byte varint overflowing 64 bits.
    for data in (
        b"\x48" + b"\xff" * 10 + b"\x01",
        b"\x12\x7f\x00",
        b"\x48" + b"\xff" * 9 + b"\x7f",
    ):
        with pytest.raises((pprofscan.PprofError, pprofscan.PprofUnsupported)):
            pprofscan.scan(data)
    # One location with 2,000 inlined lines, sampled 3,000 times: each stack is capped at
    # MAX_DEPTH frames, so the reader's output stays bounded.
    pb = messages("perftools.profiles.Profile")()
    pb.string_table.extend(["", "cpu", "f"])
    pb.sample_type.add(type=1, unit=1)
    pb.function.add(id=1, name=2)
    loc = pb.location.add(id=1)
    for _ in range(2000):
        loc.line.add(function_id=1)
    for _ in range(3000):
        pb.sample.add(location_id=[1], value=[1])
    scan = pprofscan.scan(pb.SerializeToString())
    assert len(scan) == 3000 and len(scan.frames) == 3000 * pprofscan.MAX_DEPTH
    # Sparse ids are valid pprof that the general reader handles.
    pb = messages("perftools.profiles.Profile")()
    pb.string_table.extend(["", "cpu", "f"])
    pb.sample_type.add(type=1, unit=1)
    pb.function.add(id=2**60, name=2)
    pb.location.add(id=1).line.add(function_id=2**60)
    pb.sample.add(location_id=[1], value=[4])
    data = pb.SerializeToString()
    with pytest.raises(pprofscan.PprofUnsupported):
        pprofscan.scan(data)
    assert _fast_pprof(data) is None
    ((batch, vals),) = _slow_pprof(data).groups.values()
    assert batch.stack(0) == ("f",) and vals.tolist() == [[4]]


@fuzz(500)
@given(mutated(st.binary(max_size=300).map(gzip.compress)))
def test_inflate_agrees_with_zlib_on_broken_gzip(data: bytes) -> None:
    # inflate() uses ISA-L where installed; its answers must be zlib's, broken streams included.
    def with_zlib() -> bytes:
        if data[:2] != b"\x1f\x8b":
            return data
        return _inflate_with(zlib, data, LIMIT)[0]

    results = []
    for fn in (lambda: inflate(data, LIMIT), with_zlib):
        try:
            results.append(fn())
        except FormatError as exc:
            results.append(type(exc))
    assert results[0] == results[1]


@fuzz(1000)
@given(st.binary(max_size=300) | mutated(st.builds(lambda: _push_body())))
def test_push_decoder(data: bytes) -> None:
    _only_format_errors(push_request, data, "application/proto", LIMIT, NOW)


@fuzz(500)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["series", "labels", "samples", "rawProfile", "ID", "name", "value"]
                ),
                c,
                max_size=3,
            )
        ),
        max_leaves=12,
    )
)
def test_push_decoder_json(value) -> None:
    _only_format_errors(push_request, json.dumps(value).encode(), "application/json", LIMIT, NOW)


@fuzz(1000)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_folded_decoders(data: bytes) -> None:
    _only_format_errors(folded_series, data, {"service_name": "f"}, CPU_TYPE, int(NOW), 1e7)
    _only_format_errors(folded_encoder.read, data)


def _push_body() -> bytes:
    prof = Profile([CPU_NS], CPU_NS, 10_000_000)
    prof.add([Frame("a", "a.py", 1), Frame("b", "a.py", 2)], 5)
    req = messages("push.v1.PushRequest")()
    s = req.series.add()
    s.labels.add(name="service_name", value="fz")
    s.samples.add(raw_profile=pprof_encoder.encode(prof), ID="x")
    return req.SerializeToString()


# ------------------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    backend = SQLiteBackend(Path(tmp_path_factory.mktemp("fuzz")) / "s.db")
    app = create_app(backend, limits=Limits(max_body=64 * 1024, max_inflated=256 * 1024))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    backend.close()


@fuzz(1500)
@given(
    path=st.sampled_from(
        [
            "/push.v1.PusherService/Push",
            "/ingest",
            "/pyroscope/render",
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            "/querier.v1.QuerierService/LabelValues",
            "/pyroscope/render-diff",
            "/pyroscope/label-values",
        ]
    ),
    body=st.binary(max_size=200) | mutated(st.builds(lambda: _push_body())),
    params=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "query",
                "from",
                "until",
                "format",
                "sampleRate",
                "label",
                "leftQuery",
                "maxNodes",
            ]
        ),
        st.text(max_size=30) | st.sampled_from(["now-1h", CPU_TYPE + "{}", "pprof", "a.cpu"]),
        max_size=4,
    ),
    ctype=st.sampled_from(
        ["application/proto", "application/json", "multipart/form-data", "text/plain"]
    ),
    gz=st.booleans(),
)
def test_http_never_5xx(client: TestClient, path, body, params, ctype, gz) -> None:
    headers = {"Content-Type": ctype}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if path.startswith("/pyroscope"):
        r = client.get(path, params=params)
    else:
        r = client.post(path, params=params, content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        err = r.json()
        assert set(err) == {"code", "message"}
