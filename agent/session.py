"""A profiling session: runs collectors, drains them periodically, aggregates a Profile.

The session owns the lifecycle (start, drain every ``drain_interval`` seconds, stop) and
the ending: a duration that ran out, Ctrl-C, or every target having exited. In each case it
drains what was collected and returns it, saying why it ended, so the caller can still write
the profile.

Other collectors (eBPF) plug in as more :class:`~hostprof.collectors.Collector` instances;
batches flow through :attr:`Session.batch_hooks` (e.g. a merge step) before aggregation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from typing import Callable
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence

from hostprof.collectors._base import Collector
from hostprof.collectors._batch import RawBatch
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.model import Window
from hostprof.pipeline import Aggregator

ProgressCallback = Callable[["Progress"], None]
BatchHook = Callable[[List[RawBatch]], List[RawBatch]]

END_DURATION = "duration"
END_INTERRUPTED = "interrupted"
END_TARGET_EXITED = "target exited"


@dataclasses.dataclass
class Progress:
    """A progress report, sent after every drain."""

    elapsed: float
    """Seconds since the session started."""
    samples: int
    """Samples aggregated so far."""
    stats: Dict[str, Dict[str, float]]
    """Each collector's :meth:`~hostprof.collectors.Collector.stats`, by collector name."""


@dataclasses.dataclass
class SessionResult:
    """What a session produced."""

    profile: Profile
    """The aggregated profile (possibly empty)."""
    reason: str
    """Why it ended: ``duration``, ``interrupted`` or ``target exited``."""
    elapsed: float
    """Seconds it ran."""
    samples: int
    """Samples aggregated."""
    stats: Dict[str, Dict[str, float]]
    """Final collector statistics, by collector name."""
    lost: int = 0
    """Events collectors reported lost."""
    missed: int = 0
    """Samples dropped without a usable stack (torn reads, map collisions)."""
    late: int = 0
    """Sampling ticks that could not be served on time."""


class Session:
    """Runs collectors and aggregates their batches.

    Drains every ``drain_interval`` seconds; between drains it sleeps, woken by
    :meth:`stop` or by a collector's ``on_finish`` callback (set here on collectors that
    have that attribute) when its targets end.

    Args:
        collectors: started collectors must not be shared with another session.
        sample_types: the profile's value columns (matched to batch columns by name).
        period_type: what one sampling period measures.
        period: the sampling period in ``period_type`` units.
        per_thread: label samples with thread id and name.
        static_labels: labels added to every sample.
        drain_interval: seconds between drains (each costs the main thread ~0.5-1 ms of
            CPU, mostly fixed: a rare drain keeps a long recording cheap; collectors with
            kernel buffers need a short one).
        poll_interval: seconds between checks for exited targets; by default 0.5 if a
            collector has a ``finished`` flag but no ``on_finish`` hook, else none between
            drains. Ctrl-C, :meth:`stop` and ``on_finish`` end the wait at once.
    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        sample_types: Sequence[SampleType],
        period_type: Optional[SampleType] = None,
        period: int = 0,
        per_thread: bool = True,
        static_labels: Optional[Mapping[str, str]] = None,
        drain_interval: float = 0.5,
        poll_interval: Optional[float] = None,
    ) -> None:
        self.collectors = list(collectors)
        self.aggregator = Aggregator(
            sample_types,
            period_type,
            period,
            per_thread=per_thread,
            static_labels=static_labels,
        )
        self.drain_interval = drain_interval
        # Collectors that say when their targets are gone (``on_finish``) wake the session;
        # any other collector with a ``finished`` flag is polled. Every wake-up of an idle
        # Python thread costs ~0.1 ms of CPU (cold caches), so the session sleeps between
        # drains when it can.
        self._wake = threading.Event()
        self._interrupted = False
        polled = False
        for c in self.collectors:
            if hasattr(c, "on_finish"):
                c.on_finish = self._wake.set  # type: ignore[attr-defined]
            elif getattr(c, "finished", None) is not None:
                polled = True
        if poll_interval is None:
            poll_interval = 0.5 if polled else drain_interval
        self.poll_interval = min(poll_interval, drain_interval)
        self.batch_hooks: List[BatchHook] = []

    def stop(self) -> None:
        """Ends the session now (thread-safe, signal-safe)."""
        self._interrupted = True
        self._wake.set()

    def _drain(self) -> None:
        batches = [c.drain() for c in self.collectors]
        for hook in self.batch_hooks:
            batches = hook(batches)
        for b in batches:
            self.aggregator.add(b)

    def _all_exited(self) -> bool:
        flags = [getattr(c, "finished", None) for c in self.collectors]
        known = [f for f in flags if f is not None]
        return bool(known) and all(known)

    def _stats(self) -> Dict[str, Dict[str, float]]:
        return {c.name: c.stats() for c in self.collectors}

    def run(
        self,
        duration: Optional[float] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> SessionResult:
        """Collects until ``duration`` seconds pass (None: until Ctrl-C or the targets exit).

        Ctrl-C (SIGINT) and SIGTERM end the session cleanly; what was collected is returned.
        """
        start_wall = time.time_ns()
        start = time.monotonic()
        reason = END_DURATION
        previous = {}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda *_: self.stop())
        started: List[Collector] = []
        try:
            for c in self.collectors:
                c.start()
                started.append(c)
            deadline = None if duration is None else start + duration
            next_drain = start + self.drain_interval
            while True:
                now = time.monotonic()
                wait = min(self.poll_interval, max(next_drain - now, 0.0))
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                if self._wake.wait(wait):
                    if self._interrupted:
                        reason = END_INTERRUPTED
                        break
                    self._wake.clear()  # a collector's target ended: see if all did
                # The last drain happens after the loop, whatever ended it.
                if self._all_exited():
                    reason = END_TARGET_EXITED
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_drain:
                    self._drain()
                    next_drain = now + self.drain_interval
                    if on_progress:
                        on_progress(Progress(now - start, self.aggregator.samples, self._stats()))
        except KeyboardInterrupt:
            reason = END_INTERRUPTED
        finally:
            for c in started:
                # One collector failing to stop must not lose the others' data.
                with contextlib.suppress(Exception):
                    c.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._drain()
        if reason != END_TARGET_EXITED and self._all_exited():
            reason = END_TARGET_EXITED
        elapsed = time.monotonic() - start
        profile = self.aggregator.profile
        profile.windows.append(Window(start_wall, int(elapsed * 1e9)))
        agg = self.aggregator
        return SessionResult(
            profile=profile,
            reason=reason,
            elapsed=elapsed,
            samples=agg.samples,
            stats=self._stats(),
            lost=agg.lost,
            missed=agg.missed,
            late=agg.late,
        )
