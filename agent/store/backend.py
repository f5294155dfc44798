"""Profile storage on SQLite: deduplicated stacks, per-day partitions, minute and hour rollups.

Layout (one database file, WAL mode so readers never wait for the writer):

* ``names(id, name)``: interned function names.
* ``nodes(id, parent, name)``: the call tree of every stack ever stored. A stack is the id of
  its leaf node, so a stack is stored once and shares its prefix with every other stack. Node
  0 is the virtual root. A child's id is always greater than its parent's.
* ``series(id, tenant, profile_type, labels, ...)``: one row per (tenant, profile type, label
  set). Tenants are separated here: every sample row belongs to exactly one tenant's series.
* Per UTC day ``D`` (a partition; retention drops whole partitions):
  ``raw_D(series, ts, node, value)`` at the resolution pushed (10 s windows),
  ``min_D`` and ``hour_D`` (same columns, ``ts`` rounded down to the minute / hour, one row per
  (series, ts, node)), and ``tot_D(series, ts, value)``, per-window totals for timelines.
* ``partitions(day, rolled)``: the raw rowid up to which the rollups include ``raw_D``.

Rollups are built incrementally by rowid, not by time: every raw row is added to its minute
and hour row exactly once, by the writer, a few seconds after it lands, so late data is
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

from hostprof._errors import StorageError
from hostprof.store.decode import Stack
from hostprof.store.decode import Upload
from hostprof.store.query import Query

DAY = 86400
HOUR = 3600
MINUTE = 60
ROLL_INTERVAL = 2.0
"""Seconds between rollup passes of the writer."""
MAX_BATCH = 512
"""Uploads per write transaction at most."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, parent INTEGER NOT NULL,
                                 name INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL,
    profile_type TEXT NOT NULL, labels TEXT NOT NULL, first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL, spy_name TEXT NOT NULL DEFAULT '',
    sample_rate INTEGER NOT NULL DEFAULT 0, UNIQUE(tenant, profile_type, labels));
CREATE TABLE IF NOT EXISTS seen(tenant TEXT NOT NULL, id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY(tenant, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions(day INTEGER PRIMARY KEY, rolled INTEGER NOT NULL);
"""

_PARTITION = """
CREATE TABLE IF NOT EXISTS raw_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    node INTEGER NOT NULL, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS raw_{d}_st ON raw_{d}(series, ts);
CREATE TABLE IF NOT EXISTS min_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    node INTEGER NOT NULL, value INTEGER NOT NULL, PRIMARY KEY(series, ts, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    node INTEGER NOT NULL, value INTEGER NOT NULL, PRIMARY KEY(series, ts, node)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tot_{d}(series INTEGER NOT NULL, ts INTEGER NOT NULL,
    value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tot_{d}_st ON tot_{d}(series, ts);
"""


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
        """Sums sample values per stack (leaf node id) over [start, end) seconds."""
        raise NotImplementedError

    def totals(
        self, series_ids: Sequence[int], start: int, end: int, step: int
    ) -> Dict[Tuple[int, int], int]:
        """Per (series id, bucket index) totals, buckets of ``step`` seconds from ``start``."""
        raise NotImplementedError

    def node(self, node_id: int) -> Tuple[int, str]:
        """(parent id, function name) of a node; the root is node 0 with parent -1."""
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
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StorageError(
                f"no store database at {self.path}", "start 'hostprof store serve' first"
            )
        self._local = threading.local()
        self._lock = threading.RLock()  # guards the in-memory caches below
        self._names: List[str] = [""]
        self._name_ids: Dict[str, int] = {}
        self._parent: List[int] = [-1]
        self._node_name: List[int] = [0]
        self._node_ids: Dict[Tuple[int, int], int] = {}
        self._stack_cache: Dict[Stack, int] = {}
        self._series: Dict[int, SeriesInfo] = {}
        self._series_ids: Dict[Tuple[str, str, str], int] = {}
        self._partitions: Dict[int, int] = {}
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._writer: Optional[threading.Thread] = None
        self._wconn: Optional[sqlite3.Connection] = None
        self._last_roll = 0.0
        self._last_retention = 0.0
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
            for nid, name in conn.execute("SELECT id, name FROM names ORDER BY id"):
                self._add_name(nid, name)
            self._load_nodes(conn)
            for row in conn.execute(
                "SELECT id, tenant, profile_type, labels, first_ts, last_ts, spy_name, "
                "sample_rate FROM series"
            ):
                info = SeriesInfo(row[0], row[1], row[2], dict(json.loads(row[3])), *row[4:])
                self._series[info.id] = info
                self._series_ids[(info.tenant, info.profile_type, row[3])] = info.id
            self._partitions = dict(conn.execute("SELECT day, rolled FROM partitions"))

    def _add_name(self, nid: int, name: str) -> None:
        while len(self._names) <= nid:
            self._names.append("")
        self._names[nid] = name
        self._name_ids[name] = nid

    def _load_nodes(self, conn: sqlite3.Connection) -> None:
        for nid, parent, name in conn.execute(
            "SELECT id, parent, name FROM nodes WHERE id >= ? ORDER BY id", (len(self._parent),)
        ):
            while len(self._parent) < nid:  # gaps only after a crash between id uses
                self._parent.append(0)
                self._node_name.append(0)
            self._parent.append(parent)
            self._node_name.append(name)
            self._node_ids[(parent, name)] = nid

    def _refresh(self) -> None:
        """Picks up names, nodes and series another process wrote (read-only opens)."""
        conn = self._reader()
        with self._lock:
            for nid, name in conn.execute(
                "SELECT id, name FROM names WHERE id >= ? ORDER BY id", (len(self._names),)
            ):
                self._add_name(nid, name)
            self._load_nodes(conn)

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
                    self.roll_up()
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
                    if not getattr(it[2], "done", lambda: True)():
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
            self._names, self._name_ids = [""], {}
            self._parent, self._node_name, self._node_ids = [-1], [0], {}
            self._stack_cache = {}
            self._series, self._series_ids = {}, {}
            self._load()

    def _transaction(self, batch: List[tuple]) -> List[List[WriteResult]]:
        conn = self._wconn
        assert conn is not None
        results: List[List[WriteResult]] = []
        rows: Dict[int, List[Tuple[int, int, int, int]]] = {}
        tots: Dict[int, List[Tuple[int, int, int]]] = {}
        touched: Dict[int, SeriesInfo] = {}
        new_names: List[Tuple[int, str]] = []
        new_nodes: List[Tuple[int, int, int]] = []
        now = int(time.time())
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self._lock:
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
                            sid = self._series_for(conn, tenant, sd, touched)
                            day = sd.ts // DAY
                            if day not in self._partitions:
                                self._create_partition(conn, day)
                            out = rows.setdefault(day, [])
                            intern = self._intern
                            total = 0
                            ts = sd.ts
                            for stack, value in zip(sd.stacks, sd.values):
                                out.append((sid, ts, intern(stack, new_names, new_nodes), value))
                                total += value
                            tots.setdefault(day, []).append((sid, ts, total))
                        res.append(WriteResult(len(up.series), False))
                    results.append(res)
            if new_names:
                conn.executemany("INSERT INTO names(id, name) VALUES (?, ?)", new_names)
            if new_nodes:
                conn.executemany("INSERT INTO nodes(id, parent, name) VALUES (?, ?, ?)", new_nodes)
            for day, day_rows in rows.items():
                conn.executemany(
                    f"INSERT INTO raw_{day}(series, ts, node, value) VALUES (?, ?, ?, ?)", day_rows
                )
            for day, day_tots in tots.items():
                conn.executemany(
                    f"INSERT INTO tot_{day}(series, ts, value) VALUES (?, ?, ?)", day_tots
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

    def _series_for(self, conn: sqlite3.Connection, tenant: str, sd, touched) -> int:
        key_labels = json.dumps(sorted(sd.labels.items()), separators=(",", ":"))
        key = (tenant, sd.profile_type, key_labels)
        sid = self._series_ids.get(key)
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
            return sid
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

    def _intern(self, stack: Stack, new_names: list, new_nodes: list) -> int:
        nid = self._stack_cache.get(stack)
        if nid is not None:
            return nid
        parent = 0
        name_ids = self._name_ids
        node_ids = self._node_ids
        for name in stack:
            name_id = name_ids.get(name)
            if name_id is None:
                name_id = len(self._names)
                self._add_name(name_id, name)
                new_names.append((name_id, name))
            child = node_ids.get((parent, name_id))
            if child is None:
                child = len(self._parent)
                self._parent.append(parent)
                self._node_name.append(name_id)
                node_ids[(parent, name_id)] = child
                new_nodes.append((child, parent, name_id))
            parent = child
        if len(self._stack_cache) > 1_000_000:
            self._stack_cache.clear()
        self._stack_cache[stack] = parent
        return parent

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
                self.roll_up()
            if self.retention and (force or now - self._last_retention >= HOUR):
                self._last_retention = now
                self.apply_retention(self.retention, now)
        except sqlite3.Error:
            pass  # retried on the next pass; queries stay exact without rollups

    def roll_up(self) -> int:
        """Adds raw rows not yet rolled up to the minute and hour tables; returns rows rolled."""
        conn = self._wconn
        if conn is None:
            return 0
        done = 0
        for day, rolled in sorted(self._partitions.items()):
            hi = conn.execute(f"SELECT max(rowid) FROM raw_{day}").fetchone()[0] or 0
            if hi <= rolled:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table, width in (("min", MINUTE), ("hour", HOUR)):
                    conn.execute(
                        f"INSERT INTO {table}_{day}(series, ts, node, value) "
                        f"SELECT series, ts - ts % {width}, node, SUM(value) FROM raw_{day} "
                        "WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2, 3 "
                        "ON CONFLICT(series, ts, node) "
                        "DO UPDATE SET value = value + excluded.value",
                        (rolled, hi),
                    )
                conn.execute("UPDATE partitions SET rolled = ? WHERE day = ?", (hi, day))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._partitions[day] = hi
            done += hi - rolled
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
                for t in ("raw", "min", "hour", "tot"):
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
                conn.executemany("DELETE FROM series WHERE id = ?", [(g,) for g in gone])
                for g in gone:
                    info = self._series.pop(g)
                    labels = json.dumps(sorted(info.labels.items()), separators=(",", ":"))
                    self._series_ids.pop((info.tenant, info.profile_type, labels), None)
        return len(old)

    def flush(self, timeout: float = 60.0) -> None:
        """Waits until everything queued so far is committed and rolled up."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._writer is None:
            return
        self._queue.put((None, [], fut))
        fut.result(timeout)

    def close(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            self._writer.join(timeout=60)
        if self._wconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._wconn.close()
            self._wconn = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------------- reading
    def series(self, tenant: str, query: Optional[Query], start: int, end: int) -> List[SeriesInfo]:
        if self.readonly:
            self._reload_series()
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

    def _reload_series(self) -> None:
        with self._lock:
            self._series, self._series_ids = {}, {}
            for row in self._reader().execute(
                "SELECT id, tenant, profile_type, labels, first_ts, last_ts, spy_name, "
                "sample_rate FROM series"
            ):
                info = SeriesInfo(row[0], row[1], row[2], dict(json.loads(row[3])), *row[4:])
                self._series[info.id] = info
                self._series_ids[(info.tenant, info.profile_type, row[3])] = info.id

    def _snapshot(self) -> Tuple[sqlite3.Connection, Dict[int, int]]:
        conn = self._reader()
        conn.execute("BEGIN")
        parts = dict(conn.execute("SELECT day, rolled FROM partitions"))
        return conn, parts

    def merge(self, series_ids: Sequence[int], start: int, end: int) -> Dict[int, int]:
        if not series_ids or end <= start:
            return {}
        ids = ",".join(str(int(i)) for i in series_ids)
        conn, parts = self._snapshot()
        try:
            sql: List[str] = []
            args: List[int] = []
            for table, lo, hi in _plan(start, end):
                for day in range(lo // DAY, (hi - 1) // DAY + 1):
                    if day not in parts:
                        continue
                    a, b = max(lo, day * DAY), min(hi, (day + 1) * DAY)
                    sql.append(
                        f"SELECT node, value FROM {table}_{day} "
                        f"WHERE series IN ({ids}) AND ts >= ? AND ts < ?"
                    )
                    args += [a, b]
                    if table != "raw":
                        # Raw rows the writer has not rolled up yet.
                        sql.append(
                            f"SELECT node, value FROM raw_{day} WHERE rowid > ? "
                            f"AND series IN ({ids}) AND ts >= ? AND ts < ?"
                        )
                        args += [parts[day], a, b]
            if not sql:
                return {}
            rows = conn.execute(
                f"SELECT node, SUM(value) FROM ({' UNION ALL '.join(sql)}) GROUP BY node", args
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        if self.readonly and rows and max(r[0] for r in rows) >= len(self._parent):
            self._refresh()
        return dict(rows)

    def totals(
        self, series_ids: Sequence[int], start: int, end: int, step: int
    ) -> Dict[Tuple[int, int], int]:
        if not series_ids or end <= start:
            return {}
        ids = ",".join(str(int(i)) for i in series_ids)
        step = max(1, int(step))
        conn, parts = self._snapshot()
        out: Dict[Tuple[int, int], int] = {}
        try:
            for day in range(start // DAY, (end - 1) // DAY + 1):
                if day not in parts:
                    continue
                for sid, bucket, value in conn.execute(
                    f"SELECT series, (ts - ?) / ?, SUM(value) FROM tot_{day} "
                    f"WHERE series IN ({ids}) AND ts >= ? AND ts < ? GROUP BY 1, 2",
                    (start, step, start, end),
                ):
                    out[(sid, bucket)] = out.get((sid, bucket), 0) + value
        finally:
            conn.execute("COMMIT")
        return out

    def node(self, node_id: int) -> Tuple[int, str]:
        if node_id >= len(self._parent):
            self._refresh()
        return self._parent[node_id], self._names[self._node_name[node_id]]

    def parents_and_names(self) -> Tuple[List[int], List[int], List[str]]:
        """The node tables as lists (parent per node, name id per node, names): for renderers."""
        return self._parent, self._node_name, self._names

    def stats(self) -> Dict[str, int]:
        """Row counts and file sizes, for ``hostprof store ls`` and the benchmark."""
        conn, parts = self._snapshot()
        try:
            raw = sum(conn.execute(f"SELECT count(*) FROM raw_{d}").fetchone()[0] for d in parts)
            nodes = conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
            series = conn.execute("SELECT count(*) FROM series").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "raw_rows": raw,
            "nodes": nodes,
            "series": series,
            "partitions": len(parts),
            "bytes": size,
        }


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
