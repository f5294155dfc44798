"""Connect push: ``POST /push.v1.PusherService/Push`` (what Grafana Pyroscope speaks today).

The request is a gzipped ``PushRequest``; each series carries one ``RawSample`` whose ``ID``
is stable per (target, profile type, window), so a retried push is dropped as a repeat.
"""

from __future__ import annotations

import gzip

from hostprof.push import PushBatch
from hostprof.push._http import auth_headers
from hostprof.push._http import post

PATH = "/push.v1.PusherService/Push"


class ConnectSink:
    """Pushes batches with the connect unary protocol over HTTP/1.1."""

    name = "push"

    def __init__(self, store) -> None:
        self.url = store.url + PATH
        self.headers = auth_headers(store)
        self.headers.update(
            {
                "Content-Type": "application/proto",
                "Content-Encoding": "gzip",
                "Connect-Protocol-Version": "1",
            }
        )

    def encode(self, batch: PushBatch) -> bytes:
        """The exact request body sent for ``batch`` (for size measurements)."""
        return gzip.compress(batch.to_request().SerializeToString(), compresslevel=6, mtime=0)

    def send(self, batch: PushBatch, timeout: float) -> None:
        """Pushes ``batch``; raises PushError on failure."""
        if batch.series:
            post(self.url, self.encode(batch), self.headers, timeout)

    def close(self) -> None:
        """Nothing to release: one connection per request."""
