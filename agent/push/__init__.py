"""Push sinks: where finished windows go (connect push, legacy ingest, a folder).

Every sink takes a :class:`PushBatch` (one window of one or more series) and either returns
normally (the store has it) or raises :class:`PushError` saying whether a retry can help.
The spool (:mod:`hostprof.push.spool`) keeps batches that failed, as bytes, so a batch is
built once and its sample ids never change between retries.
"""

from __future__ import annotations

import dataclasses
from typing import Callable
from typing import List
from typing import Optional
from typing import Protocol
from typing import Tuple

from hostprof.proto import messages

LabelPairs = Tuple[Tuple[str, str], ...]


class PushError(Exception):
    """A push failed.

    Attributes:
        retryable: True when the same batch may succeed later (store down, 5xx, 429,
            timeout); False when the store rejected it for good (400, 413), in which case it
            is dropped and counted.
    """

    def __init__(self, message: str, retryable: bool, status: int = 0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        """HTTP status, or 0 when there was no HTTP response."""


@dataclasses.dataclass(frozen=True)
class Series:
    """One profile series of a window: its labels and one pprof profile."""

    labels: LabelPairs
    """Series labels, including ``__name__`` and ``service_name``."""
    profile: bytes
    """The pprof ``Profile`` (serialized, not gzipped: the request as a whole is)."""
    sample_id: str
    """Stable id of this (target, profile type, window): the store drops repeats."""


@dataclasses.dataclass(frozen=True)
class PushBatch:
    """A unit of push and of spooling: one window's series."""

    batch_id: str
    """Stable id (also the spool file name)."""
    start_ns: int
    """Window start (wall clock, ns)."""
    duration_ns: int
    """Window length (ns)."""
    series: Tuple[Series, ...]

    def to_request(self):
        """The ``push.v1.PushRequest`` message for this batch."""
        req = messages("push.v1.PushRequest")()
        for s in self.series:
            rs = req.series.add()
            for k, v in s.labels:
                rs.labels.add(name=k, value=v)
            rs.samples.add(raw_profile=s.profile, ID=s.sample_id)
        return req

    def to_bytes(self) -> bytes:
        """Serializes the batch (a PushRequest; window times ride in a header series)."""
        req = self.to_request()
        meta = req.series.add()
        meta.labels.add(name="__hostprof_batch__", value=self.batch_id)
        meta.labels.add(name="start_ns", value=str(self.start_ns))
        meta.labels.add(name="duration_ns", value=str(self.duration_ns))
        return req.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> PushBatch:
        """Parses :meth:`to_bytes` output. Raises ValueError on anything else."""
        req = messages("push.v1.PushRequest").FromString(data)
        if not req.series or not req.series[-1].labels:
            raise ValueError("not a hostprof spool record")
        meta = {lp.name: lp.value for lp in req.series[-1].labels}
        if "__hostprof_batch__" not in meta:
            raise ValueError("not a hostprof spool record")
        series: List[Series] = []
        for rs in req.series[:-1]:
            labels = tuple((lp.name, lp.value) for lp in rs.labels)
            for sample in rs.samples:
                series.append(Series(labels, bytes(sample.raw_profile), sample.ID))
        return cls(
            meta["__hostprof_batch__"],
            int(meta["start_ns"]),
            int(meta["duration_ns"]),
            tuple(series),
        )


class Sink(Protocol):
    """A destination for windows."""

    name: str
    """Short name for logs and metrics (``push``, ``ingest``, ``file``)."""

    def send(self, batch: PushBatch, timeout: float) -> None:
        """Delivers ``batch`` or raises :class:`PushError`."""
        ...

    def close(self) -> None:
        """Releases connections."""
        ...


def make_sink(store) -> Sink:
    """The sink for a :class:`hostprof.config.StoreConfig`."""
    if store.url.startswith("file://"):
        from hostprof.push.file import FileSink

        return FileSink(store.url[len("file://") :])
    if store.protocol == "ingest":
        from hostprof.push.ingest import IngestSink

        return IngestSink(store)
    from hostprof.push.connect import ConnectSink

    return ConnectSink(store)


def make_fallback(store) -> Optional[Callable[[], Sink]]:
    """For connect push to an HTTP store: a factory for the ``/ingest`` sink, used when the
    store answers 404/405 on the push endpoint (a Pyroscope older than 1.0)."""
    if store.url.startswith("file://") or store.protocol != "push":
        return None

    def ingest() -> Sink:
        from hostprof.push.ingest import IngestSink

        return IngestSink(store)

    return ingest


__all__ = ["PushBatch", "PushError", "Series", "Sink", "make_fallback", "make_sink"]
