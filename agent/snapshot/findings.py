"""What a responder should read first, derived from the dumps and the profile.

Findings are plain data (JSON-ready); :mod:`hostprof.snapshot.report` renders them. Order:
stuck threads (likely deadlocks first), GIL holders, threads in GC, top functions, busiest
syscalls, top off-CPU stacks.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from typing import Callable
from typing import Dict
from typing import Iterator
from typing import List
from typing import Mapping
from typing import Optional

from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.snapshot.stacks import ProcessStacks

TOP_N = 10
"""Rows in each top-N table."""


def _frame_label(function: str, file: str, line: int) -> str:
    if file and line:
        return f"{function} ({file}:{line})"
    if file:
        return f"{function} ({file})"
    return function


def top_functions(
    profile: Optional[Profile],
    n: int = TOP_N,
    value_index: int = 0,
    skip_kernel: bool = False,
) -> List[Dict[str, Any]]:
    """The functions with the most self and total value (one row per function and file)."""
    if profile is None or len(profile) == 0:
        return []
    self_v: Dict[tuple, int] = defaultdict(int)
    total_v: Dict[tuple, int] = defaultdict(int)
    grand = 0
    for frames, _, values in profile.items():
        v = values[value_index]
        grand += v
        if not frames:
            continue
        # Self time goes to the innermost non-synthetic frame (a '<gc>' leaf charges its caller
        # too: that is where the time went from the code's point of view).
        leaf = frames[-1]
        if skip_kernel:
            # Off-CPU stacks all end in the scheduler; what matters is who called into it:
            # the Python function where stacks are merged, else the user-space function.
            py = [f for f in frames if f.kind == FrameKind.PYTHON]
            user = py or [f for f in frames if f.kind != FrameKind.KERNEL]
            leaf = user[-1] if user else leaf
        self_v[(leaf.function, leaf.file, leaf.kind)] += v
        for key in {(f.function, f.file, f.kind) for f in frames}:
            total_v[key] += v
    rows = []
    for key, tv in total_v.items():
        rows.append(
            {
                "function": key[0],
                "file": key[1],
                "kind": FrameKind(key[2]).name.lower(),
                "self": self_v.get(key, 0),
                "total": tv,
                "unit": profile.sample_types[value_index].unit,
                "self_percent": round(100.0 * self_v.get(key, 0) / grand, 1) if grand else 0.0,
                "total_percent": round(100.0 * tv / grand, 1) if grand else 0.0,
            }
        )
    rows.sort(key=lambda r: (r["self"], r["total"]), reverse=True)
    return [r for r in rows if r["self"] > 0][:n]


def busiest_syscalls(profile: Optional[Profile], n: int = TOP_N) -> List[Dict[str, Any]]:
    """Syscalls by count (leaf frames named ``<syscall:NAME>``), with the top caller of each."""
    if profile is None or len(profile) == 0:
        return []
    count_idx = 0
    for i, st in enumerate(profile.sample_types):
        if st.unit == "count":
            count_idx = i
            break
    lat_idx = next(
        (i for i, st in enumerate(profile.sample_types) if st.unit == "nanoseconds"), None
    )
    counts: Dict[str, int] = defaultdict(int)
    lat: Dict[str, int] = defaultdict(int)
    callers: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for frames, _, values in profile.items():
        name = None
        caller = ""
        for i in range(len(frames) - 1, -1, -1):
            f = frames[i]
            if f.function.startswith("<syscall:"):
                name = f.function[len("<syscall:") : -1]
                py = [g for g in frames[:i] if g.kind == FrameKind.PYTHON]
                caller = _frame_label(py[-1].function, py[-1].file, py[-1].line) if py else ""
                break
        if name is None:
            continue
        counts[name] += values[count_idx]
        if lat_idx is not None:
            lat[name] += values[lat_idx]
        if caller:
            callers[name][caller] += values[count_idx]
    rows = []
    for name, c in counts.items():
        top_caller = max(callers[name].items(), key=lambda kv: kv[1])[0] if callers[name] else ""
        rows.append(
            {
                "syscall": name,
                "count": c,
                "total_ns": lat.get(name) if lat_idx is not None else None,
                "top_caller": top_caller,
            }
        )
    rows.sort(key=lambda r: r["count"], reverse=True)
    return rows[:n]


def _threads_where(
    stacks: Mapping[int, ProcessStacks], wanted: Callable[[Any], bool]
) -> Iterator[Dict[str, Any]]:
    """Per dump of each process, the threads ``wanted`` selects, with their Python leaf."""
    for pid, ps in sorted(stacks.items()):
        for i, dump in enumerate(ps.dumps):
            if dump is None:
                continue
            for t in dump.threads:
                if not wanted(t):
                    continue
                py = [f for f in t.frames if f.kind == "python"]
                leaf = py[-1] if py else None
                yield {
                    "pid": pid,
                    "dump": i + 1,
                    "tid": t.tid,
                    "name": t.name,
                    "where": _frame_label(leaf.function, leaf.file, leaf.line) if leaf else "",
                    "in_gc": bool(t.in_gc),
                }


def gil_holders(stacks: Mapping[int, ProcessStacks]) -> List[Dict[str, Any]]:
    """The thread holding the GIL in each dump of each process (where the reader can tell)."""
    return list(_threads_where(stacks, lambda t: t.holds_gil))


def threads_in_gc(stacks: Mapping[int, ProcessStacks]) -> List[Dict[str, Any]]:
    """Threads seen inside a cyclic-GC collection, per dump."""
    rows = list(_threads_where(stacks, lambda t: t.in_gc))
    for row in rows:
        del row["in_gc"]  # always true here
    return rows


def gc_known(stacks: Mapping[int, ProcessStacks]) -> bool:
    """Whether any reader could tell GC state at all (py-spy cannot)."""
    return any(
        t.in_gc is not None
        for ps in stacks.values()
        for d in ps.dumps
        if d is not None
        for t in d.threads
    )


def gc_pauses(profile: Optional[Profile], window_ns: int) -> List[Dict[str, Any]]:
    """GC time per thread from the eBPF gc collector, busiest first.

    ``share`` is the fraction of the profile window the thread spent inside collections: a
    thread near 100 % was in a GC pause for the whole window.
    """
    if profile is None or len(profile) == 0:
        return []
    pause_idx = next(
        (i for i, st in enumerate(profile.sample_types) if st.unit == "nanoseconds"), 0
    )
    count_idx = next((i for i, st in enumerate(profile.sample_types) if st.unit == "count"), None)
    per: Dict[tuple, Dict[str, Any]] = {}
    for frames, labels, values in profile.items():
        lab = dict(labels)
        key = (lab.get("pid", ""), lab.get("thread_id", ""))
        row = per.setdefault(
            key,
            {
                "pid": int(key[0]) if key[0].isdigit() else key[0],
                "tid": int(key[1]) if key[1].isdigit() else key[1],
                "name": lab.get("thread_name", ""),
                "pause_ns": 0,
                "collections": 0,
                "generations": {},
            },
        )
        row["pause_ns"] += values[pause_idx]
        n = values[count_idx] if count_idx is not None else 0
        row["collections"] += n
        leaf = frames[-1].function if frames else "<gc>"
        row["generations"][leaf] = row["generations"].get(leaf, 0) + n
    out = list(per.values())
    for row in out:
        row["share"] = round(row["pause_ns"] / window_ns, 3) if window_ns else None
    out.sort(key=lambda r: r["pause_ns"], reverse=True)
    return out


def _cpu_column(profiles: Mapping[str, Profile]) -> int:
    """The Python profile's on-CPU column (cpu:nanoseconds) when it has one, else the first.

    The sampling core keeps idle threads' samples (so eBPF events can be charged to them); their
    cpu value is 0, so ranking by this column gives on-CPU top functions.
    """
    prof = profiles.get("python")
    if prof is None:
        return 0
    try:
        return prof.sample_type_index("cpu:nanoseconds")
    except KeyError:
        return 0


def derive(
    stacks: Mapping[int, ProcessStacks],
    profiles: Mapping[str, Profile],
    window_ns: int = 0,
) -> Dict[str, Any]:
    """All findings, most urgent first."""
    stuck = [s for pid in sorted(stacks) for s in stacks[pid].stuck]
    from hostprof.snapshot.stacks import REASON_ORDER

    stuck.sort(key=lambda s: (REASON_ORDER.get(s.reason, 9), s.pid, s.tid))
    pauses = gc_pauses(profiles.get("gc"), window_ns)
    # eBPF knows the kernel's thread name (comm); the dumps know the Python one.
    names = {
        (pid, t.tid): t.name
        for pid, ps in stacks.items()
        for d in ps.dumps
        if d is not None
        for t in d.threads
        if t.name
    }
    for row in pauses:
        row["name"] = names.get((row["pid"], row["tid"]), row["name"])
    deadlocks = []
    for pid, ps in sorted(stacks.items()):
        if not ps.deadlock_suspects:
            continue
        entry: Dict[str, Any] = {
            "pid": pid,
            "threads": [s.to_json() for s in ps.deadlock_suspects],
        }
        # Context for the reader: threads waiting for the GIL also sit in futex with unchanged
        # stacks, so a thread that held the GIL, unmoved, at both dumps is worth a look (a
        # long C call keeping the GIL); a pure-Python loop holding it at both is harmless.
        hog = next((s for s in ps.stuck if s.holds_gil), None)
        if hog is not None:
            entry["gil_held_at_both_dumps_by"] = hog.to_json()
        deadlocks.append(entry)
    return {
        "deadlock_suspects": deadlocks,
        "stuck_threads": [s.to_json() for s in stuck],
        "gil_holders": gil_holders(stacks),
        "threads_in_gc": threads_in_gc(stacks),
        "gc_state_known": gc_known(stacks),
        "gc_pauses": pauses,
        "top_functions": top_functions(profiles.get("python"), value_index=_cpu_column(profiles)),
        "top_native": top_functions(profiles.get("cpu")),
        "top_offcpu": top_functions(profiles.get("offcpu"), skip_kernel=True),
        "busiest_syscalls": busiest_syscalls(profiles.get("syscalls")),
    }
