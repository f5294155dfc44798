"""Collectors: each turns one source of events into RawBatches. See _base.Collector."""

from hostprof.collectors._base import Collector
from hostprof.collectors._batch import FLAG_GC
from hostprof.collectors._batch import FLAG_GIL
from hostprof.collectors._batch import FLAG_IDLE
from hostprof.collectors._batch import RawBatch

__all__ = ["FLAG_GC", "FLAG_GIL", "FLAG_IDLE", "Collector", "RawBatch"]
