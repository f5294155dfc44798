"""The collector interface every collector implements (shape after OTel's Loader/Instance split).

A collector class has a ``probe`` classmethod that returns an instance, or None when it does
not apply on this machine or to this target; it raises only on a real failure. An instance is
started once, drained periodically (one RawBatch per drain), and stopped.
"""

from __future__ import annotations

from typing import Dict
from typing import Optional
from typing import Sequence

from hostprof.collectors._batch import RawBatch


class Collector:
    """Base class with no-op defaults, so a collector overrides only what it uses."""

    name: str = "collector"
    """Short name used on the command line (``--collect cpu,offcpu``) and in labels."""

    @classmethod
    def probe(cls, pids: Optional[Sequence[int]] = None, **options: object) -> Optional[Collector]:
        """Returns a ready collector for ``pids`` (None: the whole host), or None if N/A."""
        return cls()

    def start(self) -> None:
        """Begins collecting (attach probes, start threads)."""

    def drain(self) -> RawBatch:
        """Returns everything collected since the last drain."""
        raise NotImplementedError

    def stop(self) -> None:
        """Detaches and releases resources. Safe to call twice."""

    def stats(self) -> Dict[str, float]:
        """Counters for status and /metrics (lost events, overhead seconds, ...)."""
        return {}
