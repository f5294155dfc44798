"""Push sinks over real HTTP: connect push, legacy ingest, the file sink, error mapping."""

from __future__ import annotations

import gzip
import http.server
import threading
import urllib.parse
from pathlib import Path
from typing import List
from typing import Tuple

import pytest

from hostprof.config import from_toml
from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.proto import messages
from hostprof.push import PushBatch
from hostprof.push import PushError
from hostprof.push import Series
from hostprof.push import make_sink


class _Server:
    def __init__(self, status: int = 200) -> None:
        self.requests: List[Tuple[str, dict, bytes]] = []
        self.status = status
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _batch() -> PushBatch:
    p = Profile([CPU_NS])
    p.add([Frame("main", "app.py", 1), Frame("work", "app.py", 5)], 10_000_000)
    raw = pprof.to_message(p).SerializeToString()
    labels = (("__name__", "process_cpu"), ("pid", "7"), ("service_name", "app"))
    return PushBatch("bid", 1_700_000_000 * 10**9, 10 * 10**9, (Series(labels, raw, "sid1"),))


def test_connect_push_request(server: _Server) -> None:
    cfg = from_toml(f"""
        [store]
        url = "{server.url}"
        tenant = "t1"
        basic_auth = {{ user = "u", password = "p" }}
        headers = {{ X-Extra = "yes" }}
    """)
    make_sink(cfg.store).send(_batch(), timeout=5)
    path, headers, body = server.requests[0]
    assert path == "/push.v1.PusherService/Push"
    assert headers["content-type"] == "application/proto"
    assert headers["content-encoding"] == "gzip"
    assert headers["x-scope-orgid"] == "t1"
    assert headers["authorization"] == "Basic dTpw"
    assert headers["x-extra"] == "yes"
    req = messages("push.v1.PushRequest").FromString(gzip.decompress(body))
    series = req.series[0]
    assert {(lp.name, lp.value) for lp in series.labels} == {
        ("__name__", "process_cpu"),
        ("pid", "7"),
        ("service_name", "app"),
    }
    assert series.samples[0].ID == "sid1"
    profile = pprof.decode(series.samples[0].raw_profile)
    assert profile.totals() == (10_000_000,)


def test_bearer_token(server: _Server) -> None:
    cfg = from_toml(f'[store]\nurl = "{server.url}"\nbearer_token = "sekrit"')
    make_sink(cfg.store).send(_batch(), timeout=5)
    assert server.requests[0][1]["authorization"] == "Bearer sekrit"


def test_ingest_request(server: _Server) -> None:
    cfg = from_toml(f'[store]\nurl = "{server.url}"\nprotocol = "ingest"')
    make_sink(cfg.store).send(_batch(), timeout=5)
    path, _headers, body = server.requests[0]
    url = urllib.parse.urlparse(path)
    q = dict(urllib.parse.parse_qsl(url.query))
    assert url.path == "/ingest"
    assert q["name"] == "app.process_cpu{pid=7}"
    assert q["format"] == "pprof"
    assert (int(q["from"]), int(q["until"])) == (1_700_000_000, 1_700_000_010)
    assert pprof.decode(body).totals() == (10_000_000,)


@pytest.mark.parametrize(
    "status, retryable", [(500, True), (503, True), (429, True), (400, False), (413, False)]
)
def test_status_codes_map_to_retryable(status: int, retryable: bool) -> None:
    s = _Server(status)
    try:
        sink = make_sink(from_toml(f'[store]\nurl = "{s.url}"').store)
        with pytest.raises(PushError) as info:
            sink.send(_batch(), timeout=5)
        assert info.value.retryable is retryable
        assert str(status) in str(info.value)
    finally:
        s.close()


def test_unreachable_store_is_retryable() -> None:
    sink = make_sink(from_toml('[store]\nurl = "http://127.0.0.1:9"').store)
    with pytest.raises(PushError) as info:
        sink.send(_batch(), timeout=2)
    assert info.value.retryable


def test_file_sink_writes_readable_pprof(tmp_path: Path) -> None:
    sink = make_sink(from_toml(f'[store]\nurl = "file://{tmp_path}/out"').store)
    sink.send(_batch(), timeout=1)
    sink.send(_batch(), timeout=1)  # a retry overwrites, never duplicates
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pprof"
    assert pprof.decode(files[0].read_bytes()).totals() == (10_000_000,)


def test_spool_record_roundtrip() -> None:
    b = _batch()
    assert PushBatch.from_bytes(b.to_bytes()) == b


def test_sender_falls_back_to_ingest_when_push_is_404(tmp_path: Path) -> None:
    from hostprof.metrics import Metrics
    from hostprof.push import make_fallback
    from hostprof.push.sender import Sender
    from hostprof.push.spool import Spool

    # GIVEN a store that answers 404 on the connect push path, 200 on /ingest (old Pyroscope)
    s = _Server()
    try:
        original = s.httpd.RequestHandlerClass.do_POST

        def do_post(handler) -> None:
            if handler.path.startswith("/push.v1"):
                handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                handler.send_response(404)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            original(handler)

        s.httpd.RequestHandlerClass.do_POST = do_post
        store = from_toml(f'[store]\nurl = "{s.url}"').store
        metrics = Metrics()
        sender = Sender(
            make_sink(store),
            Spool(str(tmp_path / "spool"), 10**6),
            metrics,
            5,
            1,
            2,
            make_fallback(store),
        )
        sender._push(_batch(), timeout=5)
        assert sender.sink.name == "ingest"
        assert [p.split("?")[0] for p, _, _ in s.requests] == ["/ingest"]
        assert metrics.total("hostprof_agent_windows_pushed_total") == 1
    finally:
        s.close()
