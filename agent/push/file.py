"""File sink: writes each window's series as ``.pprof`` files into a folder (for debugging).

Files are named ``<window start>-<series id>.pprof`` and written atomically, so a reader never
sees a partial file and a retried batch overwrites its own files instead of adding copies.
"""

from __future__ import annotations

import gzip
import os
import re

from hostprof.push import PushBatch
from hostprof.push import PushError


class FileSink:
    """Writes gzipped pprof files (readable by ``go tool pprof`` and ``hostprof convert``)."""

    name = "file"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def send(self, batch: PushBatch, timeout: float) -> None:
        """Writes every series of ``batch``; raises PushError (retryable) on I/O errors."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            for s in batch.series:
                labels = dict(s.labels)
                stem = re.sub(
                    r"[^A-Za-z0-9_.-]",
                    "_",
                    f"{batch.start_ns}-{labels.get('service_name', 'x')}-{s.sample_id}",
                )
                path = os.path.join(self.directory, stem + ".pprof")
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(gzip.compress(s.profile, mtime=0))
                os.replace(tmp, path)
        except OSError as exc:
            raise PushError(
                f"cannot write {self.directory}: {exc.strerror}", retryable=True
            ) from None

    def close(self) -> None:
        """Nothing to release."""
