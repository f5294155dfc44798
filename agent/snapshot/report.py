"""The snapshot's reports: summary.md, report.html, stacks.txt and snapshot.json.

summary.md opens with the findings (stuck threads, GIL holders, threads in GC, top functions,
busiest syscalls), then what was unavailable or partial, then processes and host. report.html
is the same document plus inline SVG flamegraphs and links to the interactive ones. Both are
built from one block list (:mod:`hostprof.snapshot.document`), so they cannot disagree.
"""

from __future__ import annotations

import datetime
import html
import json
from typing import Any
from typing import Dict
from typing import List
from typing import Mapping
from typing import Optional

from hostprof.snapshot import document as doc
from hostprof.snapshot import svgflame
from hostprof.snapshot.records import ProcessDump
from hostprof.snapshot.stacks import IDLE_REASONS
from hostprof.snapshot.take import SNAPSHOT_VERSION
from hostprof.snapshot.take import Snapshot

WALL_TITLE = "Python stacks (all threads, wall clock: where each thread is, blocked or not)"

TOP_ROWS = 20
"""Rows shown of long lists (the rest is in snapshot.json)."""

PROFILE_TITLES = {
    "python": ("Python stacks (on-CPU)", "samples"),
    "cpu": ("CPU (eBPF, native + kernel)", ""),
    "offcpu": ("Off-CPU (blocked time)", ""),
    "syscalls": ("Syscalls", ""),
    "gc": ("GC pauses (eBPF)", ""),
}


def _mb(n: Optional[float]) -> str:
    return "?" if n is None else f"{n / 1048576:,.1f} MB"


def _amount(value: int, unit: str) -> str:
    """A sample value for people: nanoseconds as ms, counts as counts."""
    if unit == "nanoseconds":
        return f"{value / 1e6:,.1f} ms"
    return f"{value:,}" + (f" {unit}" if unit and unit != "count" else "")


def _when(ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _where(row: Mapping[str, Any]) -> str:
    fn = row.get("function") or "?"
    file = (row.get("file") or "").rsplit("/", 1)[-1]
    line = row.get("line") or 0
    return f"`{fn}` ({file}:{line})" if file else f"`{fn}`"


def _proc_name(snap: Snapshot, pid: int) -> str:
    facts = snap.processes.get(pid, {})
    cmd = " ".join(" ".join(facts.get("cmdline") or []).split()) or facts.get("name") or "?"
    return cmd if len(cmd) <= 80 else cmd[:79] + "…"


def _where_app(t: Mapping[str, Any]) -> str:
    """Where a thread sits, plus the application frame that called into the stdlib."""
    where = _where(t)
    app = t.get("app_function")
    if app and (app, t.get("app_line")) != (t.get("function"), t.get("line")):
        app_file = (t.get("app_file") or "").rsplit("/", 1)[-1]
        where += f", called from `{app}` ({app_file}:{t.get('app_line')})"
    return where


def _thread_line(t: Mapping[str, Any]) -> str:
    extra = []
    if t.get("syscall"):
        extra.append(f"in `{t['syscall']}`")
    cpu = t.get("cpu_seconds")
    if cpu is not None:
        extra.append("no CPU used between dumps" if cpu == 0 else f"{cpu:.2f} s CPU between dumps")
    if t.get("holds_gil"):
        extra.append("holds the GIL")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"`{t['name'] or '?'}` (tid {t['tid']}): {t['reason']} at {_where_app(t)}{tail}"


def _group_line(ts: List[Mapping[str, Any]]) -> str:
    """One line for several threads of one process stuck at the same place."""
    t = ts[0]
    if len(ts) == 1:
        return f"pid {t['pid']} {_thread_line(t)}"
    names = ", ".join(f"`{x['name'] or x['tid']}`" for x in ts[:4])
    more = f" and {len(ts) - 4} more" if len(ts) > 4 else ""
    sc = f" (in `{t['syscall']}`)" if t.get("syscall") else ""
    return (
        f"pid {t['pid']}: {len(ts)} threads ({names}{more}): {t['reason']} at {_where_app(t)}{sc}"
    )


def findings_blocks(snap: Snapshot) -> List[doc.Block]:
    """The findings section, most urgent first."""
    f = snap.findings
    blocks: List[doc.Block] = [doc.Heading(2, "Findings")]
    # 1. Stuck threads.
    blocks.append(doc.Heading(3, "Threads stuck in both dumps (same stack 1 s apart)"))
    items = []
    for dl in f.get("deadlock_suspects", []):
        lines = [
            f"**Possible deadlock in pid {dl['pid']}** (`{_proc_name(snap, dl['pid'])}`): "
            f"{len(dl['threads'])} threads waiting on locks with unchanged stacks:"
        ]
        lines += [f"  - {_thread_line(t)}" for t in dl["threads"]]
        items.append("\n".join(lines))
    in_deadlock = {
        (dl["pid"], t["tid"]) for dl in f.get("deadlock_suspects", []) for t in dl["threads"]
    }
    rest = [t for t in f.get("stuck_threads", []) if (t["pid"], t["tid"]) not in in_deadlock]
    idle = [t for t in rest if t["reason"] in IDLE_REASONS]
    rest = [t for t in rest if t["reason"] not in IDLE_REASONS]
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for t in rest:
        key = (t["pid"], t["reason"], t["function"], t["file"], t["line"], t.get("app_function"))
        groups.setdefault(key, []).append(t)
    shown = list(groups.values())
    for ts in shown[:TOP_ROWS]:
        items.append(_group_line(ts))
    if len(shown) > TOP_ROWS:
        hidden = sum(len(ts) for ts in shown[TOP_ROWS:])
        items.append(
            f"… and {hidden} more threads in {len(shown) - TOP_ROWS} groups (snapshot.json)"
        )
    if idle and len(idle) <= 5 and not items:
        items.extend(f"pid {t['pid']} {_thread_line(t)}" for t in idle)
    elif idle:
        n_proc = len({t["pid"] for t in idle})
        counts = {r: sum(1 for t in idle if t["reason"] == r) for r in sorted(IDLE_REASONS)}
        what = ", ".join(f"{n} {r}" for r, n in counts.items() if n)
        items.append(
            f"{len(idle)} idle thread(s) in {n_proc} process(es) also kept their stack ({what}): "
            "usually normal for worker pools and main threads (each one is in stacks.txt)"
        )
    if items:
        blocks.append(doc.Bullets(items))
    elif any(ps.dumps[0] and ps.dumps[1] for ps in snap.stacks.values()):
        blocks.append(doc.Para("No thread had the same stack in both dumps."))
    else:
        blocks.append(doc.Para("Not known: no process was dumped twice."))
    # 2. GIL holders.
    blocks.append(doc.Heading(3, "GIL holder"))
    gil = f.get("gil_holders", [])
    if gil:
        blocks.append(
            doc.Bullets(
                [
                    f"pid {g['pid']} dump {g['dump']}: `{g['name'] or '?'}` (tid {g['tid']}) "
                    f"at `{g['where']}`" + (" (collecting garbage)" if g.get("in_gc") else "")
                    for g in gil[:40]
                ]
            )
        )
    elif not any(d is not None for ps in snap.stacks.values() for d in ps.dumps):
        blocks.append(doc.Para("Not known: no process could be dumped."))
    else:
        blocks.append(
            doc.Para(
                "No thread held the GIL at either dump (all threads idle or in C code without it)."
            )
        )
    # 3. GC.
    blocks.append(doc.Heading(3, "Threads in GC"))
    gc = f.get("threads_in_gc", [])
    if gc:
        blocks.append(
            doc.Bullets(
                [
                    f"pid {g['pid']} dump {g['dump']}: `{g['name'] or '?'}` (tid {g['tid']}) "
                    f"**in a garbage collection**, called from `{g['where']}`"
                    for g in gc
                ]
            )
        )
    elif not any(d is not None for ps in snap.stacks.values() for d in ps.dumps):
        blocks.append(doc.Para("At the dumps: not known (no process could be dumped)."))
    elif f.get("gc_state_known"):
        blocks.append(doc.Para("No thread was inside a garbage collection at either dump."))
    else:
        blocks.append(
            doc.Para("At the dumps: unknown (the stack reader used, py-spy, cannot see GC state).")
        )
    pauses = [p for p in f.get("gc_pauses", []) if p["pause_ns"] > 0]
    if pauses:
        blocks.append(doc.Para("GC pauses during the profile window (eBPF):"))
        rows = []
        for p in pauses[:TOP_ROWS]:
            share = p.get("share")
            flag = " **in GC most of the window**" if share is not None and share >= 0.5 else ""
            gens = ", ".join(f"{n} x {g}" for g, n in sorted(p["generations"].items()))
            rows.append(
                f"pid {p['pid']} `{p['name'] or '?'}` (tid {p['tid']}): "
                f"{p['pause_ns'] / 1e6:,.1f} ms in {p['collections']} collection(s) ({gens})"
                + (f", {100 * share:.0f}% of the window" if share is not None else "")
                + flag
            )
        blocks.append(doc.Bullets(rows))
    elif "gc" in snap.profile.profiles:
        blocks.append(doc.Para("No GC collection ran in the targets during the profile window."))
    # 4. Top functions.
    blocks.append(doc.Heading(3, "Top functions"))
    tf = f.get("top_functions", [])
    if tf:
        blocks.append(
            doc.Table(
                ["function", "file", "self %", "total %", "self"],
                [
                    [
                        f"`{r['function']}`",
                        r["file"].rsplit("/", 1)[-1],
                        f"{r['self_percent']}",
                        f"{r['total_percent']}",
                        _amount(r["self"], r.get("unit", "")),
                    ]
                    for r in tf
                ],
            )
        )
    else:
        blocks.append(doc.Para("No on-CPU Python samples in the profile window."))
    if f.get("top_native"):
        blocks.append(doc.Para("Native and kernel (eBPF CPU samples):"))
        blocks.append(
            doc.Table(
                ["function", "kind", "self %", "total %"],
                [
                    [
                        f"`{r['function']}`",
                        r["kind"],
                        f"{r['self_percent']}",
                        f"{r['total_percent']}",
                    ]
                    for r in f["top_native"]
                ],
            )
        )
    # 5. Syscalls.
    blocks.append(doc.Heading(3, "Busiest syscalls"))
    sc = f.get("busiest_syscalls", [])
    if sc:
        blocks.append(
            doc.Table(
                ["syscall", "count", "total time", "top Python caller"],
                [
                    [
                        f"`{r['syscall']}`",
                        f"{r['count']:,}",
                        "" if r.get("total_ns") is None else f"{r['total_ns'] / 1e6:,.1f} ms",
                        r.get("top_caller") or "",
                    ]
                    for r in sc
                ],
            )
        )
    elif "syscalls" in snap.profile.profiles:
        blocks.append(doc.Para("No syscalls recorded for the targets."))
    else:
        why = (
            snap.profile.unavailable.get("syscalls")
            or snap.profile.failed.get("syscalls")
            or "not run"
        )
        blocks.append(doc.Para(f"Unavailable (syscalls collector: {why})."))
    if f.get("top_offcpu"):
        blocks.append(doc.Heading(3, "Where threads blocked (off-CPU)"))
        blocks.append(
            doc.Table(
                ["function", "file", "kind", "blocked %", "blocked time"],
                [
                    [
                        f"`{r['function']}`",
                        r["file"].rsplit("/", 1)[-1],
                        r["kind"],
                        f"{r['self_percent']}",
                        _amount(r["self"], r.get("unit", "")),
                    ]
                    for r in f["top_offcpu"]
                ],
            )
        )
    return blocks


def status_blocks(snap: Snapshot) -> List[doc.Block]:
    """Partial targets, failed and unavailable parts."""
    items = []
    for pid, st in sorted(snap.statuses.items()):
        if st["status"] in ("partial", "failed"):
            items.append(f"pid {pid} **{st['status']}**: {'; '.join(st['reasons'])}")
    for name, why in sorted(snap.profile.failed.items()):
        items.append(f"**{name} collector failed**: {why}")
    for name, why in sorted(snap.unavailable.items()):
        items.append(f"{name} unavailable: {why}")
    if not items:
        return []
    return [doc.Heading(2, "Partial and unavailable parts"), doc.Bullets(items)]


def process_blocks(snap: Snapshot) -> List[doc.Block]:
    """One row per target."""
    rows = []
    for t in snap.targets:
        facts = snap.processes.get(t.pid, {})
        st = snap.statuses.get(t.pid, {})
        mem = facts.get("memory") or {}
        cpu = facts.get("cpu_times") or {}
        dump = snap.stacks.get(t.pid).latest() if t.pid in snap.stacks else None
        rows.append(
            [
                str(t.pid),
                f"`{_proc_name(snap, t.pid)}`",
                st.get("status", "?"),
                str(facts.get("num_threads", "?")),
                _mb(mem.get("rss")),
                _mb(mem.get("uss")),
                f"{cpu.get('user', 0) + cpu.get('system', 0):.1f} s" if cpu else "?",
                f"{facts.get('open_files_count', '?')} / {facts.get('sockets_count', '?')}",
                (facts.get("container_id") or "")[:12],
                dump.source if dump else "",
            ]
        )
    return [
        doc.Heading(2, "Processes"),
        doc.Table(
            [
                "pid",
                "command",
                "status",
                "threads",
                "RSS",
                "USS",
                "CPU",
                "files / sockets",
                "container",
                "stacks by",
            ],
            rows,
        ),
    ]


def host_blocks(snap: Snapshot) -> List[doc.Block]:
    """Load, memory, pressure, top processes."""
    h = snap.host
    load = h.get("load") or []
    mem = h.get("memory") or {}
    swap = h.get("swap") or {}
    items = [
        f"host `{h.get('hostname', '?')}`, kernel `{h.get('kernel', '?')}`, "
        f"{h.get('cpu_count', '?')} CPUs",
        "load " + " / ".join(f"{x:.2f}" for x in load) if load else "load unknown",
        f"memory {mem.get('percent', '?')}% used, "
        f"{_mb(mem.get('available'))} available of {_mb(mem.get('total'))}",
        f"swap {swap.get('percent', '?')}% used of {_mb(swap.get('total'))}",
    ]
    psi = h.get("pressure") or {}
    for res in ("cpu", "memory", "io"):
        some = (psi.get(res) or {}).get("some")
        if some:
            items.append(
                f"{res} pressure: some avg10={some.get('avg10')}% avg60={some.get('avg60')}%"
            )
    for d in h.get("disks") or []:
        if d.get("percent", 0) >= 80:
            items.append(f"disk `{d['mount']}` {d['percent']}% full")
    blocks: List[doc.Block] = [doc.Heading(2, "Host"), doc.Bullets(items)]
    top = h.get("top") or {}
    if top.get("by_cpu"):
        blocks.append(
            doc.Para(f"Top processes by CPU over the last {top.get('window_seconds')} s:")
        )
        blocks.append(
            doc.Table(
                ["pid", "CPU %", "RSS", "command"],
                [
                    [
                        str(r["pid"]),
                        f"{r['cpu_percent']}",
                        _mb(r["rss"]),
                        f"`{(r.get('cmdline') or r['name'])[:70]}`",
                    ]
                    for r in top["by_cpu"]
                ],
            )
        )
    if top.get("by_rss"):
        blocks.append(doc.Para("Top processes by RSS:"))
        blocks.append(
            doc.Table(
                ["pid", "RSS", "command"],
                [
                    [str(r["pid"]), _mb(r["rss"]), f"`{(r.get('cmdline') or r['name'])[:70]}`"]
                    for r in top["by_rss"]
                ],
            )
        )
    return blocks


def header_blocks(snap: Snapshot) -> List[doc.Block]:
    """Title and one-paragraph overview."""
    n_py = sum(1 for t in snap.targets if t.is_python)
    state = "**PARTIAL**" if snap.partial else "complete"
    used = sorted({d.source for ps in snap.stacks.values() for d in ps.dumps if d is not None})
    readers = ", ".join(used) or "none"
    locals_note = ""
    if snap.options.with_locals:
        by = sorted(
            {
                d.locals_source
                for ps in snap.stacks.values()
                for d in ps.dumps
                if d is not None and d.locals_source
            }
        )
        locals_note = f"locals read by {', '.join(by)}; " if by else "locals unavailable; "
    cov = snap.profile.coverage
    collected = (
        ", ".join(
            f"{name} {cov[name]:.1f} s" if name in cov else name
            for name in sorted(snap.profile.profiles, key=lambda n: (n != "python", n))
        )
        or "none"
    )
    return [
        doc.Heading(
            1, f"hostprof snapshot — {snap.host.get('hostname', '?')}, {_when(snap.started_ns)}"
        ),
        doc.Para(
            f"{len(snap.targets)} target(s), {n_py} Python; two dumps 1 s apart; "
            f"profile {snap.options.profile_seconds:g} s ({collected}); stacks read by {readers}; "
            f"{locals_note}took {snap.elapsed_s:.1f} s. Result: {state}."
        ),
    ]


def blocks(snap: Snapshot) -> List[doc.Block]:
    """The whole summary document."""
    return [
        *header_blocks(snap),
        *findings_blocks(snap),
        *status_blocks(snap),
        *process_blocks(snap),
        *host_blocks(snap),
        doc.Para(
            "Full thread stacks of both dumps: `stacks.txt`; everything: `snapshot.json`; "
            "profiles: `profiles/`."
        ),
    ]


def summary_md(snap: Snapshot) -> str:
    """summary.md."""
    return doc.to_markdown(blocks(snap))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;
max-width:1260px}
h1{font-size:22px}h2{border-bottom:1px solid #d7dbe3;padding-bottom:4px;margin-top:28px}
h3{font-size:16px;margin-bottom:6px}
code{background:#f1f3f7;padding:1px 4px;border-radius:3px;font-size:90%}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #d7dbe3;padding:3px 8px;
text-align:left;font-size:13px;vertical-align:top}th{background:#f1f3f7}
pre{background:#f7f8fa;padding:8px;overflow:auto;font-size:12px}
svg.flame{border:1px solid #d7dbe3;margin:4px 0 16px;background:#fff}
svg.flame text{pointer-events:none;fill:#111}svg.flame rect:hover{stroke:#000;stroke-width:.7}
.empty{color:#667}
"""


def report_html(snap: Snapshot, interactive: Mapping[str, str]) -> str:
    """report.html: the summary plus inline flamegraphs; ``interactive`` maps profile name to
    the archive path of its interactive HTML flamegraph, where one was written."""
    names = {str(pid): (snap.processes.get(pid, {}).get("name") or "") for pid in snap.processes}
    flames: List[doc.Block] = [doc.Heading(2, "Flamegraphs")]
    for name, prof in snap.profile.profiles.items():
        title, unit = PROFILE_TITLES.get(name, (name, ""))
        unit = unit or str(prof.sample_types[0].unit)
        flames.append(doc.Heading(3, title))
        if name in interactive:
            flames.append(
                doc.RawHtml(
                    f'<p><a href="{html.escape(interactive[name])}">interactive flamegraph</a> · '
                    f"pprof: <code>profiles/{html.escape(name)}.pb.gz</code></p>"
                )
            )
        if name == "python" and len(prof.sample_types) > 1:
            # On-CPU first (what burns CPU), then every thread wherever it is (what hangs).
            totals = prof.totals()
            shown = set()
            for st, label in (("cpu:nanoseconds", title), ("wall:nanoseconds", WALL_TITLE)):
                try:
                    col = prof.sample_type_index(st)
                except KeyError:
                    continue
                if totals[col] in shown:
                    continue  # idle threads were not sampled: wall clock = on-CPU
                shown.add(totals[col])
                flames.append(doc.RawHtml(svgflame.render(prof, label, col, "ns", names)))
            continue
        flames.append(doc.RawHtml(svgflame.render(prof, title, 0, unit, names)))
    if len(flames) == 1:
        flames.append(doc.Para("No profile was collected."))
    all_blocks = blocks(snap)
    # Flamegraphs right after the findings, before the reference tables.
    idx = next(
        (
            i
            for i, b in enumerate(all_blocks)
            if isinstance(b, doc.Heading) and b.level == 2 and b.text != "Findings"
        ),
        len(all_blocks),
    )
    body = doc.to_html_body(all_blocks[:idx] + flames + all_blocks[idx:])
    title = html.escape(f"hostprof snapshot — {snap.host.get('hostname', '?')}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _dump_text(dump: ProcessDump, title: str, before: Optional[ProcessDump] = None) -> List[str]:
    lines = [f"{title} (pid {dump.pid}, {_when(dump.taken_ns)}, read by {dump.source})"]
    for t in dump.threads:
        prev = before.thread(t.tid) if before is not None else None
        flags = []
        if t.holds_gil:
            flags.append("has GIL")
        if t.in_gc:
            flags.append("IN GC")
        if t.os_state:
            flags.append(t.os_state + (f" in {t.syscall}" if t.syscall else ""))
        lines.append(f'  Thread {t.tid} "{t.name}" [{", ".join(flags)}]')
        has_locals = any(fr.locals for fr in t.frames)
        if prev is not None and t.frames and prev.stack_key() == t.stack_key() and not has_locals:
            lines.append("    (same stack as in dump 1)")
            continue
        for fr in reversed(t.frames):
            loc = f"{fr.file}:{fr.line}" if fr.file else ""
            lines.append(f"    {fr.function} ({loc})" if loc else f"    {fr.function}")
            for k, v in (fr.locals or {}).items():
                lines.append(f"        {k} = {v}")
        if t.native:
            lines.append("    -- native/kernel (heaviest eBPF CPU stack of this thread) --")
            lines.extend(f"    {fr.function} [{fr.kind}]" for fr in reversed(t.native))
    return lines


def stacks_txt(snap: Snapshot) -> str:
    """stacks.txt: both dumps of every process, innermost frame first (like py-spy dump)."""
    out: List[str] = []
    for pid in sorted(snap.stacks):
        ps = snap.stacks[pid]
        out.append(f"=== pid {pid}: {_proc_name(snap, pid)}")
        for err in ps.errors:
            out.append(f"  ! {err}")
        for i, dump in enumerate(ps.dumps):
            if dump is not None:
                before = ps.dumps[0] if i == 1 else None
                out.extend(_dump_text(dump, f"-- dump {i + 1}", before))
        out.append("")
    return "\n".join(out) + "\n"


def snapshot_json(snap: Snapshot, files: Mapping[str, str]) -> Dict[str, Any]:
    """Everything, machine-readable."""
    try:
        from importlib.metadata import version

        hp_version = version("hostprof")
    except Exception:
        hp_version = "unknown"
    targets = []
    for t in snap.targets:
        ps = snap.stacks.get(t.pid)
        targets.append(
            {
                "pid": t.pid,
                "name": t.name,
                "is_python": t.is_python,
                **snap.statuses.get(t.pid, {}),
                "facts": snap.processes.get(t.pid, {}),
                "stacks": ps.to_json() if ps else None,
                "profile_error": snap.profile.target_errors.get(t.pid),
            }
        )
    profiles = {}
    for name, prof in snap.profile.profiles.items():
        profiles[name] = {
            "source": snap.profile.sources.get(name),
            "sample_types": [str(s) for s in prof.sample_types],
            "totals": list(prof.totals()),
            "rows": len(prof),
            "stats": snap.profile.stats.get(name, {}),
        }
    return {
        "version": SNAPSHOT_VERSION,
        "kind": "hostprof-snapshot",
        "id": snap.id,
        "hostprof_version": hp_version,
        "started": _when(snap.started_ns),
        "started_ns": snap.started_ns,
        "elapsed_seconds": round(snap.elapsed_s, 3),
        "timings": snap.timings,
        "partial": snap.partial,
        "partial_reasons": snap.partial_reasons(),
        "options": {
            "profile_seconds": snap.options.profile_seconds,
            "locals": snap.options.with_locals,
            "rate_hz": snap.options.rate,
            "collectors": list(snap.options.collectors),
        },
        "readers": snap.readers_used,
        "unavailable": dict(snap.unavailable),
        "redactions": snap.redactor.count,
        "findings": snap.findings,
        "profile": {
            "start_ns": snap.profile.start_ns,
            "duration_ns": snap.profile.duration_ns,
            "profiles": profiles,
            "coverage_seconds": snap.profile.coverage,
            "unavailable": snap.profile.unavailable,
            "failed": snap.profile.failed,
        },
        "files": dict(files),
        "host": snap.host,
        "targets": targets,
    }


def dumps_json(data: Mapping[str, Any]) -> str:
    """snapshot.json text (stable key order, compact enough to stay small)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
