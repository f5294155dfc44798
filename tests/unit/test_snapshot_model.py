"""Unit tests of the snapshot's pure parts: hang classification, findings, profile handling."""

from __future__ import annotations

from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.snapshot import svgflame
from hostprof.snapshot.archive import combined_profile
from hostprof.snapshot.archive import scrub_profile
from hostprof.snapshot.findings import busiest_syscalls
from hostprof.snapshot.findings import top_functions
from hostprof.snapshot.records import FrameRecord
from hostprof.snapshot.records import ProcessDump
from hostprof.snapshot.records import ThreadRecord
from hostprof.snapshot.records import cap_repr
from hostprof.snapshot.redact import Redactor
from hostprof.snapshot.stacks import BUSY
from hostprof.snapshot.stacks import EVENT_WAIT
from hostprof.snapshot.stacks import LOCK_WAIT
from hostprof.snapshot.stacks import SLEEPING
from hostprof.snapshot.stacks import ProcessStacks
from hostprof.snapshot.stacks import compare

APP = "/srv/app/app.py"
THREADING = "/usr/lib/python3.11/threading.py"


def _thread(tid, frames, syscall=None, ticks=0, state="sleeping", gil=False):
    return ThreadRecord(
        tid=tid,
        name=f"t{tid}",
        frames=[FrameRecord(f, file, line) for f, file, line in frames],
        holds_gil=gil,
        os_state=state,
        syscall=syscall,
        cpu_ticks=ticks,
    )


def _dump(threads, t_ns):
    return ProcessDump(pid=1, taken_ns=t_ns, source="test", threads=threads)


def test_compare_classifies_what_did_not_move() -> None:
    locked = [("main", APP, 1), ("grab_a_then_b", APP, 10)]
    event = [("main", APP, 1), ("worker", APP, 20), ("Event.wait", THREADING, 600)]
    spin = [("main", APP, 1), ("spin", APP, 30)]
    moved_1 = [("main", APP, 1), ("step", APP, 40)]
    moved_2 = [("main", APP, 1), ("step", APP, 41)]
    first = _dump(
        [
            _thread(1, locked, "futex"),
            _thread(2, event, "futex"),
            _thread(3, spin, None, ticks=100, state="running"),
            _thread(4, moved_1),
            _thread(5, [("main", APP, 1), ("nap", APP, 50)], "clock_nanosleep"),
        ],
        0,
    )
    second = _dump(
        [
            _thread(1, locked, "futex"),
            _thread(2, event, "futex"),
            _thread(3, spin, None, ticks=200, state="running"),
            _thread(4, moved_2),
            _thread(5, [("main", APP, 1), ("nap", APP, 50)], "clock_nanosleep"),
        ],
        1_000_000_000,
    )
    stuck = {s.tid: s for s in compare(first, second, 1.0)}
    assert set(stuck) == {1, 2, 3, 5}  # thread 4 moved
    assert stuck[1].reason == LOCK_WAIT and stuck[1].leaf.function == "grab_a_then_b"
    assert stuck[2].reason == EVENT_WAIT
    assert stuck[2].to_json()["app_function"] == "worker"
    assert stuck[3].reason == BUSY and stuck[3].cpu_seconds == 1.0
    assert stuck[5].reason == SLEEPING
    # most alarming first
    assert compare(first, second, 1.0)[0].reason == LOCK_WAIT


def test_two_lock_waiters_are_deadlock_suspects_one_is_not() -> None:
    a = [("main", APP, 1), ("grab_a_then_b", APP, 10)]
    b = [("main", APP, 1), ("grab_b_then_a", APP, 20)]
    d1 = _dump([_thread(1, a, "futex"), _thread(2, b, "futex")], 0)
    d2 = _dump([_thread(1, a, "futex"), _thread(2, b, "futex")], 10**9)
    ps = ProcessStacks(1, [d1, d2])
    ps.stuck = compare(d1, d2, 1.0)
    assert {s.leaf.function for s in ps.deadlock_suspects} == {"grab_a_then_b", "grab_b_then_a"}
    ps.stuck = ps.stuck[:1]
    assert ps.deadlock_suspects == []


def test_process_json_stores_each_frame_once() -> None:
    frames = [("main", APP, 1), ("wait", APP, 2)]
    d = _dump([_thread(i, frames, "futex") for i in range(50)], 0)
    js = ProcessStacks(1, [d, None]).to_json()
    assert len(js["frames"]) == 2
    assert all(t["stack"] == [0, 1] for t in js["dumps"][0]["threads"])
    assert js["dumps"][1] is None


def test_cap_repr() -> None:
    assert cap_repr("x" * 500) == "x" * 199 + "…"
    assert len(cap_repr("x" * 500)) == 200
    assert cap_repr("short") == "short"


def _py(name, line=1):
    return Frame(name, APP, line)


def test_top_functions_and_busiest_syscalls() -> None:
    p = Profile([SAMPLES])
    p.add([_py("main"), _py("hot")], 90, {"pid": "1"})
    p.add([_py("main"), _py("cold")], 10, {"pid": "1"})
    rows = top_functions(p)
    assert [r["function"] for r in rows] == ["hot", "cold"]
    assert rows[0]["self_percent"] == 90.0 and rows[0]["total_percent"] == 90.0

    s = Profile([SampleType("syscalls", "count"), SampleType("syscall_time", "nanoseconds")])
    s.add([_py("main"), _py("reader", 7), Frame.synthetic("<syscall:read>")], [30, 3000])
    s.add([_py("main"), _py("writer", 9), Frame.synthetic("<syscall:write>")], [5, 100])
    s.add([Frame.synthetic("<syscall:read>")], [10, 10])
    rows = busiest_syscalls(s)
    assert [(r["syscall"], r["count"]) for r in rows] == [("read", 40), ("write", 5)]
    assert rows[0]["top_caller"] == f"reader ({APP}:7)"
    assert rows[0]["total_ns"] == 3010


def test_combined_profile_keeps_collectors_apart() -> None:
    py = Profile([SAMPLES, CPU_NS])
    py.add([_py("main")], [3, 30])
    cpu = Profile([CPU_NS, SAMPLES])
    cpu.add([Frame("memcpy", "libc.so.6", 0, FrameKind.NATIVE)], [70, 7])
    out = combined_profile({"cpu": cpu, "python": py})
    assert out is not None
    assert [str(t) for t in out.sample_types] == [
        "samples:count",
        "cpu:nanoseconds",
        "cpu cpu:nanoseconds",
        "cpu samples:count",
    ]
    assert out.totals() == (3, 30, 70, 7)


def test_scrub_profile_removes_secrets_from_frames_and_labels() -> None:
    r = Redactor()
    r.redact_env({"API_TOKEN": "tok-abcdef123"})
    p = Profile([SAMPLES])
    p.add([Frame("handler_tok-abcdef123", "/tmp/tok-abcdef123.py", 3)], 1, {"arg": "tok-abcdef123"})
    clean = scrub_profile(p, r)
    ((frames, labels, _),) = list(clean.items())
    assert "tok-abcdef123" not in repr(frames) + repr(labels)
    untouched = Profile([SAMPLES])
    untouched.add([_py("main")], 1)
    assert scrub_profile(untouched, r) is untouched  # no copy when nothing to scrub


def test_svg_flamegraph_draws_named_frames() -> None:
    p = Profile([SAMPLES])
    p.add([_py("main"), _py("hot")], 90, {"pid": "7"})
    p.add([_py("main"), _py("cold")], 10, {"pid": "7"})
    svg = svgflame.render(p, "Python", process_names={"7": "app"})
    assert svg.startswith("<svg") and svg.count("<rect") == 5  # all, pid, main, hot, cold
    assert "pid 7 app" in svg and "hot (app.py:1)" in svg
    assert "no samples" in svgflame.render(Profile([SAMPLES]), "Empty")


def test_svg_flamegraph_merges_many_processes() -> None:
    p = Profile([SAMPLES])
    for pid in range(10):
        p.add([_py("main"), _py("hot")], 5, {"pid": str(pid)})
    svg = svgflame.render(p, "Python")
    assert "pid 3" not in svg
    assert svg.count("<rect") == 3  # all, main, hot: one tower for the ten processes


def test_parse_cgroup_finds_container_and_pod() -> None:
    from hostprof.snapshot.facts import parse_cgroup

    cid = "3f" * 32
    docker = f"0::/system.slice/docker-{cid}.scope\n"
    assert parse_cgroup(docker)[1] == cid
    k8s = (
        "0::/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_1e2f3a4b5c6d.slice/"
        f"cri-containerd-{cid}.scope\n"
    )
    lines, container, pod = parse_cgroup(k8s)
    assert len(lines) == 1
    assert container == cid and pod == "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
    assert parse_cgroup("0::/user.slice/session-1.scope\n")[1:] == (None, None)
