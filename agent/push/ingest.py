"""Legacy ingest: ``POST /ingest?name=<app>.<type>{labels}&from=&until=&format=pprof``.

One request per series. The legacy API has no sample id, so a batch remembers which of its
series were accepted and a retry sends only the rest (no duplicates within one agent run).
"""

from __future__ import annotations

import gzip
import urllib.parse
from typing import Dict
from typing import Set

from hostprof.push import PushBatch
from hostprof.push import PushError
from hostprof.push import Series
from hostprof.push._http import auth_headers
from hostprof.push._http import post


def app_name(series: Series) -> str:
    """``service_name.profile{k=v,...}``: the legacy application name with its tags."""
    labels = dict(series.labels)
    service = labels.pop("service_name", "unknown")
    kind = labels.pop("__name__", "cpu")
    tags = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{service}.{kind}{{{tags}}}"


class IngestSink:
    """Pushes each series of a batch to ``/ingest`` as pprof."""

    name = "ingest"

    def __init__(self, store) -> None:
        self.base = store.url + "/ingest"
        self.headers = auth_headers(store)
        self.headers["Content-Type"] = "application/octet-stream"
        self._done: Dict[str, Set[str]] = {}

    def send(self, batch: PushBatch, timeout: float) -> None:
        """Sends every series not yet accepted; raises PushError on the first failure."""
        done = self._done.setdefault(batch.batch_id, set())
        start_s = batch.start_ns // 1_000_000_000
        until_s = (batch.start_ns + batch.duration_ns + 999_999_999) // 1_000_000_000
        for s in batch.series:
            if s.sample_id in done:
                continue
            query = urllib.parse.urlencode(
                {
                    "name": app_name(s),
                    "from": start_s,
                    "until": until_s,
                    "format": "pprof",
                    "spyName": "hostprof",
                }
            )
            try:
                post(
                    f"{self.base}?{query}", gzip.compress(s.profile, mtime=0), self.headers, timeout
                )
            except PushError as exc:
                if not exc.retryable:
                    self._done.pop(batch.batch_id, None)  # dropped for good: forget it
                raise
            done.add(s.sample_id)
        self._done.pop(batch.batch_id, None)

    def close(self) -> None:
        """Forgets partial progress."""
        self._done.clear()
