"""The agent's self-metrics: counters, gauges and a latency histogram, served as Prometheus text.

Thread safe (the sender, the main loop and the HTTP thread all touch it). Label sets are small
and fixed (collector names, drop reasons), so the series count is bounded.
"""

from __future__ import annotations

import http.server
import os
import threading
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HELP = {
    "hostprof_agent_samples_total": ("counter", "Samples drained from collectors."),
    "hostprof_agent_windows_pushed_total": ("counter", "Series-windows accepted by the store."),
    "hostprof_agent_push_batches_total": ("counter", "Push requests accepted by the store."),
    "hostprof_agent_windows_spooled_total": ("counter", "Series-windows written to the spool."),
    "hostprof_agent_windows_retried_total": ("counter", "Spooled windows pushed on retry."),
    "hostprof_agent_windows_dropped_total": ("counter", "Series-windows lost, by reason."),
    "hostprof_agent_push_failures_total": ("counter", "Failed push attempts."),
    "hostprof_agent_push_seconds": ("histogram", "Push latency."),
    "hostprof_agent_spool_windows": ("gauge", "Windows waiting in the spool."),
    "hostprof_agent_spool_bytes": ("gauge", "Spool size on disk."),
    "hostprof_agent_cpu_percent": ("gauge", "Agent CPU over the last interval, % of one core."),
    "hostprof_agent_cpu_seconds_total": ("counter", "Agent CPU time (user+system)."),
    "hostprof_agent_rss_bytes": ("gauge", "Agent resident memory."),
    "hostprof_agent_targets": ("gauge", "Targets by state."),
    "hostprof_agent_collector_seconds_total": ("counter", "Time spent draining, per collector."),
    "hostprof_agent_collector_busy_seconds": (
        "gauge",
        "Sampling time of running collectors (sampler threads), per collector.",
    ),
    "hostprof_agent_idle_state_reads": (
        "gauge",
        "Thread idle-state reads of running Python samplers, by source: proc (a /proc file) "
        "or sched_switch (the offcpu collector's mapped table, no syscall).",
    ),
    "hostprof_agent_collector_lost_total": ("counter", "Events lost in collectors."),
    "hostprof_agent_collector_errors_total": ("counter", "Collector failures, per collector."),
    "hostprof_agent_budget_actions_total": ("counter", "Budget actions taken, by action."),
    "hostprof_agent_internal_errors_total": ("counter", "Unexpected errors, by component."),
    "hostprof_agent_config_reloads_total": ("counter", "SIGHUP reloads, by result."),
}

Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class Metrics:
    """A small registry. Names are listed in ``_HELP``; labels are keyword arguments."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[Key, float] = {}
        self._hist: Dict[Key, List[float]] = {}  # bucket counts + [sum, count]

    @staticmethod
    def _key(name: str, labels: Dict[str, str]) -> Key:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        """Adds to a counter."""
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Sets a gauge (or a counter mirrored from elsewhere)."""
        with self._lock:
            self._values[self._key(name, labels)] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Records one histogram observation."""
        key = self._key(name, labels)
        with self._lock:
            h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [0.0] * (len(_BUCKETS) + 2)
            for i, bound in enumerate(_BUCKETS):
                if value <= bound:
                    h[i] += 1
            h[-2] += value
            h[-1] += 1

    def get(self, name: str, **labels: str) -> float:
        """A counter or gauge value (0 when never set)."""
        with self._lock:
            return self._values.get(self._key(name, labels), 0)

    def total(self, name: str) -> float:
        """Sum of a metric over all label sets."""
        with self._lock:
            return sum(v for (n, _), v in self._values.items() if n == name)

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        with self._lock:
            values = dict(self._values)
            hist = {k: list(v) for k, v in self._hist.items()}
        lines: List[str] = []
        names = sorted({k[0] for k in values} | {k[0] for k in hist})
        for name in names:
            kind, text = _HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for (n, labels), v in sorted(values.items()):
                if n == name:
                    lines.append(f"{name}{_fmt(labels)} {_num(v)}")
            for (n, labels), h in sorted(hist.items()):
                if n != name:
                    continue
                for i, bound in enumerate(_BUCKETS):
                    lines.append(f"{name}_bucket{_fmt((*labels, ('le', str(bound))))} {_num(h[i])}")
                lines.append(f"{name}_bucket{_fmt((*labels, ('le', '+Inf')))} {_num(h[-1])}")
                lines.append(f"{name}_sum{_fmt(labels)} {h[-2]!r}")
                lines.append(f"{name}_count{_fmt(labels)} {_num(h[-1])}")
        return "\n".join(lines) + "\n"


def _fmt(labels: Tuple[Tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class MetricsServer:
    """Serves ``GET /metrics`` from a daemon thread on ``host:port``."""

    def __init__(self, metrics: Metrics, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        registry = metrics

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = registry.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.address = f"{host}:{port}"
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Starts serving."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="hostprof-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self.server.shutdown()
        self.server.server_close()


def process_usage(pid: int = 0) -> Tuple[float, int]:
    """(CPU seconds user+system incl. reaped children, RSS bytes) of a process, from /proc."""
    pid = pid or os.getpid()
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[0] is state (field 3): utime=14, stime=15, cutime=16, cstime=17, rss=24.
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss
