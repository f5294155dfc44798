"""The sender thread: pushes finished windows, spools the ones that fail, retries the spool.

Order is kept oldest first: while anything waits in the spool (or a retry delay is running),
new windows go to the spool behind it instead of overtaking it. Retry delays grow
exponentially from ``retry_min_s`` to ``retry_max_s`` with full jitter, so many agents do not
hit a recovering store in lockstep.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from typing import Callable
from typing import Optional

from hostprof.metrics import Metrics
from hostprof.push import PushBatch
from hostprof.push import PushError
from hostprof.push import Sink
from hostprof.push.spool import Spool

log = logging.getLogger("hostprof.agent")


class Sender:
    """Owns the sink and the spool; fed through :meth:`submit` from the daemon loop."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        metrics: Metrics,
        timeout_s: float,
        retry_min_s: float,
        retry_max_s: float,
        fallback: Optional[Callable[[], Sink]] = None,
    ) -> None:
        self.sink = sink
        self.fallback = fallback
        """Makes the /ingest sink if the store has no connect push endpoint (404/405)."""
        self.spool = spool
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.last_push_ok_ns = 0
        self.last_error = ""
        self._failures = 0
        self._next_retry = 0.0
        self._inflight: Optional[PushBatch] = None
        self._queue: queue.Queue[Optional[PushBatch]] = queue.Queue()
        self._lock = threading.Lock()  # one push at a time (thread vs shutdown flush)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostprof-sender", daemon=True)

    def start(self) -> None:
        """Starts the thread."""
        self._thread.start()

    def submit(self, batch: PushBatch) -> None:
        """Queues a finished window (never blocks)."""
        self._queue.put(batch)

    def set_sink(self, sink: Sink, fallback: Optional[Callable[[], Sink]] = None) -> None:
        """Switches destination (config reload); pending windows go to the new one."""
        with self._lock:
            old, self.sink = self.sink, sink
            self.fallback = fallback
            self._next_retry = 0.0
            self._failures = 0
        old.close()

    # --------------------------------------------------------------------------- loop
    def _run(self) -> None:
        while not self._stop.is_set():
            wait = max(0.05, min(1.0, self._next_retry - time.monotonic()))
            if not len(self.spool):
                wait = 1.0
            try:
                batch = self._queue.get(timeout=wait)
            except queue.Empty:
                batch = None
            try:
                with self._lock:
                    if batch is not None:
                        self._handle_new(batch, self.timeout_s)
                    self._retry_spool(deadline=None)
            except Exception:  # never let the sender die: windows would pile up unseen
                log.exception("sender error")
                self.metrics.inc("hostprof_agent_internal_errors_total", component="sender")

    def _handle_new(self, batch: PushBatch, timeout: float) -> None:
        if len(self.spool) or time.monotonic() < self._next_retry:
            self._to_spool(batch)
            return
        self._inflight = batch
        try:
            self._push(batch, timeout)
        except PushError as exc:
            if exc.retryable:
                self._failed(exc)
                self._to_spool(batch)
            else:
                self._rejected(batch, exc)
        finally:
            self._inflight = None

    def _retry_spool(self, deadline: Optional[float]) -> None:
        while len(self.spool) and time.monotonic() >= self._next_retry:
            if deadline is not None and time.monotonic() >= deadline:
                return
            item = self.spool.oldest()
            if item is None:
                return
            name, batch = item
            timeout = self.timeout_s
            if deadline is not None:
                timeout = max(0.2, min(timeout, deadline - time.monotonic()))
            try:
                self._push(batch, timeout)
            except PushError as exc:
                if not exc.retryable:
                    self._rejected(batch, exc)
                    self.spool.remove(name)
                    continue
                self._failed(exc)
                return
            self.spool.remove(name)
            self.metrics.inc("hostprof_agent_windows_retried_total")
            self._update_spool_gauges()
            if not self._queue.empty() and deadline is None:
                # Keep order: anything new goes behind what is still spooled.
                return

    # ----------------------------------------------------------------------- helpers
    def _push(self, batch: PushBatch, timeout: float) -> None:
        t0 = time.monotonic()
        try:
            self.sink.send(batch, timeout)
        except PushError as exc:
            if exc.status not in (404, 405) or self.fallback is None:
                raise
            # A store without the connect push endpoint (an older Pyroscope): use /ingest.
            old, self.sink, self.fallback = self.sink, self.fallback(), None
            old.close()
            log.warning("%s: falling back to the legacy /ingest API", exc)
            self.sink.send(batch, timeout)
        self.metrics.observe("hostprof_agent_push_seconds", time.monotonic() - t0)
        self.metrics.inc("hostprof_agent_windows_pushed_total", len(batch.series))
        self.metrics.inc("hostprof_agent_push_batches_total")
        self.last_push_ok_ns = time.time_ns()
        self._failures = 0
        self._next_retry = 0.0

    def _failed(self, exc: PushError) -> None:
        self._failures += 1
        delay = min(self.retry_max_s, self.retry_min_s * 2 ** min(self._failures - 1, 20))
        delay = random.uniform(delay / 2, delay)  # jitter (half-full: never retry instantly)
        self._next_retry = time.monotonic() + delay
        self.metrics.inc("hostprof_agent_push_failures_total")
        if str(exc) != self.last_error or self._failures in (1, 10, 100):
            log.warning("push failed (%s); retrying in %.1f s", exc, delay)
        self.last_error = str(exc)

    def _rejected(self, batch: PushBatch, exc: PushError) -> None:
        self.metrics.inc(
            "hostprof_agent_windows_dropped_total", len(batch.series), reason="rejected"
        )
        self.last_error = str(exc)
        log.error("store rejected window %s (%s): dropped", batch.batch_id, exc)

    def _to_spool(self, batch: PushBatch) -> None:
        before = self.spool.dropped
        try:
            self.spool.put(batch)
        except OSError as exc:
            self.metrics.inc(
                "hostprof_agent_windows_dropped_total", len(batch.series), reason="spool_error"
            )
            log.error("cannot spool window %s (%s): dropped", batch.batch_id, exc.strerror)
            return
        self.metrics.inc("hostprof_agent_windows_spooled_total", len(batch.series))
        if self.spool.dropped > before:
            self.metrics.inc(
                "hostprof_agent_windows_dropped_total",
                self.spool.dropped - before,
                reason="spool_full",
            )
        self._update_spool_gauges()

    def _update_spool_gauges(self) -> None:
        self.metrics.set("hostprof_agent_spool_windows", len(self.spool))
        self.metrics.set("hostprof_agent_spool_bytes", self.spool.size_bytes)

    # ---------------------------------------------------------------------- shutdown
    def flush_and_stop(self, budget_s: float) -> None:
        """Stops the thread, then pushes or spools everything queued within ``budget_s``.

        Queued windows that cannot be pushed in time are spooled (fast: one fsync each), so
        nothing is lost on SIGTERM.
        """
        deadline = time.monotonic() + budget_s
        self._stop.set()
        self._thread.join(timeout=max(0.1, budget_s / 2))
        # The thread may be stuck in a push to a store that accepts but never answers: do not
        # wait for its timeout. Spool its in-flight window too (if that push did land, the
        # store drops the repeat by its sample id).
        got = self._lock.acquire(timeout=max(0.05, deadline - time.monotonic() - 1.0))
        try:
            if not got and self._inflight is not None:
                self._to_spool(self._inflight)
            while True:
                try:
                    batch = self._queue.get_nowait()
                except queue.Empty:
                    break
                remaining = deadline - time.monotonic()
                if got and remaining > 1.0:
                    self._handle_new(batch, min(self.timeout_s, remaining - 0.8))
                else:
                    self._to_spool(batch)
        finally:
            if got:
                self.sink.close()
                self._lock.release()

    def state(self) -> dict:
        """For status."""
        return {
            "sink": self.sink.name,
            "last_push_ok_ns": self.last_push_ok_ns,
            "last_error": self.last_error,
            "consecutive_failures": self._failures,
            "spool_windows": len(self.spool),
            "spool_bytes": self.spool.size_bytes,
            "spool_dropped": self.spool.dropped,
            "spool_corrupt": self.spool.corrupt,
            "queued": self._queue.qsize(),
        }
