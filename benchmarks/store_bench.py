"""Benchmark of the embedded store (``hostprof store serve``), printed as a table.

Measures, on a real server subprocess:

1. push throughput: realistic 10 s CPU profiles (pprof, gzipped, ~1,000 samples over ~150
   distinct stacks of depth ~15, as the pyroscope-io SDK sends at 100 Hz) from 100 simulated
   agents over keep-alive HTTP/1.1 connections, ``POST /push.v1.PusherService/Push``;
2. merged flamegraph render time over one service-day (8,640 windows of 10 s), day-aligned and
   unaligned (``/pyroscope/render``, end to end over HTTP), median of several runs;
3. database size per million stored samples (rows of (series, window, stack, value)).

The load generator runs on the same machine (it is a lean asyncio client sending pre-built
requests), so the push number is a lower bound of what the server does alone.

Usage::

    .venv/bin/python benchmarks/store_bench.py [--pushes 6000] [--agents 100] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import List
from typing import Tuple

import numpy as np
import psutil

from hostprof.proto import messages
from hostprof.store.backend import SQLiteBackend
from hostprof.store.decode import SeriesData
from hostprof.store.decode import StackBatch
from hostprof.store.decode import Upload
from hostprof.store.decode import push_request

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
PERIOD_NS = 10_000_000  # 100 Hz


class Program:
    """A synthetic application: a call tree whose hot paths an agent samples."""

    def __init__(self, rng: random.Random, functions: int = 400, leaves: int = 300) -> None:
        self.names = [f"module{rng.randrange(40)}.func_{i}" for i in range(functions)]
        self.paths: List[Tuple[int, ...]] = []
        for _ in range(leaves):
            depth = max(3, int(rng.gauss(15, 4)))
            # Shared prefixes (main -> framework) like real programs, then diverging frames.
            prefix = [0, 1 + rng.randrange(3), 4 + rng.randrange(8)]
            self.paths.append(
                tuple(prefix + [rng.randrange(12, functions) for _ in range(depth - 3)])
            )
        self.weights = [1.0 / (i + 1) ** 1.1 for i in range(leaves)]  # Zipf-like hot paths

    def window(self, rng: random.Random, samples: int = 1000) -> dict:
        counts: dict = {}
        for path in rng.choices(self.paths, self.weights, k=samples):
            counts[path] = counts.get(path, 0) + 1
        return counts


def pprof_bytes(program: Program, counts: dict, start_s: int) -> bytes:
    """A gzipped pprof profile like the pyroscope-io SDK's (cpu:nanoseconds samples)."""
    msg = messages("perftools.profiles.Profile")()
    strings = ["", "cpu", "nanoseconds", *program.names]
    msg.sample_type.add(type=1, unit=2)
    msg.period_type.type, msg.period_type.unit = 1, 2
    msg.period = PERIOD_NS
    msg.time_nanos = start_s * 1_000_000_000
    msg.duration_nanos = 10_000_000_000
    used = sorted({f for path in counts for f in path})
    for f in used:
        msg.function.add(id=f + 1, name=f + 3, filename=0)
        msg.location.add(id=f + 1).line.add(function_id=f + 1, line=1)
    for path, n in counts.items():
        s = msg.sample.add()
        s.location_id.extend(f + 1 for f in reversed(path))
        s.value.append(n * PERIOD_NS)
    msg.string_table.extend(strings)
    return gzip.compress(msg.SerializeToString(), 6)


def push_body(agent: int, raw: bytes, sample_id: str) -> bytes:
    req = messages("push.v1.PushRequest")()
    s = req.series.add()
    for k, v in (
        ("__name__", "process_cpu"),
        ("service_name", f"svc-{agent % 10}"),
        ("instance", f"host-{agent}"),
        ("process.runtime.name", "cpython"),
    ):
        s.labels.add(name=k, value=v)
    s.samples.add(raw_profile=raw, ID=sample_id)
    return req.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hostprof",
            "store",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data",
            str(data),
            "--retention",
            "0",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("store did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _client(port: int, requests: List[bytes], results: List[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for req in requests:
        t0 = time.perf_counter()
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        if status != 200:
            raise SystemExit(f"push failed with HTTP {status}")
        results.append(time.perf_counter() - t0)
    writer.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def bench_push(
    pushes: int, agents: int, connections: int, workers: int
) -> Tuple[float, float, float, float]:
    """Returns (pushes per second, median latency ms, p99 latency ms, server CPU ms per push)."""
    rng = random.Random(1)
    programs = [Program(random.Random(a)) for a in range(10)]
    now = int(time.time()) // 10 * 10
    bodies = []
    for i in range(pushes):
        agent = i % agents
        counts = programs[agent % 10].window(rng)
        raw = pprof_bytes(programs[agent % 10], counts, now - 10 * (i // agents))
        body = gzip.compress(push_body(agent, raw, f"a{agent}-{i}"), 1)
        head = (
            "POST /push.v1.PusherService/Push HTTP/1.1\r\nHost: bench\r\n"
            "Content-Type: application/proto\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        bodies.append(head + body)
    data = Path(tempfile.mkdtemp(prefix="store-bench-"))
    port = free_port()
    proc = start_server(data, port, "--decode-workers", str(workers))
    try:
        # Warm up (series creation, first stacks), then measure.
        warm = bodies[:agents]
        asyncio.run(_run(port, warm, min(connections, len(warm)), []))
        results: List[float] = []
        cpu0 = tree_cpu(proc.pid)
        t0 = time.perf_counter()
        asyncio.run(_run(port, bodies[agents:], connections, results))
        elapsed = time.perf_counter() - t0
        cpu = tree_cpu(proc.pid) - cpu0
    finally:
        stop_server(proc)
        shutil.rmtree(data, ignore_errors=True)
    results.sort()
    return (
        len(results) / elapsed,
        statistics.median(results) * 1000,
        results[int(len(results) * 0.99) - 1] * 1000,
        cpu / len(results) * 1000,
    )


async def _run(port: int, bodies: List[bytes], connections: int, results: List[float]) -> None:
    chunks = [bodies[i::connections] for i in range(connections)]
    await asyncio.gather(*(_client(port, c, results) for c in chunks if c))


def bench_pipeline(pushes: int) -> Tuple[float, float]:
    """CPU ms per push of decode and of the storage write, without HTTP (one thread each,
    measured with process CPU time so other load on the host matters less)."""
    rng = random.Random(4)
    programs = [Program(random.Random(a)) for a in range(10)]
    now = int(time.time()) // 10 * 10
    bodies = [
        push_body(
            i % 100,
            pprof_bytes(programs[i % 10], programs[i % 10].window(rng), now - 10 * (i // 100)),
            f"p{i}",
        )
        for i in range(pushes)
    ]
    t0 = time.process_time()
    uploads = [u for b in bodies for u in push_request(b, "application/proto", 1 << 26)]
    decode = (time.process_time() - t0) / pushes * 1000
    data = Path(tempfile.mkdtemp(prefix="store-bench-pipe-"))
    backend = SQLiteBackend(data / "store.db")
    t0 = time.process_time()
    futures = [backend.submit("anonymous", uploads[i : i + 64]) for i in range(0, len(uploads), 64)]
    for fut in futures:
        fut.result(600)  # raises if a write failed
    backend.flush(600)
    store = (time.process_time() - t0) / pushes * 1000
    backend.close()
    shutil.rmtree(data, ignore_errors=True)
    return decode, store


def load_day(db: Path, day_start: int, windows: int = 8640) -> Tuple[int, float]:
    """Stores one service-day straight through the backend; returns (sample rows, seconds)."""
    rng = random.Random(2)
    program = Program(random.Random(3))
    backend = SQLiteBackend(db)
    labels = {"__name__": "process_cpu", "service_name": "day-svc", "instance": "host-1"}
    rows = 0
    t0 = time.perf_counter()
    batch: List[Upload] = []
    for w in range(windows):
        counts = program.window(rng)
        stacks = StackBatch.from_stacks([[program.names[f] for f in path] for path in counts])
        values = np.fromiter(counts.values(), dtype=np.int64, count=len(counts)) * PERIOD_NS
        rows += len(stacks)
        batch.append(Upload("", [SeriesData(labels, CPU, day_start + 10 * w, stacks, values)]))
        if len(batch) == 256:
            backend.submit("anonymous", batch)
            batch = []
    if batch:
        backend.submit("anonymous", batch)
    backend.flush(600)
    elapsed = time.perf_counter() - t0
    backend.close()
    return rows, elapsed


def bench_render(quick: bool) -> Tuple[float, float, float, int, int, float]:
    """Returns (aligned ms, unaligned ms, backend-only ms, rows, db bytes, load s)."""
    data = Path(tempfile.mkdtemp(prefix="store-bench-day-"))
    day_start = (int(time.time()) // 86400 - 2) * 86400  # a whole UTC day, two days ago
    rows, load_s = load_day(data / "store.db", day_start, 1440 if quick else 8640)
    size = sum(p.stat().st_size for p in data.iterdir())
    port = free_port()
    proc = start_server(data, port)
    query = urllib.request.quote(f'{CPU}{{service_name="day-svc"}}')

    def timed(frm: int, until: int) -> float:
        url = f"http://127.0.0.1:{port}/pyroscope/render?query={query}&from={frm}&until={until}"
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=60).read()
            runs.append(time.perf_counter() - t0)
            assert b'"numTicks":' in body and b'"numTicks":0' not in body
        return statistics.median(runs) * 1000

    try:
        aligned = timed(day_start, day_start + 86400 - 1)
        unaligned = timed(day_start + 1234, day_start + 86400 + 1234)
    finally:
        stop_server(proc)
    backend = SQLiteBackend(data / "store.db", readonly=True)
    ids = [s.id for s in backend.series("anonymous", None, 0, 2**40)]
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        backend.merge(ids, day_start + 1234, day_start + 86400 + 1234)
        runs.append(time.perf_counter() - t0)
    backend.close()
    shutil.rmtree(data, ignore_errors=True)
    return aligned, unaligned, statistics.median(runs) * 1000, rows, size, load_s


def bench_tree(stacks: int) -> Tuple[float, float, int]:
    """Milliseconds to merge ``stacks`` distinct stacks (depth ~20) into a flamegraph, with the
    call tree built in Python (Tree.build) and in C (Tree.build_arrays); median of 3 each.
    Returns (python ms, C ms, tree nodes)."""
    from hostprof.store.flame import Tree
    from hostprof.store.flame import flamebearer

    rng = random.Random(7)
    names = [f"pkg{rng.randrange(50)}.fn_{i}" for i in range(3000)]
    unique = {
        tuple(rng.choices(names[:20], k=3) + rng.choices(names, k=rng.randrange(5, 35)))
        for _ in range(stacks)
    }
    batch = StackBatch.from_stacks(list(unique))
    values = np.asarray([rng.randrange(1, 10**6) for _ in unique], dtype=np.int64)
    data = Path(tempfile.mkdtemp(prefix="store-bench-tree-"))
    backend = SQLiteBackend(data / "store.db")
    try:
        sd = SeriesData({"service_name": "tree"}, CPU, int(time.time()), batch, values)
        backend.write("anonymous", [Upload("", [sd])])
        ids, vals = backend.merge_arrays(
            [s.id for s in backend.series("anonymous", None, 0, 2**40)], 0, 2**40
        )
        side = dict(zip(ids.tolist(), vals.tolist()))
        py, c = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            slow = flamebearer(Tree.build(backend.stack_names(sorted(side)), side))
            py.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            frames, offsets, table = backend.stack_arrays(int(ids.max()))
            tree = Tree.build_arrays(frames, offsets, table, (ids, vals))
            fast = flamebearer(tree)
            c.append(time.perf_counter() - t0)
        assert fast == slow
    finally:
        backend.close()
        shutil.rmtree(data, ignore_errors=True)
    return statistics.median(py) * 1000, statistics.median(c) * 1000, len(tree.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=6000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    pushes = 1500 if args.quick else args.pushes
    runs = {}
    for workers in (0, 2):
        runs[workers] = bench_push(pushes, args.agents, args.connections, workers)
    aligned, unaligned, backend_ms, rows, size, load_s = bench_render(args.quick)
    decode_ms, store_ms = bench_pipeline(500 if args.quick else 2000)
    tree_stacks = 5000 if args.quick else 50000
    tree_py, tree_c, tree_nodes = bench_tree(tree_stacks)
    windows = 1440 if args.quick else 8640
    load = os.getloadavg()[0]
    print(
        f"hostprof store benchmark ({os.cpu_count()} CPUs, load average {load:.1f} at the end; "
        "load generator on the same host)"
    )
    print(f"{'metric':<62} {'measured':>14} {'target':>10}")
    print("-" * 88)
    for workers, (rate, p50, p99, cpu_ms) in runs.items():
        how = "decoded in-process" if workers == 0 else f"{workers} decoder processes"
        print(
            f"{f'pushes/s, 10 s profiles, {args.agents} agents, {how}':<62} {rate:>14.0f} "
            f"{'>= 2000':>10}"
        )
        print(f"{'  latency p50 / p99 (ms)':<62} {f'{p50:.1f} / {p99:.1f}':>14} {'':>10}")
        print(f"{'  server CPU per push (ms, all its processes)':<62} {cpu_ms:>14.2f} {'':>10}")
        cap = os.cpu_count() / (cpu_ms / 1000) if cpu_ms else 0
        print(
            f"{'  => pushes/s the CPUs could sustain for the server alone':<62} {cap:>14.0f} "
            f"{'':>10}"
        )
    pipe = decode_ms + store_ms
    print(
        f"{'decode + store CPU per push, no HTTP (ms)':<62} "
        f"{f'{decode_ms:.2f} + {store_ms:.2f}':>14} {'':>10}"
    )
    print(f"{'  => pushes/s per core for decode + store':<62} {1000 / pipe:>14.0f} {'':>10}")
    label = f"render one service-day ({windows} windows), day-aligned (ms)"
    print(f"{label:<62} {aligned:>14.1f} {'<= 200':>10}")
    print(f"{'render one service-day, unaligned 24 h (ms)':<62} {unaligned:>14.1f} {'<= 200':>10}")
    print(f"{'  of which storage merge (ms)':<62} {backend_ms:>14.1f} {'':>10}")
    label = f"flamegraph of {tree_stacks} distinct stacks ({tree_nodes} nodes), Python tree (ms)"
    print(f"{label:<62} {tree_py:>14.0f} {'':>10}")
    print(f"{'  same, tree merged in C (ms)':<62} {tree_c:>14.0f} {'':>10}")
    print(f"{'DB size per million samples (MB)':<62} {size / rows:>14.1f} {'':>10}")
    print(f"{'  (samples stored / DB size MB)':<62} {f'{rows} / {size / 1e6:.0f}':>14} {'':>10}")
    print(f"{'  bulk load through the backend (samples/s)':<62} {rows / load_s:>14.0f} {'':>10}")


if __name__ == "__main__":
    main()
