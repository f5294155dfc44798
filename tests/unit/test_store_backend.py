"""The store's storage, query language, decoders and flamegraph layout (real SQLite files)."""

from __future__ import annotations

import gzip
import random
import sqlite3
import time
from pathlib import Path
from typing import Dict
from typing import List
from typing import Tuple

import numpy as np
import pytest

from hostprof._errors import FormatError
from hostprof._errors import StorageError
from hostprof.encoders import pprof
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import Window
from hostprof.proto import messages
from hostprof.store import backend as backend_mod
from hostprof.store.backend import SQLiteBackend
from hostprof.store.backend import _plan
from hostprof.store.decode import SeriesData
from hostprof.store.decode import StackBatch
from hostprof.store.decode import TooLarge
from hostprof.store.decode import Upload
from hostprof.store.decode import _fast_pprof
from hostprof.store.decode import _slow_pprof
from hostprof.store.decode import folded_series
from hostprof.store.decode import inflate
from hostprof.store.decode import ingest_params
from hostprof.store.decode import pprof_series
from hostprof.store.flame import Tree
from hostprof.store.flame import diff_flamebearer
from hostprof.store.flame import flamebearer
from hostprof.store.query import CPU_TYPE
from hostprof.store.query import parse_query
from hostprof.store.query import parse_selector
from hostprof.store.query import parse_time

DAY0 = 20000 * 86400  # a fixed UTC midnight in 2024


# ------------------------------------------------------------------------------- query
def test_selector_parsing_and_matching() -> None:
    ms = parse_selector('{service_name="app", env=~"prod|staging", zone!="b", x!~"t.*"}')
    assert [(m.name, m.op, m.value) for m in ms] == [
        ("service_name", "=", "app"),
        ("env", "=~", "prod|staging"),
        ("zone", "!=", "b"),
        ("x", "!~", "t.*"),
    ]
    q = parse_query(f'{CPU_TYPE}{{service_name="app",env=~"prod|staging"}}')
    assert q.profile_type == CPU_TYPE
    assert q.matches({"service_name": "app", "env": "prod"})
    assert not q.matches({"service_name": "app", "env": "production"})  # regex is anchored
    assert parse_selector(r'{a="x\"y"}')[0].value == 'x"y'
    assert parse_selector("{}") == ()


def test_legacy_query_names() -> None:
    q = parse_query("myapp.cpu{env=prod}")
    assert q.profile_type == CPU_TYPE
    assert q.matches({"service_name": "myapp", "env": "prod"})
    assert parse_query("svc.alloc_space").profile_type == "memory:alloc_space:bytes:space:bytes"


@pytest.mark.parametrize(
    "text", ["{a=}", '{a="b"', '{="b"}', '{a~"b"}', f'{CPU_TYPE}{{a=~"("}}', "a:b:c{}", ""]
)
def test_bad_queries_raise_format_error(text: str) -> None:
    with pytest.raises(FormatError):
        parse_query(text)


def test_time_parsing() -> None:
    now = 1_700_000_000.5
    assert parse_time("now", "now", now) == 1_700_000_000
    assert parse_time("now-1h", "now", now) == 1_700_000_000 - 3600
    assert parse_time("now-7d", "now", now) == 1_700_000_000 - 7 * 86400
    assert parse_time("1700000123", "now", now) == 1_700_000_123
    assert parse_time("1700000123456", "now", now) == 1_700_000_123
    assert parse_time(None, "now-30m", now) == 1_700_000_000 - 1800
    for bad in ("yesterday", "now-5y", "nan", "1e30"):
        with pytest.raises(FormatError):
            parse_time(bad, "now", now)


def test_plan_covers_range_exactly() -> None:
    rng = random.Random(7)
    for _ in range(500):
        start = DAY0 + rng.randrange(0, 3 * 86400)
        end = start + rng.choice([1, 59, 60, 61, 3599, 3600, 7300, 86400, 200000])
        pieces = sorted((lo, hi, t) for t, lo, hi in _plan(start, end))
        assert pieces[0][0] == start and pieces[-1][1] == end
        for (_a_lo, a_hi, _), (b_lo, _b_hi, _) in zip(pieces, pieces[1:]):
            assert a_hi == b_lo
        for lo, hi, table in pieces:
            width = {"raw": 1, "min": 60, "hour": 3600}[table]
            assert lo % width == 0 and hi % width == 0


# ------------------------------------------------------------------------------- decoders
def _profile(stacks: Dict[str, int], start_s: int = DAY0) -> Profile:
    prof = Profile([CPU_NS, SAMPLES], CPU_NS, 10_000_000)
    for text, v in stacks.items():
        prof.add([Frame(n, "f.py", 3) for n in text.split(";")], [v * 10_000_000, v])
    prof.windows.append(Window(start_s * 10**9, 10 * 10**9))
    return prof


def _as_dict(series: SeriesData) -> Dict[Tuple[str, ...], int]:
    out: Dict[Tuple[str, ...], int] = {}
    for i in range(len(series.stacks)):
        if series.values[i]:
            key = series.stacks.stack(i)
            out[key] = out.get(key, 0) + int(series.values[i])
    return out


def test_pprof_series_one_series_per_sample_type() -> None:
    raw = pprof.encode(_profile({"main;a;b": 3, "main;c": 2}))
    out = pprof_series(raw, {"service_name": "svc"}, 1 << 20, now=DAY0 + 100)
    assert [s.profile_type for s in out] == [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "process_cpu:samples:count:cpu:nanoseconds",
    ]
    assert out[0].ts == DAY0 and out[0].sample_rate == 100
    assert _as_dict(out[1]) == {("main", "a", "b"): 3, ("main", "c"): 2}
    assert out[0].labels == {"service_name": "svc", "__name__": "process_cpu"}


def test_fast_and_general_pprof_readers_agree() -> None:
    rng = random.Random(3)
    names = [f"fn{i}" for i in range(40)]
    for _ in range(30):
        stacks = {
            ";".join(rng.choices(names, k=rng.randrange(1, 12))): rng.randrange(1, 500)
            for _ in range(rng.randrange(1, 60))
        }
        data = pprof.to_message(_profile(stacks)).SerializeToString()
        fast, slow = _fast_pprof(data), _slow_pprof(data)
        assert fast is not None

        def norm(p):
            ((batch, vals),) = p.groups.values()
            out: Dict[Tuple[str, ...], Tuple[int, ...]] = {}
            for i in range(len(batch)):
                key = batch.stack(i)
                prev = out.get(key, (0, 0))
                out[key] = tuple(a + int(b) for a, b in zip(prev, vals[i]))
            return out

        assert norm(fast) == norm(slow)


def test_general_reader_handles_inlining_labels_and_addresses() -> None:
    pb = messages("perftools.profiles.Profile")()
    pb.string_table.extend(["", "cpu", "nanoseconds", "outer", "inlined", "thread", "t1"])
    pb.sample_type.add(type=1, unit=2)
    pb.function.add(id=1, name=3)
    pb.function.add(id=2, name=4)
    loc = pb.location.add(id=10)
    loc.line.add(function_id=2)  # innermost first
    loc.line.add(function_id=1)
    pb.location.add(id=11, address=0xABC)
    s = pb.sample.add(location_id=[11, 10], value=[5])
    s.label.add(key=5, str=6)
    pb.sample.add(location_id=[10], value=[7])
    data = pb.SerializeToString()
    for reader in (_fast_pprof, _slow_pprof):  # the C reader handles these too
        groups = reader(data).groups
        assert {k: (b.stack(0), v.tolist()) for k, (b, v) in groups.items()} == {
            (("thread", "t1"),): (("outer", "inlined", "0xabc"), [[5]]),
            (): (("outer", "inlined"), [[7]]),
        }
    out = pprof_series(data, {}, 1 << 20, now=DAY0)
    by_labels = {s.labels.get("thread", ""): _as_dict(s) for s in out}
    assert by_labels["t1"] == {("outer", "inlined", "0xabc"): 5}
    assert by_labels[""] == {("outer", "inlined"): 7}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda pb: pb.sample[0].location_id.append(999),
        lambda pb: pb.location[0].line[0].__setattr__("function_id", 999),
        lambda pb: pb.function[0].__setattr__("name", 999),
        lambda pb: pb.sample[0].value.append(1),
        lambda pb: pb.ClearField("sample_type"),
    ],
)
def test_inconsistent_pprof_is_a_format_error(mutate) -> None:
    pb = pprof.to_message(_profile({"a;b": 1, "c": 2}))
    mutate(pb)
    with pytest.raises(FormatError):
        pprof_series(pb.SerializeToString(), {}, 1 << 20, now=DAY0)


def test_inflate_limits() -> None:
    bomb = gzip.compress(b"\0" * (8 << 20))
    with pytest.raises(TooLarge):
        inflate(bomb, 1 << 20)
    assert inflate(gzip.compress(b"abc"), 3) == b"abc"
    with pytest.raises(TooLarge):
        inflate(b"x" * 10, 5)
    with pytest.raises(FormatError):
        inflate(b"\x1f\x8bnot gzip", 100)


def test_folded_and_ingest_params() -> None:
    p = ingest_params(
        {"name": "web.cpu{env=prod,dc=x}", "from": str(DAY0), "sampleRate": "50"}, now=DAY0
    )
    assert p.labels == {"env": "prod", "dc": "x", "service_name": "web", "__name__": "process_cpu"}
    assert (p.profile_type, p.ts, p.sample_rate) == (CPU_TYPE, DAY0, 50)
    sd = folded_series(b"a;b 2\na;b 3\n# comment\n\na 1\n", p.labels, CPU_TYPE, DAY0, 2.0)
    assert _as_dict(sd) == {("a", "b"): 10, ("a",): 2}
    for bad in (b"a;b\n", b"a;b x\n", b"a;b -1\n", b"\xff 1\n", b"; 3\n"):
        with pytest.raises(FormatError):
            folded_series(bad, {}, CPU_TYPE, DAY0)
    with pytest.raises(FormatError):
        ingest_params({"name": "web.cpu", "from": str(DAY0 + 5 * 86400)}, now=DAY0)


# ------------------------------------------------------------------------------- flamegraph
def _decode_levels(fb: dict, width: int = 4, side: int = 0) -> Dict[str, Tuple[int, int]]:
    """{path: (total, self)} from flamebearer levels, checking children nest in parents."""
    names, levels = fb["names"], fb["levels"]
    spans = []
    for level in levels:
        x, row = 0, []
        for i in range(0, len(level), width):
            x += level[i + 3 * side]
            total, self_v = level[i + 3 * side + 1], level[i + 3 * side + 2]
            row.append((x, x + total, total, self_v, names[level[i + width - 1]]))
            x += total
        spans.append(row)
    out: Dict[str, Tuple[int, int]] = {}

    def walk(depth: int, lo: int, hi: int, path: str) -> None:
        if depth >= len(spans):
            return
        for a, b, total, self_v, name in spans[depth]:
            if lo <= a and b <= hi and (b > a or (a == lo and depth == 0)):
                p = f"{path};{name}" if path else name
                out[p] = (total, self_v)
                walk(depth + 1, a, b, p)

    walk(0, 0, max(1, spans[0][0][1]), "")
    return out


def test_flamebearer_layout() -> None:
    tree = Tree()
    tree.add(("main", "work", "inner"), 60)
    tree.add(("main", "work"), 10)
    tree.add(("main", "idle"), 30)
    tree.add(("other_root",), 5)
    fb = flamebearer(tree)
    assert fb["numTicks"] == 105 and fb["maxSelf"] == 60
    assert fb["names"][0] == "total"
    got = _decode_levels(fb)
    assert got == {
        "total": (105, 0),
        "total;main": (100, 0),
        "total;main;idle": (30, 30),
        "total;main;work": (70, 10),
        "total;main;work;inner": (60, 60),
        "total;other_root": (5, 5),
    }


def test_max_nodes_folds_small_subtrees_into_other() -> None:
    tree = Tree()
    tree.add(("main", "big"), 1000)
    for i in range(50):
        tree.add(("main", f"small{i}"), 1)
    fb = flamebearer(tree, max_nodes=5)
    got = _decode_levels(fb)
    assert got["total"] == (1050, 0)
    assert got["total;main;big"] == (1000, 1000)
    smalls = sum(v[0] for k, v in got.items() if k.startswith("total;main;small"))
    assert smalls + got["total;main;other"][0] == 50
    assert sum(len(level) // 4 for level in fb["levels"]) <= 7


def test_diff_flamebearer() -> None:
    names = {1: ("main", "a"), 2: ("main", "b"), 3: ("main", "c")}
    tree = Tree.build(names, {1: 10, 2: 5}, {1: 3, 3: 9})
    fb = diff_flamebearer(tree)
    assert (fb["leftTicks"], fb["rightTicks"], fb["numTicks"]) == (15, 12, 27)
    left = _decode_levels(fb, width=7, side=0)
    right = _decode_levels(fb, width=7, side=1)
    assert left["total;main;a"] == (10, 10) and right["total;main;a"] == (3, 3)
    assert right["total;main;c"] == (9, 9) and left.get("total;main;c", (0, 0))[0] == 0


# ------------------------------------------------------------------------------- backend
def _upload(stacks: Dict[Tuple[str, ...], int], ts: int, labels=None, sid: str = "") -> Upload:
    batch = StackBatch.from_stacks(list(stacks))
    values = np.asarray(list(stacks.values()), dtype=np.int64)
    labels = labels or {"service_name": "svc", "__name__": "process_cpu"}
    return Upload(sid, [SeriesData(labels, CPU_TYPE, ts, batch, values)])


def _named(b: SQLiteBackend, merged: Dict[int, int]) -> Dict[Tuple[str, ...], int]:
    names = b.stack_names(list(merged))
    return {names[k]: v for k, v in merged.items()}


def test_rollups_are_exact_for_any_range(tmp_path: Path, monkeypatch) -> None:
    # GIVEN windows spread over two days, some arriving late (after a roll-up)
    monkeypatch.setattr(backend_mod, "ROLL_INTERVAL", 3600.0)  # roll only when told to
    b = SQLiteBackend(tmp_path / "s.db")
    rng = random.Random(11)
    truth: List[Tuple[int, Tuple[str, ...], int]] = []
    funcs = ["a", "b", "c", "d"]

    def push(n: int) -> None:
        ups = []
        for _ in range(n):
            ts = DAY0 + rng.randrange(0, 2 * 86400)
            stacks = {
                tuple(rng.choices(funcs, k=rng.randrange(1, 4))): rng.randrange(1, 9)
                for _ in range(3)
            }
            ups.append(_upload(stacks, ts))
            truth.extend((ts, k, v) for k, v in stacks.items())
        b.write("t", ups)

    def check() -> None:
        (series,) = b.series("t", None, 0, 2**40)
        for _ in range(40):
            start = DAY0 + rng.randrange(-3600, 2 * 86400)
            end = start + rng.choice([10, 60, 600, 3600, 5000, 86400, 3 * 86400])
            want: Dict[Tuple[str, ...], int] = {}
            for ts, k, v in truth:
                if start <= ts < end:
                    want[k] = want.get(k, 0) + v
            assert _named(b, b.merge([series.id], start, end)) == want

    push(300)
    check()  # nothing rolled up yet: raw only
    b.flush()
    check()  # everything rolled up
    push(100)  # late data lands after the roll-up in the same hours
    check()
    b.flush()
    check()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        day = DAY0 // 86400
        assert conn.execute(f"SELECT count(*) FROM hour_{day}").fetchone()[0] <= 24
    b.close()
    # AND a reopened store (a restart) answers the same
    again = SQLiteBackend(tmp_path / "s.db")
    (series,) = again.series("t", None, 0, 2**40)
    total = sum(v for _ts, _k, v in truth)
    assert sum(again.merge([series.id], DAY0, DAY0 + 2 * 86400).values()) == total
    again.close()


def test_dedup_tenants_and_timeline(tmp_path: Path) -> None:
    b = SQLiteBackend(tmp_path / "s.db")
    up = _upload({("m", "x"): 4}, DAY0 + 100, sid="abc")
    assert b.write("t1", [up])[0].duplicate is False
    assert b.write("t1", [up])[0].duplicate is True
    assert b.write("t2", [up])[0].duplicate is False  # ids are per tenant
    b.write("t1", [_upload({("m", "y"): 6}, DAY0 + 130)])
    (s1,) = b.series("t1", None, DAY0, DAY0 + 1000)
    (s2,) = b.series("t2", None, DAY0, DAY0 + 1000)
    assert s1.id != s2.id
    assert _named(b, b.merge([s1.id], DAY0, DAY0 + 1000)) == {("m", "x"): 4, ("m", "y"): 6}
    assert _named(b, b.merge([s2.id], DAY0, DAY0 + 1000)) == {("m", "x"): 4}
    totals = b.totals([s1.id], DAY0, DAY0 + 1000, 60)
    assert totals == {(s1.id, 1): 4, (s1.id, 2): 6}
    q = parse_query(f'{CPU_TYPE}{{service_name="svc"}}')
    assert [s.id for s in b.series("t1", q, DAY0, DAY0 + 1000)] == [s1.id]
    assert b.series("t3", q, DAY0, DAY0 + 1000) == []
    b.close()


def test_retention_drops_whole_partitions(tmp_path: Path) -> None:
    b = SQLiteBackend(tmp_path / "s.db")
    for d in range(4):
        b.write("t", [_upload({("f",): 1}, DAY0 + d * 86400 + 5)])
    b.flush()
    now = DAY0 + 3 * 86400 + 600
    dropped = b.apply_retention(2 * 86400, now=now)
    assert dropped == 1  # only day 0 ends before now - 2 days
    with sqlite3.connect(tmp_path / "s.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert f"raw_{DAY0 // 86400}" not in tables and f"raw_{DAY0 // 86400 + 1}" in tables
    (s,) = b.series("t", None, 0, 2**40)
    assert sum(b.merge([s.id], DAY0, DAY0 + 4 * 86400).values()) == 3
    b.close()


def test_readonly_open_sees_a_live_writer(tmp_path: Path) -> None:
    writer = SQLiteBackend(tmp_path / "s.db")
    writer.write("t", [_upload({("r", "w"): 2}, DAY0)])
    reader = SQLiteBackend(tmp_path / "s.db", readonly=True)
    writer.write("t", [_upload({("r", "new"): 3}, DAY0 + 10)])
    (s,) = reader.series("t", None, 0, 2**40)
    assert _named(reader, reader.merge([s.id], DAY0, DAY0 + 60)) == {
        ("r", "w"): 2,
        ("r", "new"): 3,
    }
    reader.close()
    writer.close()


def test_write_loop_survives_a_bad_upload(tmp_path: Path) -> None:
    b = SQLiteBackend(tmp_path / "s.db")
    good = _upload({("ok",): 1}, DAY0)
    bad = _upload({("bad",): 1}, DAY0)
    bad.series[0].stacks.offsets = np.array([0, 99], dtype=np.int64)  # corrupt batch
    f_bad = b.submit("t", [bad])
    f_good = b.submit("t", [good])
    with pytest.raises(StorageError):
        f_bad.result(30)
    assert f_good.result(30)[0].stored == 1
    (s,) = b.series("t", None, 0, 2**40)
    assert _named(b, b.merge([s.id], DAY0, DAY0 + 60)) == {("ok",): 1}
    b.close()


def test_frame_kinds_in_names(tmp_path: Path) -> None:
    # Kernel and native frames arrive as plain function names, as in Pyroscope.
    prof = Profile([CPU_NS], CPU_NS, 10_000_000)
    prof.add([Frame("main", "a.py", 1), Frame("do_syscall_64", kind=FrameKind.KERNEL)], 7)
    prof.windows.append(Window(int(time.time()) * 10**9, 10**10))
    (sd,) = pprof_series(pprof.encode(prof), {"service_name": "k"}, 1 << 20)
    assert _as_dict(sd) == {("main", "do_syscall_64"): 7}


def test_vectorized_reader_handles_inlined_lines_and_unpacked_ids() -> None:
    pb = messages("perftools.profiles.Profile")()
    pb.string_table.extend(["", "cpu", "nanoseconds", "outer", "inlined", "leaf"])
    pb.sample_type.add(type=1, unit=2)
    for fid, name in ((1, 3), (2, 4), (3, 5)):
        pb.function.add(id=fid, name=name)
    loc = pb.location.add(id=10, address=0x1000)
    loc.line.add(function_id=2)  # innermost first
    loc.line.add(function_id=1)
    pb.location.add(id=11).line.add(function_id=3)
    pb.sample.add(location_id=[11, 10], value=[5])
    pb.sample.add(location_id=[10], value=[7])
    pb.sample.add(location_id=[], value=[1])
    data = pb.SerializeToString()
    fast, slow = _fast_pprof(data), _slow_pprof(data)
    assert fast is not None

    def norm(p):
        ((batch, vals),) = p.groups.values()
        return sorted((batch.stack(i), int(vals[i, 0])) for i in range(len(batch)))

    assert (
        norm(fast)
        == norm(slow)
        == [
            ((), 1),
            (("outer", "inlined"), 7),
            (("outer", "inlined", "leaf"), 5),
        ]
    )


def test_one_writer_per_data_folder(tmp_path: Path) -> None:
    first = SQLiteBackend(tmp_path / "s.db")
    with pytest.raises(StorageError, match="another hostprof store"):
        SQLiteBackend(tmp_path / "s.db")
    reader = SQLiteBackend(tmp_path / "s.db", readonly=True)  # readers are welcome
    reader.close()
    first.close()
    SQLiteBackend(tmp_path / "s.db").close()  # the lock goes with the writer


def test_timeline_totals_from_rollups_are_exact(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(backend_mod, "ROLL_INTERVAL", 3600.0)
    b = SQLiteBackend(tmp_path / "s.db")
    rng = random.Random(5)
    points = [(DAY0 + rng.randrange(0, 86400 * 2), rng.randrange(1, 100)) for _ in range(300)]
    b.write("t", [_upload({("a",): v}, ts) for ts, v in points[:200]])
    b.flush()  # rolled up
    b.write("t", [_upload({("a",): v}, ts) for ts, v in points[200:]])  # not yet
    (s,) = b.series("t", None, 0, 2**40)
    for step, start in (
        (60, DAY0),
        (3600, DAY0),
        (7200, DAY0 + 3600),
        (120, DAY0 + 60),
        (10, DAY0),
    ):
        end = start + 2 * 86400
        want: Dict[int, int] = {}
        for ts, v in points:
            if start <= ts < end:
                want[(ts - start) // step] = want.get((ts - start) // step, 0) + v
        got = {k[1]: v for k, v in b.totals([s.id], start, end, step).items()}
        assert got == want, step
    b.close()


def test_flame_tree_in_c_matches_python_build(tmp_path: Path) -> None:
    from hostprof.store.flame import Tree
    from hostprof.store.flame import diff_flamebearer
    from hostprof.store.flame import flamebearer

    rng = random.Random(5)
    names = [f"f{i}" for i in range(30)] + ["other", "total", "Zed", "édith"]
    stacks = {
        tuple(rng.choices(names, k=rng.randrange(1, 9))): rng.randrange(0, 50) for _ in range(300)
    }
    backend = SQLiteBackend(tmp_path / "s.db")
    try:
        batch = StackBatch.from_stacks(list(stacks))
        sd = SeriesData(
            {"service_name": "t"}, CPU_TYPE, DAY0, batch, np.asarray(list(stacks.values()))
        )
        backend.write("anonymous", [Upload("", [sd])])
        ids, vals = backend.merge_arrays([1], DAY0, DAY0 + 10)
        left = dict(zip(ids.tolist(), vals.tolist()))
        right = {sid: v * 2 + 1 for sid, v in list(left.items())[::2]}
        right[10**6] = 7  # a stack id the table does not know
        frames, offsets, table_names = backend.stack_arrays(10**6)
        by_id = backend.stack_names(sorted(set(left) | set(right)))
        for sides in ((left,), (left, right)):
            arrays = [
                (np.asarray(list(s), dtype=np.uint32), np.asarray(list(s.values()))) for s in sides
            ]
            fast = Tree.build_arrays(frames, offsets, table_names, *arrays)
            slow = Tree.build(by_id, *sides)
            render = flamebearer if len(sides) == 1 else diff_flamebearer
            assert render(fast) == render(slow)
            for max_nodes in (1, 2, 20, 200):
                assert render(fast, max_nodes) == render(slow, max_nodes)
        assert flamebearer(fast)["numTicks"] == sum(left.values())
    finally:
        backend.close()
