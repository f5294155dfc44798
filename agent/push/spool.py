"""The on-disk spool: windows whose push failed wait here, oldest first, bounded in size.

Crash safety: a record is written to ``.tmp-<name>``, fsynced, renamed to ``<name>.win`` and the
folder is fsynced. A SIGKILL mid-write leaves at most a ``.tmp-`` file, which is deleted when
the spool opens; it is never read. Each record also carries a length and CRC32, so a torn file
(e.g. after a power cut on a file system that reorders the rename) is detected, counted as
corrupt and skipped rather than pushed.

No duplicates: the file name is the window start plus the batch id, so spooling the same batch
again replaces its file instead of adding a copy, and a record is deleted as soon as its push
succeeds (the store also drops repeated sample ids).

Bound: when a new record would take the spool over ``max_bytes``, the oldest records are
deleted and counted in ``dropped`` (and logged by the daemon): never silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
import time
import zlib
from typing import List
from typing import Optional
from typing import Tuple

from hostprof.push import PushBatch

log = logging.getLogger("hostprof.agent")

MAGIC = b"HPSPOOL1"
_HEADER = struct.Struct("<8sII")  # magic, payload length, crc32(payload)
_SUFFIX = ".win"
_TMP_PREFIX = ".tmp-"
_CHUNK = 64 * 1024
_NAME = re.compile(r"^(\d{20})-([A-Za-z0-9_-]+)\.win$")

# Test hook: seconds to sleep between written chunks, so a test can SIGKILL the agent while a
# record is being written. Unset in production.
_WRITE_DELAY_ENV = "HOSTPROF_TEST_SPOOL_WRITE_DELAY_S"


class Spool:
    """A folder of pending windows.

    Args:
        directory: created if missing (mode 0700: profiles can contain code paths).
        max_bytes: size bound; the oldest records are dropped (and counted) beyond it.
    """

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max(int(max_bytes), 1)
        self.dropped = 0
        """Windows deleted to respect the bound."""
        self.dropped_bytes = 0
        self.corrupt = 0
        """Records found torn or unreadable (deleted, never pushed)."""
        self.partial_removed = 0
        """Leftover ``.tmp-`` files from an interrupted write, removed at open."""
        self._lock = threading.Lock()
        self._entries: List[Tuple[str, int]] = []  # (file name, size), oldest first
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------------ state
    def _load(self) -> None:
        entries = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.startswith(_TMP_PREFIX):
                # An interrupted write: never read, just remove.
                _unlink(path)
                self.partial_removed += 1
            elif _NAME.match(name):
                with contextlib.suppress(OSError):
                    entries.append((name, os.path.getsize(path)))
        entries.sort()
        self._entries = entries
        if self.partial_removed:
            _fsync_dir(self.directory)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk in complete records."""
        with self._lock:
            return sum(size for _, size in self._entries)

    def names(self) -> List[str]:
        """Record file names, oldest first."""
        with self._lock:
            return [n for n, _ in self._entries]

    # ------------------------------------------------------------------------ writing
    def put(self, batch: PushBatch) -> None:
        """Stores ``batch`` durably (atomic write + fsync). Drops the oldest beyond the bound.

        Raises:
            OSError: the record could not be written (disk full...); the caller counts the
                window as dropped.
        """
        payload = batch.to_bytes()
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        name = f"{max(batch.start_ns, 0):020d}-{batch.batch_id}{_SUFFIX}"
        with self._lock:
            self._make_room(len(record), replacing=name)
        final = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f"{_TMP_PREFIX}{name}")
        delay = float(os.environ.get(_WRITE_DELAY_ENV) or 0)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for i in range(0, len(record), _CHUNK):
                os.write(fd, record[i : i + _CHUNK])
                if delay:
                    time.sleep(delay)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        with self._lock:
            self._entries = [e for e in self._entries if e[0] != name]
            self._entries.append((name, len(record)))
            self._entries.sort()

    def _make_room(self, incoming: int, replacing: str) -> None:
        total = sum(size for n, size in self._entries if n != replacing)
        while self._entries and total + incoming > self.max_bytes:
            name, size = self._entries.pop(0)
            if name == replacing:
                continue
            _unlink(os.path.join(self.directory, name))
            total -= size
            self.dropped += 1
            self.dropped_bytes += size
            log.warning("spool full (%d bytes max): dropped oldest window %s", self.max_bytes, name)

    # ------------------------------------------------------------------------ reading
    def oldest(self) -> Optional[Tuple[str, PushBatch]]:
        """The oldest readable record as (name, batch), deleting corrupt ones on the way."""
        while True:
            with self._lock:
                if not self._entries:
                    return None
                name = self._entries[0][0]
            batch = self._read(name)
            if batch is not None:
                return name, batch
            with self._lock:
                self._entries = [e for e in self._entries if e[0] != name]
            self.corrupt += 1
            log.error("spool record %s is torn or unreadable: deleted, not pushed", name)
            _unlink(os.path.join(self.directory, name))

    def _read(self, name: str) -> Optional[PushBatch]:
        try:
            with open(os.path.join(self.directory, name), "rb") as f:
                data = f.read()
        except OSError:
            return None
        if len(data) < _HEADER.size:
            return None
        magic, length, crc = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if magic != MAGIC or length != len(payload) or zlib.crc32(payload) != crc:
            return None
        try:
            return PushBatch.from_bytes(payload)
        except Exception:
            return None

    def remove(self, name: str) -> None:
        """Deletes a record after its push succeeded (or was rejected for good)."""
        with self._lock:
            self._entries = [e for e in self._entries if e[0] != name]
        _unlink(os.path.join(self.directory, name))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
