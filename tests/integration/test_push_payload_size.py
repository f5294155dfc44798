"""Payload size: for the same samples, a hostprof window is no larger on the wire than what the
real pyroscope-io SDK sends (the issue's yardstick: 754 bytes for 27 distinct stacks).

The SDK profiles a workload with ~27 distinct stacks and pushes to a capturing HTTP server;
each captured window is decoded and pushed again through hostprof's window encoder with
hostprof's labels, and the two request bodies are compared byte for byte in size.
"""

from __future__ import annotations

import gzip
import http.server
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from hostprof.collectors._batch import RawBatch
from hostprof.config import StoreConfig
from hostprof.encoders import pprof
from hostprof.proto import messages
from hostprof.push.connect import ConnectSink
from hostprof.windows import WindowBuilder

pytest.importorskip("pyroscope")

WORKLOAD = textwrap.dedent(
    """
    import sys, time, pyroscope
    pyroscope.configure(application_name="sizeapp", server_address=sys.argv[1], sample_rate=100)

    def leaf(n):
        s = 0
        for i in range(n):
            s += i
        return s

    def make(depth, k):
        # Distinct call chains: chain_<k> calls through `depth` levels of step_<j>.
        def run():
            return leaf(300 + 10 * k)
        for j in range(depth):
            run = (lambda inner, j=j: (lambda: inner()))(run)
        return run

    def chain(k):
        return [make(1 + k % 3, k)]

    fns = {}
    for k in range(27):
        src = f"def chain_{k}(f):\\n    return f()\\n"
        exec(src, fns)
    work = [(fns[f"chain_{k}"], make(0, k)) for k in range(27)]
    end = time.time() + float(sys.argv[2])
    while time.time() < end:
        for fn, inner in work:
            fn(inner)
    pyroscope.shutdown()
    """
)


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _as_batch(profile) -> RawBatch:
    frames = list(profile.frames)
    stacks, values = [], []
    for stack, _labels, vals in profile.items():
        stacks.append([frames.index(f) for f in stack])
        values.append(vals)
    n = len(stacks)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in stacks])
    return RawBatch(
        collector="python",
        sample_types=profile.sample_types,
        frames=frames,
        stack_frames=np.array([f for s in stacks for f in s], dtype=np.uint32),
        stack_offsets=offsets,
        values=np.array(values, dtype=np.int64).reshape(n, -1),
        pid=np.full(n, 4242, np.int32),
        tid=np.full(n, 4242, np.int32),
        timestamp_ns=np.zeros(n, np.int64),
        flags=np.zeros(n, np.uint8),
    )


def test_window_no_larger_than_sdk_for_same_samples() -> None:
    # GIVEN the real SDK profiling a workload with many distinct stacks for ~2 windows
    _Capture.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        subprocess.run([sys.executable, "-c", WORKLOAD, url, "15"], check=True, timeout=90)
    finally:
        server.shutdown()
        server.server_close()
    assert _Capture.bodies, "the SDK pushed nothing"
    sink = ConnectSink(StoreConfig())
    compared = 0
    for body in _Capture.bodies:
        req = messages("push.v1.PushRequest").FromString(gzip.decompress(body))
        raw = req.series[0].samples[0].raw_profile
        profile = pprof.decode(raw)
        if len(profile) < 10:
            continue  # the short tail window at shutdown
        # WHEN hostprof encodes the same samples with its own labels
        builder = WindowBuilder("a-host-name", 10_000_000_000)
        labels = (
            ("__name__", "process_cpu"),
            ("hostname", "a-host-name"),
            ("pid", "4242"),
            ("service_name", "sizeapp"),
        )
        builder.add(("4242-1-0", "python"), labels, _as_batch(profile), 100)
        batch = builder.finish(profile.time_range[0] - profile.time_range[0] % 10**10)
        ours = len(sink.encode(batch))
        print(f"{len(profile)} distinct stacks: sdk {len(body)} B, hostprof {ours} B")
        # THEN ours is no larger, and decodes to the same samples
        assert ours <= len(body)
        back = pprof.decode(batch.series[0].profile)
        assert back.totals() == profile.totals()
        assert len(back) == len(profile)
        compared += 1
    assert compared >= 1
