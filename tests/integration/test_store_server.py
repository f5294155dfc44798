"""The store as a real server process, driven by real clients.

Clients: the pyroscope-io SDK profiling a script, a hostprof-built connect PushRequest, the
legacy /ingest (folded, raw/gzipped/multipart pprof), and the connect querier API. Also: auth,
size limits (gzip bombs), malformed input, tenant separation and kill -9 durability.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional

import httpx
import pytest

from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import Window
from hostprof.proto import messages

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``hostprof store serve`` subprocess."""

    def __init__(self, data: Path, *args: str, port: Optional[int] = None) -> None:
        self.data = data
        self.args = args
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hostprof",
                "store",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data",
                str(self.data),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"store exited with {self.proc.returncode}: {out}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("store did not become ready in 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(data: Path, *args: str) -> Iterator[Server]:
    server = Server(data, *args).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("store")) as server:
        yield server


def render(server: Server, query: str, tenant: str = "", **params) -> dict:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    params.setdefault("from", "now-1h")
    r = httpx.get(
        f"{server.url}/pyroscope/render",
        params={"query": query, **params},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def folded_of(fb: dict) -> Dict[str, int]:
    """Decodes a flamebearer back into {stack: self} to check it independently."""
    names, levels = fb["names"], fb["levels"]
    spans: List[List[tuple]] = []
    for level in levels:
        x = 0
        row = []
        for i in range(0, len(level), 4):
            x += level[i]
            row.append((x, x + level[i + 1], level[i + 2], names[level[i + 3]]))
            x += level[i + 1]
        spans.append(row)
    out: Dict[str, int] = {}

    def walk(depth: int, lo: int, hi: int, path: List[str]) -> None:
        for a, b, self_v, name in spans[depth] if depth < len(spans) else []:
            if a >= lo and b <= hi and b > a:
                p = [*path, name]
                if self_v:
                    out[";".join(p[1:])] = self_v
                walk(depth + 1, a, b, p)

    walk(0, 0, fb["numTicks"], [])
    return out


def make_profile(stacks: Dict[str, int], start_s: int) -> Profile:
    prof = Profile([CPU_NS], CPU_NS, 10_000_000)
    for text, value in stacks.items():
        prof.add([Frame(name, "app.py", 1) for name in text.split(";")], value)
    prof.windows.append(Window(start_s * 1_000_000_000, 10_000_000_000))
    return prof


def push_request(series: List[tuple]) -> bytes:
    """series: [(labels dict, [(raw_profile bytes, id)])]"""
    req = messages("push.v1.PushRequest")()
    for labels, samples in series:
        s = req.series.add()
        for k, v in labels.items():
            s.labels.add(name=k, value=v)
        for raw, sid in samples:
            s.samples.add(raw_profile=raw, ID=sid)
    return req.SerializeToString()


def post_push(server: Server, body: bytes, tenant: str = "", gz: bool = True, **headers):
    h = {"Content-Type": "application/proto", **headers}
    if tenant:
        h["X-Scope-OrgID"] = tenant
    if gz:
        body = gzip.compress(body)
        h["Content-Encoding"] = "gzip"
    return httpx.post(
        f"{server.url}/push.v1.PusherService/Push", content=body, headers=h, timeout=30
    )


# ---------------------------------------------------------------------------------- SDK
SDK_SCRIPT = textwrap.dedent(
    """
    import sys, time, pyroscope
    pyroscope.configure(application_name="sdk-demo", server_address=sys.argv[1],
                        tags={"region": "eu"}, upload_interval=2)
    def crunch_numbers_leaf(n):
        s = 0
        for i in range(n):
            s += i * i
        return s
    def crunch_numbers_outer(n):
        return sum(crunch_numbers_leaf(2000) for _ in range(n))
    t = time.time()
    while time.time() - t < float(sys.argv[2]):
        crunch_numbers_outer(20)
    pyroscope.shutdown()
    print("DONE", flush=True)
    """
)


def test_pyroscope_sdk_profiles_a_script(store: Server, tmp_path: Path) -> None:
    # GIVEN a script profiled by the real pyroscope-io SDK, pushing to the store
    script = tmp_path / "sdk_target.py"
    script.write_text(SDK_SCRIPT)
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, str(script), store.url, "4"], capture_output=True, timeout=60, text=True
    )
    elapsed = time.time() - t0
    assert "DONE" in out.stdout, out.stderr
    # WHEN the store renders the service's CPU profile
    fb = render(store, f'{CPU}{{service_name="sdk-demo"}}', **{"from": "now-10m"})
    # THEN the script's functions are in it, with a total close to the CPU time it burned
    names = fb["flamebearer"]["names"]
    assert "crunch_numbers_leaf" in names and "crunch_numbers_outer" in names
    total_s = fb["flamebearer"]["numTicks"] / 1e9
    assert 2.0 <= total_s <= elapsed + 1, (total_s, elapsed)
    stacks = folded_of(fb["flamebearer"])
    leaf = sum(v for k, v in stacks.items() if k.endswith("crunch_numbers_leaf"))
    assert leaf / fb["flamebearer"]["numTicks"] > 0.5
    assert fb["metadata"]["units"] == "nanoseconds" and fb["metadata"]["sampleRate"] == 100
    assert sum(fb["timeline"]["samples"]) == fb["flamebearer"]["numTicks"]
    # and the SDK's labels became series labels
    values = httpx.get(f"{store.url}/pyroscope/label-values", params={"label": "region"}).json()
    assert "eu" in values
    services = httpx.get(f"{store.url}/api/services").json()
    assert {"service_name": "sdk-demo", "profile_types": [CPU]} in services


# ---------------------------------------------------------------------------------- push
def test_hostprof_push_renders_exact_values(store: Server) -> None:
    # GIVEN a profile built with hostprof's model and pprof encoder, sent as a PushRequest
    now = int(time.time())
    stacks = {"main;handle_request;parse_json": 300, "main;handle_request": 100, "main;idle": 50}
    raw = pprof.encode(make_profile(stacks, now))
    labels = {"__name__": "process_cpu", "service_name": "push-demo", "host": "h1"}
    sid = str(uuid.uuid4())
    r = post_push(store, push_request([(labels, [(raw, sid)])]))
    assert r.status_code == 200, r.text
    # WHEN the agent retries the same sample (same ID), and another window arrives
    assert post_push(store, push_request([(labels, [(raw, sid)])])).status_code == 200
    raw2 = pprof.encode(make_profile({"main;idle": 7}, now - 20))
    assert post_push(store, push_request([(labels, [(raw2, "")])]), gz=False).status_code == 200
    # THEN the render holds each stack once, plus the second window
    fb = render(store, f'{CPU}{{service_name="push-demo",host="h1"}}', **{"from": "now-5m"})
    got = folded_of(fb["flamebearer"])
    assert got == {
        "main;handle_request;parse_json": 300,
        "main;handle_request": 100,
        "main;idle": 57,
    }
    assert fb["flamebearer"]["numTicks"] == 457
    # and a matcher that excludes the host finds nothing
    empty = render(store, f'{CPU}{{service_name="push-demo",host!="h1"}}')
    assert empty["flamebearer"]["numTicks"] == 0


def test_push_json_encoding(store: Server) -> None:
    now = int(time.time())
    raw = pprof.encode(make_profile({"json_main;json_work": 42}, now))
    body = {
        "series": [
            {
                "labels": [
                    {"name": "service_name", "value": "json-demo"},
                    {"name": "__name__", "value": "process_cpu"},
                ],
                "samples": [{"rawProfile": base64.b64encode(raw).decode(), "ID": "j1"}],
            }
        ]
    }
    r = httpx.post(f"{store.url}/push.v1.PusherService/Push", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    fb = render(store, f'{CPU}{{service_name="json-demo"}}')
    assert folded_of(fb["flamebearer"]) == {"json_main;json_work": 42}


# ---------------------------------------------------------------------------------- ingest
def test_folded_ingest(store: Server) -> None:
    now = int(time.time())
    body = b"main;serve;render_page 30\nmain;serve 10\nmain;gc 5\n"
    r = httpx.post(
        f"{store.url}/ingest",
        content=body,
        timeout=30,
        params={
            "name": "legacy-app.cpu{env=prod}",
            "from": now,
            "until": now + 10,
            "sampleRate": 100,
            "spyName": "pyspy",
        },
    )
    assert r.status_code == 200, r.text
    fb = render(store, f'{CPU}{{service_name="legacy-app",env="prod"}}')
    # 100 Hz samples are stored as CPU nanoseconds, as Pyroscope does
    assert folded_of(fb["flamebearer"]) == {
        "main;serve;render_page": 300_000_000,
        "main;serve": 100_000_000,
        "main;gc": 50_000_000,
    }
    assert fb["metadata"]["spyName"] == "pyspy"
    # the legacy query form names the same data
    legacy = render(store, "legacy-app.cpu")
    assert legacy["flamebearer"]["numTicks"] == 450_000_000


@pytest.mark.parametrize("how", ["raw", "gzip", "multipart"])
def test_pprof_ingest(store: Server, how: str) -> None:
    now = int(time.time())
    service = f"pprof-{how}"
    prof = make_profile({"a;b": 11, "a;c": 22}, now)
    gz = pprof.encode(prof)
    params = {"name": f"{service}.cpu", "from": now, "format": "pprof"}
    if how == "raw":
        r = httpx.post(
            f"{store.url}/ingest",
            params=params,
            timeout=30,
            content=pprof.to_message(prof).SerializeToString(),
        )
    elif how == "gzip":
        r = httpx.post(f"{store.url}/ingest", params=params, content=gz, timeout=30)
    else:
        r = httpx.post(
            f"{store.url}/ingest",
            params=params,
            timeout=30,
            files={"profile": ("profile.pprof", gz, "application/octet-stream")},
        )
    assert r.status_code == 200, r.text
    fb = render(store, f'{CPU}{{service_name="{service}"}}')
    assert folded_of(fb["flamebearer"]) == {"a;b": 11, "a;c": 22}


# ---------------------------------------------------------------------------------- querier
def _connect(server: Server, method: str, req, resp_name: str, tenant: str = ""):
    h = {"Content-Type": "application/proto"}
    if tenant:
        h["X-Scope-OrgID"] = tenant
    r = httpx.post(
        f"{server.url}/querier.v1.QuerierService/{method}",
        timeout=30,
        content=req.SerializeToString(),
        headers=h,
    )
    assert r.status_code == 200, r.text
    return messages(resp_name).FromString(r.content)


def test_connect_querier_methods(store: Server, tmp_path: Path) -> None:
    # GIVEN two services pushed over the protocol
    now = int(time.time())
    for svc, stacks in (("q-one", {"m;x": 5, "m;y": 3}), ("q-two", {"m;x": 4})):
        raw = pprof.encode(make_profile(stacks, now - 30))
        r = post_push(
            store,
            push_request(
                [({"__name__": "process_cpu", "service_name": svc, "zone": "z1"}, [(raw, "")])]
            ),
            tenant="querier",
        )
        assert r.status_code == 200, r.text
    start_ms, end_ms = (now - 600) * 1000, (now + 1) * 1000
    # ProfileTypes
    req = messages("querier.v1.ProfileTypesRequest")(start=start_ms, end=end_ms)
    pt = _connect(store, "ProfileTypes", req, "querier.v1.ProfileTypesResponse", "querier")
    assert [p.ID for p in pt.profile_types] == [CPU]
    assert pt.profile_types[0].sample_unit == "nanoseconds"
    # LabelNames / LabelValues with a Grafana-style __profile_type__ matcher
    req = messages("types.v1.LabelNamesRequest")(
        matchers=[f'{{__profile_type__="{CPU}"}}'], start=start_ms, end=end_ms
    )
    ln = _connect(store, "LabelNames", req, "types.v1.LabelNamesResponse", "querier")
    assert {"service_name", "zone", "__name__"} <= set(ln.names)
    req = messages("types.v1.LabelValuesRequest")(name="service_name", start=start_ms, end=end_ms)
    lv = _connect(store, "LabelValues", req, "types.v1.LabelValuesResponse", "querier")
    assert list(lv.names) == ["q-one", "q-two"]
    # Series
    req = messages("querier.v1.SeriesRequest")(
        matchers=['{service_name="q-two"}'], start=start_ms, end=end_ms
    )
    sr = _connect(store, "Series", req, "querier.v1.SeriesResponse", "querier")
    assert len(sr.labels_set) == 1
    assert {"name": "zone", "value": "z1"} in [
        {"name": lp.name, "value": lp.value} for lp in sr.labels_set[0].labels
    ]
    # SelectMergeStacktraces over both services
    req = messages("querier.v1.SelectMergeStacktracesRequest")(
        profile_typeID=CPU, label_selector='{zone="z1"}', start=start_ms, end=end_ms
    )
    fg = _connect(
        store, "SelectMergeStacktraces", req, "querier.v1.SelectMergeStacktracesResponse", "querier"
    ).flamegraph
    assert fg.total == 12
    fb = {
        "names": list(fg.names),
        "levels": [list(lv.values) for lv in fg.levels],
        "numTicks": fg.total,
    }
    assert folded_of(fb) == {"m;x": 9, "m;y": 3}
    # SelectSeries grouped by service
    req = messages("querier.v1.SelectSeriesRequest")(
        profile_typeID=CPU,
        label_selector="{}",
        start=start_ms,
        end=end_ms,
        group_by=["service_name"],
        step=60,
    )
    ss = _connect(store, "SelectSeries", req, "querier.v1.SelectSeriesResponse", "querier")
    totals = {s.labels[0].value: sum(p.value for p in s.points) for s in ss.series}
    assert totals == {"q-one": 8.0, "q-two": 4.0}
    # SelectMergeProfile returns a pprof that hostprof's own decoder reads back
    req = messages("querier.v1.SelectMergeProfileRequest")(
        profile_typeID=CPU, label_selector='{service_name="q-one"}', start=start_ms, end=end_ms
    )
    prof = _connect(store, "SelectMergeProfile", req, "perftools.profiles.Profile", "querier")
    back = pprof.from_message(prof)
    assert {";".join(f.function for f in st): v[0] for (st, _l), v in back.to_dict().items()} == {
        "m;x": 5,
        "m;y": 3,
    }
    go = os.environ.get("GO") or "go"
    if subprocess.run(["which", go], capture_output=True).returncode == 0:
        path = tmp_path / "merged.pb"
        path.write_bytes(prof.SerializeToString())
        top = subprocess.run(
            [go, "tool", "pprof", "-top", str(path)], capture_output=True, text=True, timeout=120
        )
        assert top.returncode == 0, top.stderr
        assert " x" in top.stdout or "x\n" in top.stdout
    # GetProfileStats and (span-less) SelectMergeSpanProfile, which Grafana also calls
    stats = _connect(
        store,
        "GetProfileStats",
        messages("types.v1.GetProfileStatsRequest")(),
        "types.v1.GetProfileStatsResponse",
        "querier",
    )
    assert stats.data_ingested
    assert stats.oldest_profile_time <= (now - 30) * 1000 < stats.newest_profile_time
    req = messages("querier.v1.SelectMergeSpanProfileRequest")(
        profile_typeID=CPU,
        label_selector="{}",
        span_selector=["9a517183f26a089d"],
        start=start_ms,
        end=end_ms,
    )
    span = _connect(
        store, "SelectMergeSpanProfile", req, "querier.v1.SelectMergeSpanProfileResponse", "querier"
    )
    assert span.flamegraph.total == 0
    # JSON encoding of the same API (what the web UI uses for ProfileTypes)
    r = httpx.post(
        f"{store.url}/querier.v1.QuerierService/ProfileTypes",
        json={},
        headers={"X-Scope-OrgID": "querier"},
    )
    assert r.status_code == 200
    assert r.json()["profileTypes"][0]["ID"] == CPU
    assert r.json()["profileTypes"][0]["sampleType"] == "cpu"


def test_render_diff(store: Server) -> None:
    now = int(time.time())
    for ts, stacks in ((now - 200, {"d;slow": 10, "d;fast": 10}), (now - 50, {"d;slow": 30})):
        raw = pprof.encode(make_profile(stacks, ts))
        post_push(store, push_request([({"service_name": "diff-demo"}, [(raw, "")])]))
    q = f'{CPU}{{service_name="diff-demo"}}'
    r = httpx.get(
        f"{store.url}/pyroscope/render-diff",
        params={
            "leftQuery": q,
            "leftFrom": now - 300,
            "leftUntil": now - 100,
            "rightQuery": q,
            "rightFrom": now - 100,
            "rightUntil": now,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["leftTicks"] == 20 and body["rightTicks"] == 30
    fb = body["flamebearer"]
    assert fb["numTicks"] == 50
    names = fb["names"]
    nodes = {names[lv[i + 6]]: lv[i : i + 6] for lv in fb["levels"] for i in range(0, len(lv), 7)}
    assert nodes["slow"][1] == 10 and nodes["slow"][4] == 30
    assert nodes["fast"][1] == 10 and nodes["fast"][4] == 0


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "path,params,body,headers",
    [
        (
            "/push.v1.PusherService/Push",
            {},
            b"\xff\xff\xff\xff",
            {"Content-Type": "application/proto"},
        ),
        (
            "/push.v1.PusherService/Push",
            {},
            push_request([({"service_name": "x"}, [(b"\x0a\xff", "")])]),
            {},
        ),
        ("/push.v1.PusherService/Push", {}, b"{not json", {"Content-Type": "application/json"}),
        ("/push.v1.PusherService/Push", {}, b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}),
        ("/ingest", {"name": "bad.cpu"}, b"no count here\n", {}),
        ("/ingest", {"name": "bad.cpu"}, b"\xff\xfe;\x00 12\n", {}),
        ("/ingest", {"name": "bad.cpu", "format": "pprof"}, b"not a pprof", {}),
        ("/ingest", {}, b"a;b 1\n", {}),
        ("/ingest", {"name": "bad.cpu", "format": "jfr"}, b"a;b 1\n", {}),
        ("/ingest", {"name": "bad.cpu", "from": "yesterday"}, b"a;b 1\n", {}),
        ("/ingest", {"name": "bad.cpu", "from": str(10**11)}, b"a;b 1\n", {}),
    ],
)
def test_malformed_input_gets_400_json(store: Server, path, params, body, headers) -> None:
    r = httpx.post(f"{store.url}{path}", params=params, content=body, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()
    assert set(err) == {"code", "message"} and err["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"query": "nonsense{"},
        {"query": f'{CPU}{{a=~"("}}'},
        {"query": CPU, "from": "soon"},
        {"query": 'a:b{x="1"}'},
        {},
    ],
)
def test_bad_queries_get_400(store: Server, params) -> None:
    r = httpx.get(f"{store.url}/pyroscope/render", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_argument"


def test_unknown_route_is_json_404(store: Server) -> None:
    r = httpx.get(f"{store.url}/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = httpx.get(f"{store.url}/ui/..%2Fserver.py")
    assert r.status_code == 404


def test_static_files(store: Server) -> None:
    # the flamegraph renderer shared with the HTML encoder is served from /ui/assets/
    assets = Path(pprof.__file__).parent / "assets"
    for path in sorted(assets.glob("*.js"))[:2]:
        r = httpx.get(f"{store.url}/ui/assets/{path.name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.content == path.read_bytes()
    ui = Path(pprof.__file__).parent.parent / "store" / "ui"
    r = httpx.get(f"{store.url}/")
    if (ui / "index.html").exists():
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    else:
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert httpx.get(f"{store.url}/ui/.hidden").status_code == 404


def test_size_limits_and_gzip_bombs(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--max-body", "1M", "--max-inflated", "4M") as server:
        bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KiB
        assert len(bomb) < 1024 * 1024
        # a gzip bomb as the HTTP body
        r = post_push(server, bomb, gz=False, **{"Content-Encoding": "gzip"})
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "payload_too_large"
        # a gzip bomb inside a push's raw_profile
        r = post_push(server, push_request([({"service_name": "b"}, [(bomb, "")])]), gz=False)
        assert r.status_code == 413, r.text
        # a gzip bomb as an /ingest pprof body
        r = httpx.post(
            f"{server.url}/ingest", params={"name": "b.cpu", "format": "pprof"}, content=bomb
        )
        assert r.status_code == 413, r.text
        # a body over the cap, with and without Content-Length
        big = os.urandom(2 * 1024 * 1024)
        r = httpx.post(f"{server.url}/ingest", params={"name": "b.cpu"}, content=big)
        assert r.status_code == 413
        r = httpx.post(
            f"{server.url}/ingest",
            params={"name": "b.cpu"},
            content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
        )
        assert r.status_code == 413
        # and the server is still fine afterwards
        r = httpx.post(f"{server.url}/ingest", params={"name": "ok.cpu"}, content=b"a;b 3\n")
        assert r.status_code == 200


# ---------------------------------------------------------------------------------- auth
def test_token_auth(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--token", "s3cret") as server:
        url = f"{server.url}/pyroscope/label-names"
        r = httpx.get(url)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert r.json()["code"] == "unauthenticated"
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, auth=("user", "wrong")).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url, auth=("anyone", "s3cret")).status_code == 200
        # pushes need it too
        raw = pprof.encode(make_profile({"a": 1}, int(time.time())))
        body = push_request([({"service_name": "auth"}, [(raw, "")])])
        assert post_push(server, body).status_code == 401
        assert post_push(server, body, Authorization="Bearer s3cret").status_code == 200
        # the pyroscope SDK with basic auth lands data
        script = tmp_path / "sdk.py"
        script.write_text(
            SDK_SCRIPT.replace(
                "upload_interval=2)",
                "upload_interval=2, basic_auth_username='u', basic_auth_password='s3cret')",
            )
        )
        subprocess.run(
            [sys.executable, str(script), server.url, "2.5"], timeout=60, capture_output=True
        )
        r = httpx.get(
            f"{server.url}/pyroscope/render",
            auth=("u", "s3cret"),
            params={"query": f'{CPU}{{service_name="sdk-demo"}}'},
        )
        assert r.status_code == 200
        assert "crunch_numbers_leaf" in r.json()["flamebearer"]["names"]


def test_non_loopback_listen_needs_token(tmp_path: Path) -> None:
    port = _free_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostprof",
            "store",
            "serve",
            "--listen",
            f"0.0.0.0:{port}",
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "without a token" in out.stderr and "Traceback" not in out.stderr
    # --insecure starts it anyway (and it really listens on every address)
    server = Server(tmp_path, port=port)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hostprof",
            "store",
            "serve",
            "--listen",
            f"0.0.0.0:{port}",
            "--data",
            str(tmp_path),
            "--insecure",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"{server.url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.05)
        assert ready, "--insecure store did not start"
    finally:
        proc.terminate()
        proc.wait(15)


# ---------------------------------------------------------------------------------- tenants
def test_tenants_are_separated(store: Server) -> None:
    now = int(time.time())
    for tenant, stacks in (("team-a", {"a_only": 5}), ("team-b", {"b_only": 7})):
        raw = pprof.encode(make_profile(stacks, now))
        body = push_request([({"service_name": "shared-name"}, [(raw, "same-id")])])
        assert post_push(store, body, tenant=tenant).status_code == 200
    q = f'{CPU}{{service_name="shared-name"}}'
    a = render(store, q, tenant="team-a")["flamebearer"]
    b = render(store, q, tenant="team-b")["flamebearer"]
    anon = render(store, q)["flamebearer"]
    assert folded_of(a) == {"a_only": 5}
    assert folded_of(b) == {"b_only": 7}  # same sample ID in another tenant is not a duplicate
    assert anon["numTicks"] == 0
    services = httpx.get(f"{store.url}/api/services", headers={"X-Scope-OrgID": "team-b"}).json()
    assert [s["service_name"] for s in services] == ["shared-name"]
    r = httpx.get(f"{store.url}/api/services", headers={"X-Scope-OrgID": "bad tenant/x"})
    assert r.status_code == 400


# ---------------------------------------------------------------------------------- kill -9
def test_survives_kill_9(tmp_path: Path) -> None:
    # GIVEN a store receiving pushes from several threads
    data = tmp_path / "d"
    server = Server(data).start()
    acked: List[int] = []
    attempted: List[int] = []
    stop = threading.Event()
    now = int(time.time())

    def pusher(worker: int) -> None:
        client = httpx.Client(timeout=10)
        i = 0
        while not stop.is_set():
            value = worker * 1000 + i + 1
            raw = pprof.encode(make_profile({f"w{worker};step": value}, now - i % 300))
            body = push_request([({"service_name": "crash"}, [(raw, f"{worker}-{i}")])])
            attempted.append(value)
            try:
                r = client.post(
                    f"{server.url}/push.v1.PusherService/Push",
                    content=body,
                    headers={"Content-Type": "application/proto"},
                )
            except httpx.HTTPError:
                break
            if r.status_code == 200:
                acked.append(value)
            i += 1

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    # WHEN the server is killed with SIGKILL mid-stream
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 200
    # THEN the database is intact and every acknowledged push is in it
    with sqlite3.connect(data / "store.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with running(data) as again:
        fb = render(again, f'{CPU}{{service_name="crash"}}', **{"from": "now-1h"})
        total = fb["flamebearer"]["numTicks"]
        assert total >= sum(acked)
        # beyond that, only pushes in flight at the kill (one per thread) may have landed
        in_flight = sorted(set(attempted) - set(acked))
        assert len(in_flight) <= 4
        assert total - sum(acked) in {sum(c) for c in _subsets(in_flight)}
        # and the restarted store keeps accepting data
        raw = pprof.encode(make_profile({"after;restart": 1}, int(time.time())))
        assert (
            post_push(again, push_request([({"service_name": "crash"}, [(raw, "")])])).status_code
            == 200
        )


def _subsets(items: List[int]) -> List[List[int]]:
    out: List[List[int]] = [[]]
    for item in items:
        out += [[*c, item] for c in out]
    return out


# ---------------------------------------------------------------------------------- agent sinks
def test_hostprof_agent_sinks_land_and_render(store: Server) -> None:
    """The daemon's own push code (connect and legacy ingest sinks) against the store."""
    from types import SimpleNamespace

    from hostprof.push import PushBatch
    from hostprof.push import Series
    from hostprof.push.connect import ConnectSink
    from hostprof.push.ingest import IngestSink

    cfg = SimpleNamespace(
        url=store.url,
        basic_user="",
        basic_password="",
        bearer_token="",
        tenant="agents",
        headers=(),
    )
    now = int(time.time())
    for sink, service in ((ConnectSink(cfg), "sink-connect"), (IngestSink(cfg), "sink-ingest")):
        raw = pprof.to_message(make_profile({"loop;tick": 70, "loop": 30}, now)).SerializeToString()
        labels = (("__name__", "process_cpu"), ("hostname", "h9"), ("service_name", service))
        batch = PushBatch(
            f"b-{service}", now * 10**9, 10 * 10**9, (Series(labels, raw, f"id-{service}"),)
        )
        sink.send(batch, timeout=30)
        if isinstance(sink, ConnectSink):
            sink.send(batch, timeout=30)  # a retry: the store drops it by sample ID
        sink.close()
        fb = render(store, f'{CPU}{{service_name="{service}",hostname="h9"}}', tenant="agents")
        assert folded_of(fb["flamebearer"]) == {"loop;tick": 70, "loop": 30}, service


def test_decoder_processes(tmp_path: Path) -> None:
    import psutil

    with running(tmp_path / "d", "--decode-workers", "2") as server:
        workers = psutil.Process(server.proc.pid).children(recursive=True)
        assert len(workers) >= 2
        now = int(time.time())
        for i in range(20):
            raw = pprof.encode(make_profile({f"pool;f{i % 3}": 10}, now - i))
            body = push_request([({"service_name": "pool"}, [(raw, f"p{i}")])])
            assert post_push(server, body).status_code == 200
        bad = post_push(
            server, push_request([({"service_name": "pool"}, [(b"\x0a\xff" * 400, "")])])
        )
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
        fb = render(server, f'{CPU}{{service_name="pool"}}')
        assert fb["flamebearer"]["numTicks"] == 200
        assert folded_of(fb["flamebearer"]) == {"pool;f0": 70, "pool;f1": 70, "pool;f2": 60}
        # a killed server leaves no decoder processes behind
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        _gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, alive


def test_cli_ls_and_query(store: Server, tmp_path: Path) -> None:
    now = int(time.time())
    httpx.post(
        f"{store.url}/ingest",
        content=b"cli;main 4\ncli;other 1\n",
        params={"name": "cli-svc.cpu", "from": now},
    )
    env = {**os.environ, "HOSTPROF_STORE_DATA": str(store.data)}
    ls = subprocess.run(
        [sys.executable, "-m", "hostprof", "store", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ls.returncode == 0, ls.stderr
    assert "cli-svc" in ls.stdout and CPU in ls.stdout
    q = subprocess.run(
        [
            sys.executable,
            "-m",
            "hostprof",
            "store",
            "query",
            f'{CPU}{{service_name="cli-svc"}}',
            "--from",
            "now-10m",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines() == ["cli;main 40000000", "cli;other 10000000"]
    bad = subprocess.run(
        [sys.executable, "-m", "hostprof", "store", "query", "nope{", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_huge_ranges_and_odd_numbers_stay_cheap(store: Server) -> None:
    t0 = time.monotonic()
    r = httpx.get(
        f"{store.url}/pyroscope/render",
        params={"query": CPU, "from": "0", "until": str(10**16)},
        timeout=30,
    )
    assert r.status_code == 200 and len(r.json()["timeline"]["samples"]) <= 1500
    for step in ("Infinity", "NaN", -5, 1e-9):
        r = httpx.post(
            f"{store.url}/querier.v1.QuerierService/SelectSeries",
            timeout=30,
            json={
                "profileTypeID": CPU,
                "labelSelector": "{}",
                "start": "0",
                "end": str(10**15),
                "step": step,
            },
        )
        assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 20
