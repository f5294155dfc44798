"""Profile storage on SQLite: deduplicated stacks, per-day partitions, minute and hour rollups.

Layout (one database file, WAL mode so readers never wait for the writer):

* ``names(id, name)``: interned function names.
* ``stacks(id, frames)``: every distinct stack once, as a blob of uint32 name ids, leaf first.
  In memory the stacks live in :class:`hostprof.native._core.StackTable`, which interns a
  whole payload's stacks in C.
* ``series(id, tenant, profile_type, labels, ...)``: one row per (tenant, profile type, label
  set). Tenants are separated here: every sample belongs to exactly one tenant's series.
* Per UTC day ``D`` (a partition; retention drops whole partitions):
  ``raw_D(series, ts, total, data)``: one row per pushed window (10 s), whose ``data`` blob
  holds the window's samples, i.e. the (stack id, value) pairs of that (series, window);
  ``min_D`` and ``hour_D``: the same, merged per minute and per hour.
* ``partitions(day, rolled)``: the raw rowid up to which the rollups include ``raw_D``.

A blob is ``n`` int64 values followed by ``n`` uint32 stack ids, sorted by stack id. One row
per window instead of one per sample keeps ingest at a few SQLite operations per push, and a
day of one service reads 24 hour blobs.

Rollups are built incrementally by rowid, not by time: every raw row is merged into its minute
and hour rows exactly once, by the writer, a few seconds after it lands, so late data is
rolled up like any other. A query reads whole hours from ``hour_D``, whole minutes from
``min_D``, the ragged edges from ``raw_D``, and adds the raw rows not rolled up yet (rowid >
``rolled``), all inside one read transaction, so the answer is exact at any moment.

Writes go through one writer thread that commits many uploads per transaction (group commit):
an upload's future resolves only after its transaction is committed, so an acknowledged push
survives ``kill -9`` of the server.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

import numpy as np

from hostprof._errors import StorageError
from hostprof.native._core import StackTable
from hostprof.store.decode import SeriesData
from hostprof.store.decode import StackBatch
from hostprof.store.decode import Upload
from hostprof.store.query import Query

DAY = 86400
HOUR = 3600
MINUTE = 60
ROLL_INTERVAL = 10.0
"""Seconds between rollup passes of the writer. Longer passes merge more windows per minute
and hour row (cheaper per push); queries stay exact either way."""
ROLL_BUDGET = 0.5
"""Seconds one rollup pass may hold the writer (it continues on the next pass)."""
ROLL_ROWS = 20000
"""Raw rows merged per rollup transaction at most (keeps the write lock short)."""
MAX_BATCH = 512
"""Uploads per write transaction at most."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stacks(id INTEGER PRIMARY KEY, frames BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
    profile_type TEXT NOT NULL, labels TEXT NOT NULL, first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL, spy_name TEXT NOT NULL DEFAULT '',
    sample_rate INTEGER NOT NULL DEFAULT 0, UNIQUE(tenant, profile_type, labels));
CREATE TABLE IF NOT EXISTS seen(tenant TEXT NOT NULL, id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY(tenant, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions(day INTEGER PRIMARY KEY, rolled INTEGER NOT NULL)
"""

_PARTITION = """
CREATE TABLE IF NOT EXISTS raw_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    total INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS raw_{d}_st ON raw_{d}(series, ts, total);
CREATE TABLE IF NOT EXISTS min_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    total INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE(series, ts));
CREATE TABLE IF NOT EXISTS hour_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    total INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE(series, ts))
"""


def pack(stack_ids: np.ndarray, values: np.ndarray) -> bytes:
    """Encodes (stack id, value) pairs as a blob, merging repeated ids and dropping zeros."""
    ids, vals = merge_pairs(stack_ids, values)
    return vals.astype("<i8").tobytes() + ids.astype("<u4").tobytes()


def unpack(blob: bytes) -> Tuple[np.ndarray, np.ndarray]:
    """Decodes a blob into (stack ids uint32, values int64)."""
    n = len(blob) // 12
    vals = np.frombuffer(blob, dtype="<i8", count=n)
    ids = np.frombuffer(blob, dtype="<u4", count=n, offset=8 * n)
    return ids, vals


def merge_pairs(ids: np.ndarray, vals: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sums values per id (exact int64); returns ids sorted, without zero sums."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    sums = np.add.reduceat(vals[order].astype(np.int64), starts)
    keep = sums != 0
    return ids[starts][keep].astype(np.uint32), sums[keep]


def merge_blobs(blobs: Sequence[bytes]) -> Tuple[np.ndarray, np.ndarray]:
    """Sums many blobs into one (ids, values) pair."""
    if not blobs:
        return merge_pairs(np.zeros(0, np.uint32), np.zeros(0, np.int64))
    parts = [unpack(b) for b in blobs]
    return merge_pairs(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


@dataclasses.dataclass
class SeriesInfo:
    """One stored series."""

    id: int
    tenant: str
    profile_type: str
    labels: Dict[str, str]
    first_ts: int
    last_ts: int
    spy_name: str = ""
    sample_rate: int = 0


@dataclasses.dataclass
class WriteResult:
    """What one upload did."""

    stored: int
    """Series samples written."""
    duplicate: bool
    """The upload's id was seen before; nothing was written."""


class Backend:
    """The storage interface the HTTP server uses. :class:`SQLiteBackend` implements it."""

    def submit(self, tenant: str, uploads: List[Upload]) -> concurrent.futures.Future:
        """Queues uploads for writing; the future resolves to ``List[WriteResult]`` once
        they are durable (or raises :class:`StorageError`)."""
        raise NotImplementedError

    def write(self, tenant: str, uploads: List[Upload]) -> List[WriteResult]:
        """Writes uploads and waits until they are durable."""
        return self.submit(tenant, uploads).result()

    def series(self, tenant: str, query: Optional[Query], start: int, end: int) -> List[SeriesInfo]:
        """Series of ``tenant`` matching ``query`` (type and labels) with data in [start, end)."""
        raise NotImplementedError

    def merge(self, series_ids: Sequence[int], start: int, end: int) -> Dict[int, int]:
        """Sums sample values per stack id over [start, end) seconds."""
        raise NotImplementedError

    def totals(
        self, series_ids: Sequence[int], start: int, end: int, step: int
    ) -> Dict[Tuple[int, int], int]:
        """Per (series id, bucket index) totals, buckets of ``step`` seconds from ``start``."""
        raise NotImplementedError

    def stack_names(self, stack_ids: Sequence[int]) -> Dict[int, Tuple[str, ...]]:
        """Function names of stacks, root first."""
        raise NotImplementedError

    def stack_arrays(self, max_id: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """Every stack as (frames: name ids, leaf first; offsets; names), covering at least
        ids up to ``max_id`` when stored (for building flame trees in C)."""
        raise NotImplementedError

    def apply_retention(self, keep_seconds: int, now: Optional[float] = None) -> int:
        """Drops partitions older than ``keep_seconds``; returns how many were dropped."""
        raise NotImplementedError

    def close(self) -> None:
        """Flushes pending writes and closes."""


class SQLiteBackend(Backend):
    """:class:`Backend` on one SQLite database file.

    Args:
        path: database file (created with its folder when missing).
        readonly: open for reading only (the CLI's ``query``/``ls`` next to a running server).
        retention: seconds of data to keep (0: forever); applied by the writer hourly.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False, retention: int = 0):
        self.path = Path(path)
        self.readonly = readonly
        self.retention = retention
        self._lockfile = None
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lockfile = _exclusive_lock(Path(f"{self.path}.lock"))
        elif not self.path.exists():
            raise StorageError(
                f"no store database at {self.path}", "start 'hostprof store serve' first"
            )
        self._local = threading.local()
        # Guards the in-memory tables below. StackTable.intern_many runs without the GIL, so
        # readers must not call get() while the writer interns.
        self._lock = threading.RLock()
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._writer: Optional[threading.Thread] = None
        self._wconn: Optional[sqlite3.Connection] = None
        self._last_roll = time.time()
        self._last_retention = 0.0
        self._reset_caches()
        try:
            if not readonly:
                self._wconn = self._connect()
                self._wconn.executescript(_SCHEMA)
            self._load()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open store database {self.path}: {exc}") from None
        if not readonly:
            self._writer = threading.Thread(
                target=self._write_loop, name="store-writer", daemon=True
            )
            self._writer.start()

    def _reset_caches(self) -> None:
        self._names: List[str] = []
        self._name_ids: Dict[str, int] = {}
        self._stacks = StackTable(65536)
        # StackTable.export() of the last flame-tree query, reused until stacks are added.
        self._exported: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._series: Dict[int, SeriesInfo] = {}
        self._series_ids: Dict[Tuple[str, str, str], int] = {}
        # (tenant, type, sorted label pairs) -> id: skips JSON encoding on the hot path.
        self._series_fast: Dict[Tuple[str, str, Tuple[Tuple[str, str], ...]], int] = {}
        self._partitions: Dict[int, int] = {}

    # ------------------------------------------------------------------------- connections
    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        else:
            # The writer connection is opened here and then used only by the writer thread.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit is in the OS before it returns, so a killed server
            # loses nothing it acknowledged; only a power cut can drop the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _load(self) -> None:
        conn = self._wconn or self._reader()
        with self._lock:
            self._load_names_and_stacks(conn)
            self._load_series(conn)
            self._partitions = dict(conn.execute("SELECT day, rolled FROM partitions"))

    def _load_names_and_stacks(self, conn: sqlite3.Connection) -> None:
        for nid, name in conn.execute(
            "SELECT id, name FROM names WHERE id >= ? ORDER BY id", (len(self._names),)
        ):
            if nid != len(self._names):
                raise StorageError(f"store database {self.path} has a gap in its name table")
            self._names.append(name)
            self._name_ids[name] = nid
        rows = conn.execute(
            "SELECT id, frames FROM stacks WHERE id >= ? ORDER BY id", (len(self._stacks),)
        ).fetchall()
        if rows:
            base = len(self._stacks)
            lens = np.fromiter((len(r[1]) // 4 for r in rows), dtype=np.int64, count=len(rows))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<u4")
            ids = self._stacks.intern_many(flat, offsets)
            expect = np.arange(base, base + len(rows), dtype=np.uint32)
            if rows[0][0] != base or not np.array_equal(ids, expect):
                raise StorageError(f"store database {self.path} has an inconsistent stack table")

    def _load_series(self, conn: sqlite3.Connection) -> None:
        self._series, self._series_ids, self._series_fast = {}, {}, {}
        for row in conn.execute(
            "SELECT id, tenant, profile_type, labels, first_ts, last_ts, spy_name, "
            "sample_rate FROM series"
        ):
            info = SeriesInfo(row[0], row[1], row[2], dict(json.loads(row[3])), *row[4:])
            self._series[info.id] = info
            self._series_ids[(info.tenant, info.profile_type, row[3])] = info.id

    # ------------------------------------------------------------------------- writing
    def submit(self, tenant: str, uploads: List[Upload]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.readonly or self._writer is None:
            fut.set_exception(StorageError("the store is open read-only"))
            return fut
        self._queue.put((tenant, uploads, fut))
        return fut

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=ROLL_INTERVAL)
            except queue.Empty:
                self._housekeeping()
                continue
            if item is None:
                break
            if item[0] is None:  # flush(): roll up now, then report
                try:
                    while self.roll_up():
                        pass
                    item[2].set_result([])
                except Exception as exc:
                    item[2].set_exception(_storage_error(exc))
                continue
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt[0] is None:
                    self._queue.put(nxt)
                    break
                batch.append(nxt)
            try:
                self._write_batch(batch)
            except BaseException as exc:  # never leave a caller waiting on a dead writer
                for it in batch:
                    if not it[2].done():
                        it[2].set_exception(_storage_error(exc))
            self._housekeeping()
        self._housekeeping(force=True)

    def _write_batch(self, batch: List[tuple]) -> None:
        try:
            results = self._transaction(batch)
        except Exception:
            # One bad upload must not fail its neighbours: retry each on its own.
            self._reload_after_error()
            for item in batch:
                try:
                    res = self._transaction([item])[0]
                except Exception as exc:
                    self._reload_after_error()
                    item[2].set_exception(_storage_error(exc))
                else:
                    item[2].set_result(res)
            return
        for item, res in zip(batch, results):
            item[2].set_result(res)

    def _reload_after_error(self) -> None:
        # The caches may hold ids from a rolled-back transaction: rebuild them from disk.
        with self._lock:
            self._reset_caches()
            self._load()

    def _transaction(self, batch: List[tuple]) -> List[List[WriteResult]]:
        conn = self._wconn
        assert conn is not None
        results: List[List[WriteResult]] = []
        rows: Dict[int, List[Tuple[int, int, int, bytes]]] = {}
        touched: Dict[int, SeriesInfo] = {}
        names_before = len(self._names)
        stacks_before = len(self._stacks)
        now = int(time.time())
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self._lock:
                interned: Dict[int, np.ndarray] = {}
                for tenant, uploads, _fut in batch:
                    res: List[WriteResult] = []
                    for up in uploads:
                        if up.sample_id:
                            cur = conn.execute(
                                "INSERT OR IGNORE INTO seen(tenant, id, ts) VALUES (?, ?, ?)",
                                (tenant, up.sample_id, now),
                            )
                            if cur.rowcount == 0:
                                res.append(WriteResult(0, True))
                                continue
                        for sd in up.series:
                            ids = interned.get(id(sd.stacks))
                            if ids is None:
                                ids = interned[id(sd.stacks)] = self._intern(sd.stacks)
                            blob = pack(ids, sd.values)
                            if not blob:
                                continue
                            sid = self._series_for(conn, tenant, sd, touched)
                            day = sd.ts // DAY
                            if day not in self._partitions:
                                self._create_partition(conn, day)
                            rows.setdefault(day, []).append(
                                (sid, sd.ts, int(sd.values.sum()), blob)
                            )
                        res.append(WriteResult(len(up.series), False))
                    results.append(res)
                if len(self._names) > names_before:
                    conn.executemany(
                        "INSERT INTO names(id, name) VALUES (?, ?)",
                        [(i, self._names[i]) for i in range(names_before, len(self._names))],
                    )
                if len(self._stacks) > stacks_before:
                    conn.executemany(
                        "INSERT INTO stacks(id, frames) VALUES (?, ?)",
                        [
                            (i, np.asarray(self._stacks.get(i), dtype="<u4").tobytes())
                            for i in range(stacks_before, len(self._stacks))
                        ],
                    )
            for day, day_rows in rows.items():
                conn.executemany(
                    f"INSERT INTO raw_{day}(series, ts, total, data) VALUES (?, ?, ?, ?)", day_rows
                )
            if touched:
                conn.executemany(
                    "UPDATE series SET first_ts = ?, last_ts = ?, spy_name = ?, sample_rate = ? "
                    "WHERE id = ?",
                    [
                        (s.first_ts, s.last_ts, s.spy_name, s.sample_rate, s.id)
                        for s in touched.values()
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _intern(self, batch: StackBatch) -> np.ndarray:
        """Stack ids (global) for a batch; adds new names and stacks to the tables."""
        name_ids = self._name_ids
        found = list(map(name_ids.get, batch.names))  # C loop; None marks a new name
        if None in found:
            for i, nid in enumerate(found):
                if nid is None:
                    name = batch.names[i]
                    nid = name_ids.get(name)  # the same new name may repeat in a batch
                    if nid is None:
                        nid = name_ids[name] = len(self._names)
                        self._names.append(name)
                    found[i] = nid
        remap = np.fromiter(found, dtype=np.uint32, count=len(found))
        if len(batch) == 0:
            return np.zeros(0, dtype=np.uint32)
        try:
            return self._stacks.intern_many(batch.frames, batch.offsets, remap)
        except ValueError as exc:  # offsets or frame ids out of range: a decoder bug
            raise StorageError(f"bad stack batch: {exc}") from None

    def _series_for(self, conn: sqlite3.Connection, tenant: str, sd: SeriesData, touched) -> int:
        fast_key = (tenant, sd.profile_type, tuple(sorted(sd.labels.items())))
        sid = self._series_fast.get(fast_key)
        if sid is not None and sid in self._series:
            return self._touch(sid, sd, touched)
        key_labels = json.dumps(sorted(sd.labels.items()), separators=(",", ":"))
        key = (tenant, sd.profile_type, key_labels)
        sid = self._series_ids.get(key)
        if sid is not None:
            self._series_fast[fast_key] = sid
        if sid is None:
            cur = conn.execute(
                "INSERT INTO series(tenant, profile_type, labels, first_ts, last_ts, spy_name, "
                "sample_rate) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, sd.profile_type, key_labels, sd.ts, sd.ts, sd.spy_name, sd.sample_rate),
            )
            sid = int(cur.lastrowid)
            info = SeriesInfo(
                sid,
                tenant,
                sd.profile_type,
                dict(sd.labels),
                sd.ts,
                sd.ts,
                sd.spy_name,
                sd.sample_rate,
            )
            self._series[sid] = info
            self._series_ids[key] = sid
            self._series_fast[fast_key] = sid
            return sid
        return self._touch(sid, sd, touched)

    def _touch(self, sid: int, sd: SeriesData, touched: Dict[int, SeriesInfo]) -> int:
        """Widens a series' time range (and metadata) for a new window."""
        info = self._series[sid]
        if (
            sd.ts < info.first_ts
            or sd.ts > info.last_ts
            or (sd.spy_name and sd.spy_name != info.spy_name)
        ):
            info.first_ts = min(info.first_ts, sd.ts)
            info.last_ts = max(info.last_ts, sd.ts)
            if sd.spy_name:
                info.spy_name = sd.spy_name
            if sd.sample_rate:
                info.sample_rate = sd.sample_rate
            touched[sid] = info
        return sid

    def _create_partition(self, conn: sqlite3.Connection, day: int) -> None:
        if day < 0 or day > 10**6:
            raise StorageError(f"day {day} is outside the storable range")
        for stmt in _PARTITION.format(d=day).split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT OR IGNORE INTO partitions(day, rolled) VALUES (?, 0)", (day,))
        self._partitions[day] = 0

    # ------------------------------------------------------------------------- housekeeping
    def _housekeeping(self, force: bool = False) -> None:
        now = time.time()
        try:
            if force or now - self._last_roll >= ROLL_INTERVAL:
                self._last_roll = now
                while self.roll_up() >= ROLL_ROWS and (force or time.time() - now < ROLL_BUDGET):
                    pass
            if self.retention and (force or now - self._last_retention >= HOUR):
                self._last_retention = now
                self.apply_retention(self.retention, now)
        except sqlite3.Error:
            pass  # retried on the next pass; queries stay exact without rollups

    def roll_up(self) -> int:
        """Merges raw rows not yet rolled up into the minute and hour tables (at most
        ``ROLL_ROWS`` per partition per call); returns how many raw rows were rolled."""
        conn = self._wconn
        if conn is None:
            return 0
        done = 0
        for day, rolled in sorted(self._partitions.items()):
            rows = conn.execute(
                f"SELECT rowid, series, ts, data FROM raw_{day} WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?",
                (rolled, ROLL_ROWS),
            ).fetchall()
            if not rows:
                continue
            hi = rows[-1][0]
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table, width in (("min", MINUTE), ("hour", HOUR)):
                    groups: Dict[Tuple[int, int], List[bytes]] = {}
                    for _rowid, series, ts, data in rows:
                        groups.setdefault((series, ts - ts % width), []).append(data)
                    for (series, ts), blobs in groups.items():
                        old = conn.execute(
                            f"SELECT data FROM {table}_{day} WHERE series = ? AND ts = ?",
                            (series, ts),
                        ).fetchone()
                        if old is not None:
                            blobs.append(old[0])
                        ids, vals = merge_blobs(blobs)
                        conn.execute(
                            f"INSERT OR REPLACE INTO {table}_{day}(series, ts, total, data) "
                            "VALUES (?, ?, ?, ?)",
                            (series, ts, int(vals.sum()), pack(ids, vals)),
                        )
                conn.execute("UPDATE partitions SET rolled = ? WHERE day = ?", (hi, day))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._partitions[day] = hi
            done += len(rows)
        return done

    def apply_retention(self, keep_seconds: int, now: Optional[float] = None) -> int:
        conn = self._wconn
        if conn is None or keep_seconds <= 0:
            return 0
        cutoff = int((time.time() if now is None else now) - keep_seconds)
        old = [d for d in self._partitions if (d + 1) * DAY <= cutoff]
        for day in old:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for t in ("raw", "min", "hour"):
                    conn.execute(f"DROP TABLE IF EXISTS {t}_{day}")
                conn.execute("DELETE FROM partitions WHERE day = ?", (day,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            del self._partitions[day]
        conn.execute("DELETE FROM seen WHERE ts < ?", (cutoff,))
        with self._lock:
            gone = [s.id for s in self._series.values() if s.last_ts < cutoff - DAY]
            if gone:
                self._series_fast = {}
                conn.executemany("DELETE FROM series WHERE id = ?", [(g,) for g in gone])
                for g in gone:
                    info = self._series.pop(g)
                    labels = json.dumps(sorted(info.labels.items()), separators=(",", ":"))
                    self._series_ids.pop((info.tenant, info.profile_type, labels), None)
        return len(old)

    def flush(self, timeout: float = 60.0) -> None:
        """Waits until everything queued so far is committed and rolled up."""
        if self._writer is None:
            return
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((None, [], fut))
        fut.result(timeout)

    def close(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            self._writer.join(timeout=120)
        if self._wconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._wconn.close()
            self._wconn = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._lockfile is not None:
            self._lockfile.close()  # releases the flock
            self._lockfile = None

    # ------------------------------------------------------------------------- reading
    def series(self, tenant: str, query: Optional[Query], start: int, end: int) -> List[SeriesInfo]:
        if self.readonly:
            with self._lock:
                self._load_series(self._reader())
        with self._lock:
            infos = list(self._series.values())
        out = []
        for s in infos:
            if s.tenant != tenant or s.last_ts < start - HOUR or s.first_ts >= end:
                continue
            if query is not None:
                if query.profile_type and s.profile_type != query.profile_type:
                    continue
                if query.matchers and not query.matches(
                    {**s.labels, "__profile_type__": s.profile_type}
                ):
                    continue
            out.append(s)
        return out

    def _snapshot(self) -> Tuple[sqlite3.Connection, Dict[int, int]]:
        conn = self._reader()
        conn.execute("BEGIN")
        parts = dict(conn.execute("SELECT day, rolled FROM partitions"))
        return conn, parts

    def merge_arrays(
        self, series_ids: Sequence[int], start: int, end: int
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Like :meth:`merge`, as (stack ids, values) arrays."""
        if not series_ids or end <= start:
            return merge_blobs([])
        ids = ",".join(str(int(i)) for i in series_ids)
        conn, parts = self._snapshot()
        blobs: List[bytes] = []
        try:
            for table, lo, hi in _plan(start, end):
                for day in _days(parts, lo, hi):
                    a, b = max(lo, day * DAY), min(hi, (day + 1) * DAY)
                    blobs += [
                        r[0]
                        for r in conn.execute(
                            f"SELECT data FROM {table}_{day} "
                            f"WHERE series IN ({ids}) AND ts >= ? AND ts < ?",
                            (a, b),
                        )
                    ]
                    if table != "raw":
                        # Raw rows the writer has not rolled up yet.
                        blobs += [
                            r[0]
                            for r in conn.execute(
                                f"SELECT data FROM raw_{day} WHERE rowid > ? "
                                f"AND series IN ({ids}) AND ts >= ? AND ts < ?",
                                (parts[day], a, b),
                            )
                        ]
        finally:
            conn.execute("COMMIT")
        return merge_blobs(blobs)

    def merge(self, series_ids: Sequence[int], start: int, end: int) -> Dict[int, int]:
        ids, vals = self.merge_arrays(series_ids, start, end)
        return dict(zip(ids.tolist(), vals.tolist()))

    def totals(
        self, series_ids: Sequence[int], start: int, end: int, step: int
    ) -> Dict[Tuple[int, int], int]:
        if not series_ids or end <= start:
            return {}
        ids = ",".join(str(int(i)) for i in series_ids)
        step = max(1, int(step))
        # The coarsest rollup whose rows fall entirely inside one bucket: reading it plus the
        # raw rows not rolled up yet gives exact bucket totals from far fewer rows.
        table = "raw"
        for name, width in (("hour", HOUR), ("min", MINUTE)):
            if step % width == 0 and start % width == 0:
                table = name
                break
        conn, parts = self._snapshot()
        out: Dict[Tuple[int, int], int] = {}
        try:
            for day in _days(parts, start, end):
                sqls = [(f"{table}_{day}", "")]
                if table != "raw":
                    sqls.append((f"raw_{day}", f"AND rowid > {int(parts[day])}"))
                for tbl, extra in sqls:
                    for sid, bucket, value in conn.execute(
                        f"SELECT series, (ts - ?) / ?, SUM(total) FROM {tbl} "
                        f"WHERE series IN ({ids}) AND ts >= ? AND ts < ? {extra} GROUP BY 1, 2",
                        (start, step, start, end),
                    ):
                        out[(sid, bucket)] = out.get((sid, bucket), 0) + value
        finally:
            conn.execute("COMMIT")
        return out

    def stack_names(self, stack_ids: Sequence[int]) -> Dict[int, Tuple[str, ...]]:
        with self._lock:
            if self.readonly and stack_ids and max(stack_ids) >= len(self._stacks):
                self._load_names_and_stacks(self._reader())
            names = self._names
            get = self._stacks.get
            return {
                sid: tuple(names[f] for f in reversed(get(sid)))
                for sid in stack_ids
                if sid < len(self._stacks)
            }

    def stack_arrays(self, max_id: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        with self._lock:
            if self.readonly and max_id >= len(self._stacks):
                self._load_names_and_stacks(self._reader())
            n = len(self._stacks)
            if self._exported is None or len(self._exported[1]) != n + 1:
                self._exported = self._stacks.export()
            frames, offsets = self._exported
            return frames, offsets, self._names[:]

    def stats(self) -> Dict[str, int]:
        """Row counts and file sizes, for ``hostprof store ls`` and the benchmark."""
        conn, parts = self._snapshot()
        try:
            windows = 0
            samples = 0
            for d in parts:
                w, b = conn.execute(f"SELECT count(*), sum(length(data)) FROM raw_{d}").fetchone()
                windows += w
                samples += (b or 0) // 12
            stacks = conn.execute("SELECT count(*) FROM stacks").fetchone()[0]
            series = conn.execute("SELECT count(*) FROM series").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "windows": windows,
            "samples": samples,
            "stacks": stacks,
            "series": series,
            "partitions": len(parts),
            "bytes": size,
        }


def _days(parts: Dict[int, int], start: int, end: int) -> List[int]:
    """The existing partitions that overlap [start, end) (never a loop over the range itself:
    a query may span 10^12 days)."""
    first, last = start // DAY, (end - 1) // DAY
    return sorted(d for d in parts if first <= d <= last)


def _exclusive_lock(path: Path):
    """Holds an exclusive flock on ``path`` for the life of the returned file.

    The in-memory stack table must be the only writer's, so a second server on the same data
    folder must fail instead of interleaving its stack ids with the first one's.
    """
    import fcntl

    f = open(path, "a+b")  # noqa: SIM115 - held open on purpose until close()
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise StorageError(
            f"another hostprof store is writing {path.parent}",
            "stop it first, or pass a different --data folder",
        ) from None
    return f


def _storage_error(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        msg = str(exc)
        hint = "free disk space" if "full" in msg else "check the store's data folder"
        return StorageError(f"store write failed: {msg}", hint)
    return exc


def _plan(start: int, end: int) -> List[Tuple[str, int, int]]:
    """Splits [start, end) into whole hours, whole minutes and raw edges."""
    out: List[Tuple[str, int, int]] = []

    def minutes(lo: int, hi: int) -> None:
        m0 = -(-lo // MINUTE) * MINUTE
        m1 = hi // MINUTE * MINUTE
        if m0 < m1:
            if lo < m0:
                out.append(("raw", lo, m0))
            out.append(("min", m0, m1))
            if m1 < hi:
                out.append(("raw", m1, hi))
        elif lo < hi:
            out.append(("raw", lo, hi))

    h0 = -(-start // HOUR) * HOUR
    h1 = end // HOUR * HOUR
    if h0 < h1:
        minutes(start, h0)
        out.append(("hour", h0, h1))
        minutes(h1, end)
    else:
        minutes(start, end)
    return out
