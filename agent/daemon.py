"""The agent's run loop: discovery, collectors, windows, budget, signals, shutdown.

One thread runs the loop below; the sender (push + spool), the metrics endpoint and the status
socket run in their own threads. The loop wakes for whichever comes first:

* a discovery scan (new targets attach, exited ones are finalised and pushed at once);
* a drain of every collector into the current window;
* a window boundary (every open series is encoded and handed to the sender);
* a budget check (measure CPU/RSS, lower rates, drop collectors or shed targets);
* a signal (SIGTERM/SIGINT: flush and exit within 5 s; SIGHUP: reload the config).

Failure isolation: every call into a collector is wrapped per target; an error marks that
target (visible in status and /metrics) and never reaches the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import logging
import os
import select
import signal
import time
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof import config as config_mod
from hostprof._errors import HostprofError
from hostprof._errors import ProcessGoneError
from hostprof._errors import StorageError
from hostprof.budget import Action
from hostprof.budget import Budget
from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.config import AgentConfig
from hostprof.config import CollectorSpec
from hostprof.control import StatusServer
from hostprof.discovery import Discovery
from hostprof.discovery import Match
from hostprof.discovery import TargetKey
from hostprof.discovery import read_start_ticks
from hostprof.metrics import Metrics
from hostprof.metrics import MetricsServer
from hostprof.push import LabelPairs
from hostprof.push import make_fallback
from hostprof.push import make_sink
from hostprof.push.sender import Sender
from hostprof.push.spool import Spool
from hostprof.windows import PROFILE_NAMES
from hostprof.windows import WindowBuilder
from hostprof.windows import window_start

log = logging.getLogger("hostprof.agent")

COLLECTOR_CLASSES: Dict[str, Tuple[str, str]] = {
    "python": ("hostprof.collectors.python", "PythonCollector"),
    "cpu": ("hostprof.collectors.cpu", "CpuCollector"),
    "offcpu": ("hostprof.collectors.offcpu", "OffCpuCollector"),
    "syscalls": ("hostprof.collectors.syscalls", "SyscallsCollector"),
    "gc": ("hostprof.collectors.gc", "GcCollector"),
}
"""Where each collector lives. Explicit on purpose: nothing registers itself on import."""

SHARED = ("cpu", "offcpu", "syscalls")
"""eBPF collectors run once for the host (one BPF program, not one per target) and split by pid."""

HOST_SERVICE = "host"
"""``service_name`` of host-wide CPU samples that belong to no target."""

SHUTDOWN_BUDGET_S = 4.5
"""SIGTERM to exit: the issue asks for 5 s."""

_MAX_ERRORS = 3
"""Consecutive drain failures after which a collector is stopped and its target marked."""


def collector_class(name: str) -> type:
    """Imports the collector class for ``name``.

    Raises:
        HostprofError: the collector is not part of this build.
    """
    module_name, class_name = COLLECTOR_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HostprofError(
            f"the {name} collector is not available in this build ({exc})",
            "check 'hostprof agent check-config' and the install",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Collector)
                and getattr(value, "name", "") == name
                and value is not Collector
            ):
                cls = value
                break
    if cls is None:
        raise HostprofError(f"no {name} collector class in {module_name}")
    return cls


def _rate_option(cls: type, rate_hz: float, interval_s: float = 0.0) -> Dict[str, Any]:
    """The keywords a collector takes for its rate and drain interval (names differ)."""
    params = set()
    for fn in (cls.__init__, getattr(cls, "probe", None)):
        with contextlib.suppress(TypeError, ValueError):
            params |= set(inspect.signature(fn).parameters)  # type: ignore[arg-type]
    for key in ("rate_hz", "frequency", "rate", "hz", "interval_s"):
        if key in params:
            if key == "frequency":
                return {key: max(1, round(rate_hz))}
            if key == "interval_s":
                continue
            return {key: float(rate_hz)}
    return {}


@dataclasses.dataclass
class _Handle:
    """One running (or failed) collector instance."""

    name: str
    requested_hz: float
    rate_hz: float
    collector: Optional[Collector] = None
    error: str = ""
    errors: int = 0
    samples: int = 0
    drain_s: float = 0.0
    revivals: List[float] = dataclasses.field(default_factory=list)
    busy_s: float = 0.0
    state: str = "starting"
    """``running``, ``failed``, ``dropped`` (budget), ``n/a`` (does not apply)."""

    def describe(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "rate_hz": round(self.rate_hz, 2),
            "requested_hz": self.requested_hz,
            "samples": self.samples,
            "error": self.error,
        }


@dataclasses.dataclass
class _Target:
    id: str
    key: TargetKey
    match: Match
    labels: LabelPairs
    attached_ns: int
    handles: Dict[str, _Handle] = dataclasses.field(default_factory=dict)
    state: str = "running"
    """``running``, ``failed`` (no collector works), ``shed`` (budget)."""
    error: str = ""

    @property
    def pid(self) -> int:
        return self.key[0]

    def wants(self, collector: str) -> bool:
        return self.match.rule.collector(collector) is not None


class Daemon:
    """The running agent.

    Args:
        cfg: the configuration.
        config_path: the file SIGHUP reloads (None: reload keeps ``cfg``).
        overrides: command-line overrides re-applied after each reload.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        config_path: Optional[str] = None,
        overrides: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.hostname = cfg.effective_hostname()
        self.metrics = Metrics()
        self.budget = Budget(cfg.budget)
        self.discovery = Discovery(cfg.rules, exclude_pids={os.getpid()})
        self.window_ns = int(cfg.window_s * 1e9)
        self.builder = WindowBuilder(self.hostname, self.window_ns, cfg.thread_labels)
        self.targets: Dict[TargetKey, _Target] = {}
        self.by_pid: Dict[int, _Target] = {}
        self.shared: Dict[str, _Handle] = {}
        self.exited: List[Dict[str, Any]] = []
        self._generation = 0
        self._stopping = False
        self._reload = False
        self._started = time.time()
        self._window_start = 0
        self._snapshot: Dict[str, Any] = {}
        self.sender: Optional[Sender] = None
        self.metrics_server: Optional[MetricsServer] = None
        self.status_server: Optional[StatusServer] = None
        self._wake_r, self._wake_w = os.pipe()
        self._reaper = _Reaper()

    # ============================================================================ lifecycle
    def run(self) -> int:
        """Runs until SIGTERM/SIGINT; returns the exit code."""
        self._setup()
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _setup(self) -> None:
        cfg = self.cfg
        try:
            spool = Spool(cfg.spool_dir, int(cfg.spool_max_mb * 1024 * 1024))
        except OSError as exc:
            raise StorageError(
                f"cannot use spool folder {cfg.spool_dir}: {exc.strerror}",
                "set agent.spool_dir (or --spool-dir) to a writable folder, or run as root",
            ) from None
        if len(spool) or spool.partial_removed:
            log.info(
                "spool %s: %d windows to retry (%d partial writes discarded)",
                cfg.spool_dir,
                len(spool),
                spool.partial_removed,
            )
        self.sender = Sender(
            make_sink(cfg.store),
            spool,
            self.metrics,
            cfg.store.timeout_s,
            cfg.retry_min_s,
            cfg.retry_max_s,
            make_fallback(cfg.store),
        )
        self.metrics.set("hostprof_agent_spool_windows", len(spool))
        self.metrics.set("hostprof_agent_spool_bytes", spool.size_bytes)
        try:
            self.status_server = StatusServer(cfg.status_socket, self.state)
        except OSError as exc:
            raise StorageError(
                f"cannot create status socket {cfg.status_socket}: {exc.strerror}",
                "set agent.status_socket (or --status-socket) to a writable path, or run as root",
            ) from None
        if cfg.metrics_addr:
            try:
                self.metrics_server = MetricsServer(self.metrics, cfg.metrics_addr)
            except OSError as exc:
                self.status_server.stop()
                raise HostprofError(
                    f"cannot listen on {cfg.metrics_addr} for /metrics: {exc.strerror}",
                    "set agent.metrics_addr to a free port, or '' to disable",
                ) from None
            self.metrics_server.start()
        self._snapshot = self._build_state()
        self.status_server.start()
        self.sender.start()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self._window_start = window_start(time.time_ns(), self.window_ns)
        self._start_host_cpu()
        log.info(
            "agent started: pid %d, store %s (%s), window %gs, metrics %s, status %s",
            os.getpid(),
            cfg.store.url,
            cfg.store.protocol,
            cfg.window_s,
            self.metrics_server.address if self.metrics_server else "off",
            cfg.status_socket,
        )

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: Any) -> None:
        self._reload = True

    def _loop(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        next_discovery = now
        next_drain = now + cfg.drain_interval_s
        next_budget = now + cfg.budget.interval_s
        self.budget.measure(self._helper_pids())
        self._usage_metrics()
        while not self._stopping:
            if self._reload:
                self._reload = False
                self._do_reload()
                cfg = self.cfg
            now = time.monotonic()
            if now >= next_discovery:
                self._discover()
                next_discovery = now + cfg.discovery_interval_s
            window_end_ns = self._window_start + self.window_ns
            if time.time_ns() >= window_end_ns:
                self._drain_all()
                self._cut_window()
                next_drain = time.monotonic() + cfg.drain_interval_s
            elif now >= next_drain:
                self._drain_all(shared=False)
                next_drain = now + cfg.drain_interval_s
            if now >= next_budget:
                self._budget_tick()
                next_budget = time.monotonic() + cfg.budget.interval_s
            self._snapshot = self._build_state()
            until_window = (self._window_start + self.window_ns - time.time_ns()) / 1e9
            timeout = min(next_discovery, next_drain, next_budget) - time.monotonic()
            self._wait(max(0.0, min(timeout, until_window + 0.001)))

    def _wait(self, timeout: float) -> None:
        try:
            r, _, _ = select.select([self._wake_r], [], [], timeout)
        except InterruptedError:
            return
        if r:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)

    def _shutdown(self) -> None:
        t0 = time.monotonic()
        log.info("stopping: flushing the current window")
        try:
            self._drain_all()
            batch = self.builder.finish(self._window_start, end_ns=time.time_ns())
            if batch is not None and self.sender is not None:
                self.sender.submit(batch)
        except Exception:
            log.exception("error while flushing the last window")
        if self.sender is not None:
            self.sender.flush_and_stop(max(0.5, SHUTDOWN_BUDGET_S - 1.0 - (time.monotonic() - t0)))
        for t in list(self.targets.values()):
            self._stop_handles(t)
        for h in self.shared.values():
            self._stop_handle(h)
        # Whatever has not stopped by the deadline is ended by the exit itself (sampler
        # threads are daemon threads; BPF programs go with their file descriptors).
        self._reaper.close(max(0.2, SHUTDOWN_BUDGET_S - 0.3 - (time.monotonic() - t0)))
        if self.status_server:
            self.status_server.stop()
        if self.metrics_server:
            self.metrics_server.stop()
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("stopped in %.2f s", time.monotonic() - t0)

    # ============================================================================ discovery
    def _discover(self) -> None:
        try:
            new, gone = self.discovery.scan()
        except Exception:
            log.exception("discovery failed")
            self.metrics.inc("hostprof_agent_internal_errors_total", component="discovery")
            return
        for key in gone:
            self._finalize(key, reason="exited")
        for match in new:
            # PID reuse: a target with the same pid but another start time is a new process.
            old = self.by_pid.get(match.facts.pid)
            if old is not None and old.key != match.facts.key:
                self._finalize(old.key, reason="exited (pid reused)")
            self._attach(match)

    def _attach(self, match: Match) -> None:
        self._generation += 1
        facts = match.facts
        labels = {"service_name": match.service_name, "hostname": self.hostname}
        if self.cfg.pid_label:
            labels["pid"] = str(facts.pid)
        labels.update(dict(self.cfg.labels))
        labels.update(dict(match.rule.labels))
        target = _Target(
            id=f"{facts.pid}-{facts.start_ticks}-{self._generation}",
            key=facts.key,
            match=match,
            labels=tuple(sorted(labels.items())),
            attached_ns=time.time_ns(),
        )
        self.targets[facts.key] = target
        self.by_pid[facts.pid] = target
        for spec in match.rule.collectors:
            if spec.name in SHARED:
                self._ensure_shared(spec)
            else:
                target.handles[spec.name] = _Handle(
                    spec.name, spec.rate_hz, self._scaled(spec.rate_hz)
                )
        if target.id in self.budget.shed or self._over_target_limit():
            target.state = "shed"
            target.error = "shed by the budget"
            return
        self._start_target(target)
        log.info(
            "attached %s (pid %d, %s, rule %s): %s",
            match.service_name,
            facts.pid,
            facts.exe or "?",
            match.rule.name,
            ", ".join(f"{h.name}={h.state}" for h in target.handles.values()) or "shared",
        )

    def _over_target_limit(self) -> bool:
        # While targets are shed for budget, new ones wait too (else churn defeats the budget).
        return self.budget.shedding

    def _start_target(self, target: _Target) -> None:
        for h in target.handles.values():
            if h.name in self.budget.dropped_collectors:
                h.state = "dropped"
                continue
            self._start_handle(h, [target.pid])
        states = [h.state for h in target.handles.values()]
        if states and all(s in ("failed", "n/a") for s in states):
            target.state = "failed"
            target.error = "; ".join(h.error for h in target.handles.values() if h.error)
            self.metrics.inc("hostprof_agent_target_failures_total")
            log.warning(
                "cannot profile pid %d (%s): %s",
                target.pid,
                target.match.service_name,
                target.error,
            )
        else:
            target.state = "running"
            target.error = ""

    def _start_handle(self, h: _Handle, pids: Optional[Sequence[int]]) -> None:
        try:
            cls = collector_class(h.name)
            interval = self.cfg.window_s if pids is None else self.cfg.drain_interval_s
            collector = cls.probe(pids=pids, **_rate_option(cls, h.rate_hz, interval))
            if collector is None:
                h.state, h.error = "n/a", f"{h.name} does not apply"
                return
            collector.start()
        except HostprofError as exc:
            h.state, h.error = "failed", exc.message
            self.metrics.inc("hostprof_agent_collector_errors_total", collector=h.name)
            return
        except Exception as exc:  # a collector bug must not stop the agent
            h.state, h.error = "failed", f"{type(exc).__name__}: {exc}"
            self.metrics.inc("hostprof_agent_collector_errors_total", collector=h.name)
            log.debug("collector %s failed to start", h.name, exc_info=True)
            return
        h.collector, h.state, h.error, h.errors = collector, "running", "", 0

    def _stop_handle(self, h: _Handle) -> None:
        c, h.collector = h.collector, None
        if c is not None:
            # Stopping can block (a 1 Hz sampler finishes its sleep first): the reaper thread
            # does it, so the loop never waits on it.
            self._reaper.submit(h.name, c)

    def _stop_handles(self, target: _Target) -> None:
        for h in target.handles.values():
            self._stop_handle(h)

    def _finalize(self, key: TargetKey, reason: str) -> None:
        """A target exited (or is dropped): drain it, push its partial window, stop it."""
        target = self.targets.pop(key, None)
        if target is None:
            return
        if self.by_pid.get(target.pid) is target:
            del self.by_pid[target.pid]
        self._drain_target(target)
        self._drain_shared()
        self._stop_handles(target)
        keys = [k for k in self.builder.series_keys() if k[0] == target.id]
        batch = self.builder.finish(self._window_start, keys, end_ns=time.time_ns())
        if batch is not None and self.sender is not None:
            self.sender.submit(batch)
        self.budget.forget_target(target.id)
        self.exited.append(
            {
                "pid": target.pid,
                "service_name": target.match.service_name,
                "reason": reason,
                "at_ns": time.time_ns(),
                "samples": sum(h.samples for h in target.handles.values()),
            }
        )
        del self.exited[:-20]
        log.info("target pid %d (%s) %s: finalised", target.pid, target.match.service_name, reason)

    # ============================================================================ collectors
    def _start_host_cpu(self) -> None:
        mode = self.cfg.host_cpu
        if mode == "off":
            return
        self._ensure_shared(CollectorSpec("cpu", self.cfg.host_cpu_rate_hz), quiet=mode == "auto")

    def _ensure_shared(self, spec: CollectorSpec, quiet: bool = False) -> None:
        h = self.shared.get(spec.name)
        if h is not None:
            if spec.rate_hz > h.requested_hz:  # the highest requested rate wins
                h.requested_hz = spec.rate_hz
            return
        h = self.shared[spec.name] = _Handle(spec.name, spec.rate_hz, self._scaled(spec.rate_hz))
        if spec.name in self.budget.dropped_collectors:
            h.state = "dropped"
            return
        self._start_handle(h, None)
        if h.state != "running" and not quiet:
            log.warning("%s collector unavailable: %s", spec.name, h.error)

    def _drain_all(self, shared: bool = True) -> None:
        for target in list(self.targets.values()):
            self._drain_target(target)
        if shared:
            # eBPF collectors count in the kernel: draining them once per window costs one
            # symbolisation pass per distinct stack instead of one per second.
            self._drain_shared()

    def _drain_target(self, target: _Target) -> None:
        if target.state != "running":
            return
        for h in target.handles.values():
            batch = self._drain_handle(h, target)
            if batch is not None:
                self._add(target, h, batch)
            if h.collector is not None and getattr(h.collector, "finished", False):
                self._revive(target, h)

    def _revive(self, target: _Target, h: _Handle) -> None:
        """A collector stopped sampling on its own: re-attach if the process still lives.

        (A sampling loop ends on an unreadable instant, e.g. mid-exec; the process exiting is
        discovery's job.) Repeated failures mark the collector failed instead of spinning.
        """
        if read_start_ticks(target.pid) != target.key[1]:
            return  # exiting: discovery finalises it
        codes = (
            [getattr(t, "exit_code", None) for t in getattr(h.collector, "targets", {}).values()]
            if hasattr(h.collector, "targets")
            else []
        )
        now = time.monotonic()
        h.revivals = [t for t in h.revivals if now - t < 60.0] + [now]
        h.error = f"sampling loop ended (code {codes[0] if codes else '?'}); re-attached"
        self.metrics.inc("hostprof_agent_collector_errors_total", collector=h.name)
        self._stop_handle(h)
        if len(h.revivals) > 5:
            h.state = "failed"
            h.error = h.error.replace("re-attached", "gave up")
            if all(x.state != "running" for x in target.handles.values()):
                target.state, target.error = "failed", h.error
            log.warning("pid %d: %s", target.pid, h.error)
            return
        self._start_handle(h, [target.pid])

    def _drain_handle(self, h: _Handle, target: Optional[_Target]) -> Optional[RawBatch]:
        if h.collector is None:
            return None
        # Thread CPU time: the drain runs in this thread, and the process-wide clock costs a
        # walk over every sampler thread per call.
        t0 = time.thread_time()
        try:
            batch = h.collector.drain()
        except ProcessGoneError:
            return None  # discovery finalises it on its next scan
        except Exception as exc:
            h.errors += 1
            h.error = (
                exc.message if isinstance(exc, HostprofError) else f"{type(exc).__name__}: {exc}"
            )
            self.metrics.inc("hostprof_agent_collector_errors_total", collector=h.name)
            if h.errors >= _MAX_ERRORS:
                log.warning(
                    "%s collector failed %d times (%s): stopped%s",
                    h.name,
                    h.errors,
                    h.error,
                    f" for pid {target.pid}" if target else "",
                )
                self._stop_handle(h)
                h.state = "failed"
                if target is not None and all(
                    x.state != "running" for x in target.handles.values()
                ):
                    target.state, target.error = "failed", h.error
            return None
        finally:
            spent = time.thread_time() - t0
            h.drain_s += spent
            self.metrics.inc("hostprof_agent_collector_seconds_total", spent, collector=h.name)
        h.errors = 0
        n = len(batch)
        h.samples += n
        self.metrics.inc("hostprof_agent_samples_total", n, collector=h.name)
        if batch.lost:
            self.metrics.inc("hostprof_agent_collector_lost_total", batch.lost, collector=h.name)
        return batch

    def _drain_shared(self) -> None:
        for name, h in self.shared.items():
            batch = self._drain_handle(h, None)
            if batch is None or len(batch) == 0:
                continue
            pids = batch.pid
            uniq = np.unique(pids)
            rest = np.ones(len(batch), dtype=bool)
            for pid in uniq.tolist():
                target = self.by_pid.get(pid)
                if target is None or target.state == "shed" or not target.wants(name):
                    continue
                mask = pids == pid
                rest &= ~mask
                self._add(target, h, subset(batch, np.flatnonzero(mask)))
            if name == "cpu" and self.cfg.host_cpu != "off" and rest.any():
                labels = {
                    "__name__": PROFILE_NAMES["cpu"],
                    "service_name": HOST_SERVICE,
                    "hostname": self.hostname,
                }
                labels.update(dict(self.cfg.labels))
                self.builder.add(
                    (HOST_SERVICE, name),
                    tuple(sorted(labels.items())),
                    subset(batch, np.flatnonzero(rest)),
                    h.rate_hz,
                )

    def _add(self, target: _Target, h: _Handle, batch: RawBatch) -> None:
        labels = tuple(sorted((*target.labels, ("__name__", PROFILE_NAMES[h.name]))))
        try:
            self.builder.add((target.id, h.name), labels, batch, h.rate_hz)
        except Exception as exc:  # a malformed batch from one collector: drop it, count it
            self.metrics.inc("hostprof_agent_collector_errors_total", collector=h.name)
            h.error = f"bad batch: {type(exc).__name__}: {exc}"
            log.debug("bad batch from %s", h.name, exc_info=True)

    def _cut_window(self) -> None:
        start = self._window_start
        self._window_start = window_start(time.time_ns(), self.window_ns)
        batch = self.builder.finish(start)
        if batch is not None and self.sender is not None:
            self.sender.submit(batch)

    # ============================================================================ budget
    def _scaled(self, requested: float) -> float:
        if requested <= 0:
            return requested
        return max(min(self.cfg.budget.min_rate_hz, requested), requested * self.budget.rate_scale)

    def _helper_pids(self) -> Tuple[int, ...]:
        pids = []
        for h in self._all_handles():
            c = h.collector
            helper = getattr(c, "helper_pids", None) if c is not None else None
            if callable(helper):
                with contextlib.suppress(Exception):
                    pids.extend(helper())
        return tuple(pids)

    def _all_handles(self) -> List[_Handle]:
        out = list(self.shared.values())
        for t in self.targets.values():
            out.extend(t.handles.values())
        return out

    def _budget_tick(self) -> None:
        self.budget.measure(self._helper_pids())
        self._usage_metrics()
        self._collector_metrics()
        running = [t for t in self.targets.values() if t.state == "running"]
        shed_order = [
            t.id for t in sorted(running, key=lambda t: (t.match.rule.priority, -t.attached_ns))
        ]
        ebpf_active = sorted(
            {h.name for h in self._all_handles() if h.state == "running" and h.name != "python"}
        )
        floor = self.cfg.budget.min_rate_hz
        at_floor = all(
            h.rate_hz <= floor
            for h in self._all_handles()
            if h.state == "running" and h.requested_hz > 0
        )
        action = self.budget.decide(ebpf_active, shed_order, at_floor)
        if action is not None:
            self.metrics.inc("hostprof_agent_budget_actions_total", action=action.kind)
            self._apply(action)
            self.budget.rebaseline(self._helper_pids())

    def _collector_metrics(self) -> None:
        """Per-collector overhead beyond drains: sampler thread time, as collectors report it."""
        busy: Dict[str, float] = {}
        idle_reads = {"proc": 0.0, "sched_switch": 0.0}
        for h in self._all_handles():
            if h.collector is None:
                continue
            try:
                stats = h.collector.stats()
            except Exception:
                continue
            idle_reads["proc"] += stats.get("os_reads", 0.0)
            idle_reads["sched_switch"] += stats.get("state_hits", 0.0)
            seconds = stats.get("busy_seconds", stats.get("drain_cpu_s"))
            if seconds is not None:
                h.busy_s = float(seconds)
            busy[h.name] = busy.get(h.name, 0.0) + h.busy_s
        for name, seconds in busy.items():
            self.metrics.set(
                "hostprof_agent_collector_busy_seconds", round(seconds, 4), collector=name
            )
        for source, n in idle_reads.items():
            self.metrics.set("hostprof_agent_idle_state_reads", n, source=source)

    def _usage_metrics(self) -> None:
        self.metrics.set("hostprof_agent_cpu_percent", round(self.budget.cpu_percent, 3))
        self.metrics.set("hostprof_agent_cpu_seconds_total", round(self.budget.cpu_seconds, 3))
        self.metrics.set("hostprof_agent_rss_bytes", self.budget.rss_bytes)

    def _apply(self, action: Action) -> None:
        if action.kind in ("lower_rates", "restore_rates"):
            for h in self._all_handles():
                new = self._scaled(h.requested_hz)
                if h in self.shared.values() and not callable(
                    getattr(h.collector, "set_rate", None)
                ):
                    # Reloading a BPF program costs more than it saves: step 2 drops it.
                    continue
                if h.state == "running" and abs(new - h.rate_hz) > 1e-9:
                    self._set_rate(h, new)
                else:
                    h.rate_hz = new
        elif action.kind in ("drop_collector", "restore_collector"):
            drop = action.kind == "drop_collector"
            for t, h in self._handles_named(action.collector):
                if drop:
                    self._drain_then(t, h)
                    self._stop_handle(h)
                    h.state = "dropped"
                elif t is None or t.state == "running":
                    self._start_handle(h, None if t is None else [t.pid])
        elif action.kind == "shed_targets":
            by_id = {t.id: t for t in self.targets.values()}
            for tid in action.targets:
                t = by_id.get(tid)
                if t is None:
                    continue
                self._drain_target(t)
                self._stop_handles(t)
                for h in t.handles.values():
                    h.state = "shed"
                t.state, t.error = "shed", "shed by the budget"
        elif action.kind == "restore_target":
            by_id = {t.id: t for t in self.targets.values()}
            t = by_id.get(action.targets[0])
            if t is not None and t.state == "shed":
                self._start_target(t)

    def _handles_named(self, name: str) -> List[Tuple[Optional[_Target], _Handle]]:
        out: List[Tuple[Optional[_Target], _Handle]] = []
        if name in self.shared:
            out.append((None, self.shared[name]))
        for t in self.targets.values():
            if name in t.handles:
                out.append((t, t.handles[name]))
        return out

    def _drain_then(self, target: Optional[_Target], h: _Handle) -> None:
        if target is None:
            self._drain_shared()
        else:
            batch = self._drain_handle(h, target)
            if batch is not None:
                self._add(target, h, batch)

    def _set_rate(self, h: _Handle, rate: float) -> None:
        """Changes a running collector's rate: in place if it can, else by restarting it."""
        target = next((t for t in self.targets.values() if h in t.handles.values()), None)
        setter = getattr(h.collector, "set_rate", None)
        if callable(setter):
            try:
                setter(rate)
                h.rate_hz = rate
                return
            except Exception as exc:
                log.debug("set_rate failed on %s: %s", h.name, exc)
        self._drain_then(target, h)
        self._stop_handle(h)
        h.rate_hz = rate
        self._start_handle(h, None if target is None else [target.pid])

    # ============================================================================ reload
    def _do_reload(self) -> None:
        if not self.config_path:
            log.warning("SIGHUP: no config file to reload (started without --config)")
            return
        try:
            new = config_mod.with_overrides(config_mod.load(self.config_path), **self.overrides)
        except HostprofError as exc:
            self.metrics.inc("hostprof_agent_config_reloads_total", result="error")
            log.error("config reload failed, keeping the running config: %s", exc.message)
            return
        old = self.cfg
        self.cfg = new
        self.budget.cfg = new.budget
        if new.store != old.store and self.sender is not None:
            self.sender.set_sink(make_sink(new.store), make_fallback(new.store))
        if new.rules != old.rules or new.labels != old.labels or new.pid_label != old.pid_label:
            for key in list(self.targets):
                self._finalize(key, reason="re-attached (config reload)")
            self.discovery.set_rules(new.rules)
        if new.window_s != old.window_s:
            self._drain_all()
            self._cut_window()
            self.window_ns = int(new.window_s * 1e9)
            self.builder.window_ns = self.window_ns
            self._window_start = window_start(time.time_ns(), self.window_ns)
        for key in ("metrics_addr", "status_socket", "spool_dir"):
            if getattr(new, key) != getattr(old, key):
                log.warning("config reload: agent.%s changes need a restart", key)
        self.metrics.inc("hostprof_agent_config_reloads_total", result="ok")
        log.info("config reloaded from %s", self.config_path)

    # ============================================================================ status
    def _build_state(self) -> Dict[str, Any]:
        by_state: Dict[str, int] = {}
        targets = []
        for t in self.targets.values():
            by_state[t.state] = by_state.get(t.state, 0) + 1
            targets.append(
                {
                    "id": t.id,
                    "pid": t.pid,
                    "service_name": t.match.service_name,
                    "rule": t.match.rule.name,
                    "exe": t.match.facts.exe,
                    "state": t.state,
                    "error": t.error,
                    "collectors": [h.describe() for h in t.handles.values()],
                    "samples": sum(h.samples for h in t.handles.values()),
                    "attached_ns": t.attached_ns,
                }
            )
        for state in ("running", "failed", "shed"):
            self.metrics.set("hostprof_agent_targets", by_state.get(state, 0), state=state)
        return {
            "pid": os.getpid(),
            "hostname": self.hostname,
            "uptime_s": round(time.time() - self._started, 1),
            "config": self.config_path or "(defaults)",
            "store": {"url": self.cfg.store.url, "protocol": self.cfg.store.protocol},
            "window_s": self.window_ns / 1e9,
            "window_start_ns": self._window_start,
            "budget": {
                "max_cpu_percent": self.cfg.budget.max_cpu_percent,
                "max_memory_mb": self.cfg.budget.max_memory_mb,
                "cpu_percent": round(self.budget.cpu_percent, 3),
                "rss_mb": round(self.budget.rss_bytes / 1048576, 1),
                "rate_scale": round(self.budget.rate_scale, 4),
                "dropped_collectors": list(self.budget.dropped_collectors),
                "shed_targets": list(self.budget.shed),
                "actions": [dataclasses.asdict(a) for a in self.budget.actions[-20:]],
            },
            "shared_collectors": [h.describe() for h in self.shared.values()],
            "targets": targets,
            "exited": list(self.exited),
            "metrics": {
                "samples": self.metrics.total("hostprof_agent_samples_total"),
                "windows_pushed": self.metrics.total("hostprof_agent_windows_pushed_total"),
                "windows_spooled": self.metrics.total("hostprof_agent_windows_spooled_total"),
                "windows_dropped": self.metrics.total("hostprof_agent_windows_dropped_total"),
            },
        }

    def state(self) -> Dict[str, Any]:
        """The latest state for ``hostprof agent status`` (thread safe: a snapshot)."""
        out = dict(self._snapshot)
        if self.sender is not None:
            out["push"] = self.sender.state()
        return out


class _Reaper:
    """Stops and closes retired collectors on a background thread, in parallel per call."""

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: queue.Queue[Optional[Tuple[str, Collector]]] = queue.Queue()
        self._threads: List[Any] = []
        self._thread = threading.Thread(target=self._run, name="hostprof-reaper", daemon=True)
        self._thread.start()

    def submit(self, name: str, collector: Collector) -> None:
        self._queue.put((name, collector))

    def _run(self) -> None:
        import threading

        while True:
            item = self._queue.get()
            if item is None:
                return
            t = threading.Thread(target=_stop_collector, args=item, daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def close(self, timeout: float) -> None:
        """Waits up to ``timeout`` for every retired collector to stop."""
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(timeout)
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))


def _stop_collector(name: str, collector: Collector) -> None:
    try:
        collector.stop()
        close = getattr(collector, "close", None)  # frees native readers (fds, memory)
        if callable(close):
            close()
    except Exception as exc:
        log.debug("collector %s stop failed: %s", name, exc)


def subset(batch: RawBatch, idx: np.ndarray) -> RawBatch:
    """The samples ``idx`` of ``batch`` (same frame table), vectorised."""
    offsets = batch.stack_offsets
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    new_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    total = int(new_offsets[-1])
    # Position of every kept frame: its sample's start plus its index within the sample.
    gather = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    return dataclasses.replace(
        batch,
        stack_frames=batch.stack_frames[gather],
        stack_offsets=new_offsets,
        values=batch.values[idx],
        pid=batch.pid[idx],
        tid=batch.tid[idx],
        timestamp_ns=batch.timestamp_ns[idx],
        flags=batch.flags[idx],
        lost=0,
        missed=0,
        late=0,
    )
