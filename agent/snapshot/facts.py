"""Process and host facts for a snapshot, through psutil and /proc.

Every fact is read independently: one that fails (permission, the process exited) is recorded
under ``errors`` and the others are still collected. Command lines and environments pass through
the snapshot's :class:`~hostprof.snapshot.redact.Redactor` before they are stored.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import time
from typing import Any
from typing import Callable
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import psutil

from hostprof.snapshot.redact import Redactor

MAX_SOCKETS = 50
"""Sockets listed per process (all are counted)."""
MAX_FILES = 50
"""Open files listed per process (all are counted)."""
MAX_CHILDREN = 50
"""Children listed per process (all are counted)."""

# Container ids in cgroup paths: docker-<64 hex>.scope, /docker/<64 hex>, cri-containerd-<id>,
# crio-<id>, libpod-<id>; kubepods carry the pod uid as well.
_CONTAINER_ID = re.compile(r"(?:docker|cri-containerd|crio|libpod|containerd)[-/:]([0-9a-f]{64})")
_BARE_ID = re.compile(r"/([0-9a-f]{64})(?:\.scope)?$")
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


def _try(errors: Dict[str, str], name: str, fn: Callable[[], Any], default: Any = None) -> Any:
    """Runs one fact reader, recording its failure instead of raising."""
    try:
        return fn()
    except psutil.NoSuchProcess:
        errors[name] = "process exited"
    except psutil.AccessDenied:
        errors[name] = "permission denied"
    except psutil.ZombieProcess:
        errors[name] = "zombie process"
    except OSError as exc:
        errors[name] = exc.strerror or str(exc)
    except Exception as exc:  # one odd fact must not cost the others
        errors[name] = f"{type(exc).__name__}: {exc}"
    return default


def parse_cgroup(text: str) -> Tuple[List[str], Optional[str], Optional[str]]:
    """Parses /proc/PID/cgroup text: (lines, container id or None, Kubernetes pod uid or None).

    Docker (``/docker/<id>``, ``docker-<id>.scope``), containerd (``cri-containerd-<id>``),
    CRI-O (``crio-<id>``) and podman (``libpod-<id>``) ids are 64 hex digits; kubelet puts the
    pod uid in the path (``pod<uid>``, with ``_`` for ``-`` under systemd).
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    container = pod = None
    for ln in lines:
        path = ln.split(":", 2)[-1]
        m = _CONTAINER_ID.search(path) or _BARE_ID.search(path)
        if m and not container:
            container = m.group(1)
        p = _POD_UID.search(path)
        if p and not pod:
            pod = p.group(1).replace("_", "-")
    return lines, container, pod


def read_cgroup(pid: int) -> Tuple[List[str], Optional[str], Optional[str]]:
    """Returns (cgroup lines, container id or None, Kubernetes pod uid or None) of ``pid``."""
    with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
        return parse_cgroup(f.read())


def _socket(conn: Any) -> Dict[str, Any]:
    def addr(a: Any) -> str:
        if not a:
            return ""
        if isinstance(a, tuple) or hasattr(a, "ip"):
            return f"{a.ip}:{a.port}"
        return str(a)

    family = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}.get(conn.family, "unix")
    kind = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(conn.type, str(conn.type))
    return {
        "fd": conn.fd,
        "family": family,
        "type": kind if family != "unix" else f"unix-{kind}",
        "local": addr(conn.laddr),
        "remote": addr(conn.raddr),
        "status": conn.status,
    }


def process_facts(pid: int, redactor: Redactor) -> Dict[str, Any]:
    """Everything psutil and /proc say about one process, with secrets redacted.

    Never raises for a process that exits or denies access: ``errors`` says what was missing
    and ``alive`` whether the process still existed at the end.
    """
    errors: Dict[str, str] = {}
    facts: Dict[str, Any] = {"pid": pid, "errors": errors}
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        errors["process"] = "process exited"
        facts["alive"] = False
        return facts
    with proc.oneshot():
        facts["name"] = _try(errors, "name", proc.name)
        facts["exe"] = _try(errors, "exe", proc.exe)
        cmd = _try(errors, "cmdline", proc.cmdline, [])
        facts["cmdline"] = redactor.redact_cmdline(cmd or [])
        env = _try(errors, "environ", proc.environ, {})
        facts["environ"] = redactor.redact_env(env or {})
        facts["ppid"] = _try(errors, "ppid", proc.ppid)
        facts["username"] = _try(errors, "username", proc.username)
        facts["status"] = _try(errors, "status", proc.status)
        facts["create_time"] = _try(errors, "create_time", proc.create_time)
        facts["cwd"] = _try(errors, "cwd", proc.cwd)
        times = _try(errors, "cpu_times", proc.cpu_times)
        if times is not None:
            facts["cpu_times"] = {
                "user": times.user,
                "system": times.system,
                "children_user": times.children_user,
                "children_system": times.children_system,
            }
        facts["num_threads"] = _try(errors, "num_threads", proc.num_threads)
        facts["num_fds"] = _try(errors, "num_fds", proc.num_fds)
    # memory_full_info reads smaps (USS): outside oneshot, it is its own read.
    mem = _try(errors, "memory", proc.memory_full_info)
    if mem is not None:
        facts["memory"] = {"rss": mem.rss, "vms": mem.vms, "uss": mem.uss, "swap": mem.swap}
    else:
        rss = _try(errors, "memory_rss", proc.memory_info)
        if rss is not None:
            facts["memory"] = {"rss": rss.rss, "vms": rss.vms, "uss": None, "swap": None}
    files = _try(errors, "open_files", proc.open_files, [])
    facts["open_files_count"] = len(files or [])
    facts["open_files"] = [
        {"fd": f.fd, "path": redactor.scrub(f.path)} for f in (files or [])[:MAX_FILES]
    ]
    conns = _try(errors, "sockets", lambda: proc.net_connections(kind="all"), [])
    facts["sockets_count"] = len(conns or [])
    facts["sockets"] = [_socket(c) for c in (conns or [])[:MAX_SOCKETS]]
    children = _try(errors, "children", lambda: proc.children(recursive=True), [])
    facts["children_count"] = len(children or [])
    facts["children"] = []
    for child in (children or [])[:MAX_CHILDREN]:
        entry: Dict[str, Any] = {"pid": child.pid}
        try:
            entry["name"] = child.name()
            entry["cmdline"] = redactor.redact_cmdline(child.cmdline())
        except psutil.Error:
            entry["exited"] = True
        facts["children"].append(entry)
    cg = _try(errors, "cgroup", lambda: read_cgroup(pid))
    if cg is not None:
        facts["cgroup"], facts["container_id"], facts["pod_uid"] = cg
    facts["alive"] = proc.is_running()
    return facts


def _pressure() -> Dict[str, Dict[str, Dict[str, float]]]:
    """Pressure stall information (/proc/pressure/*), where the kernel has it."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for res in ("cpu", "memory", "io"):
        try:
            with open(f"/proc/pressure/{res}", encoding="ascii") as f:
                lines = f.read().split("\n")
        except OSError:
            continue
        entry: Dict[str, Dict[str, float]] = {}
        for ln in lines:
            parts = ln.split()
            if not parts:
                continue
            entry[parts[0]] = {
                k: float(v) for k, v in (p.split("=", 1) for p in parts[1:] if "=" in p)
            }
        out[res] = entry
    return out


class CpuSampler:
    """Per-process CPU times at two instants, for "top processes by CPU" over the snapshot.

    ``start()`` at the beginning of the profile window and ``top()`` at its end give CPU use
    during the incident window without a separate sleep.
    """

    def __init__(self) -> None:
        self._t0 = 0.0
        self._before: Dict[Tuple[int, float], float] = {}

    @staticmethod
    def _read() -> Dict[Tuple[int, float], Tuple[float, str, int, List[str]]]:
        out = {}
        for p in psutil.process_iter(["name", "cpu_times", "memory_info", "create_time"]):
            info = p.info
            t = info.get("cpu_times")
            m = info.get("memory_info")
            if t is None:
                continue
            out[(p.pid, info.get("create_time") or 0.0)] = (
                t.user + t.system,
                info.get("name") or "?",
                m.rss if m is not None else 0,
                [],
            )
        return out

    def start(self) -> None:
        """Takes the first reading."""
        self._t0 = time.monotonic()
        self._before = {k: v[0] for k, v in self._read().items()}

    def top(self, redactor: Redactor, n: int = 10) -> Dict[str, List[Dict[str, Any]]]:
        """Top ``n`` processes by CPU % since :meth:`start`, and by RSS now."""
        now = self._read()
        elapsed = max(time.monotonic() - self._t0, 1e-3)
        rows = []
        for (pid, ctime), (cpu, name, rss, _) in now.items():
            before = self._before.get((pid, ctime))
            pct = 100.0 * (cpu - before) / elapsed if before is not None else None
            rows.append({"pid": pid, "name": name, "cpu_percent": pct, "rss": rss})
        by_cpu = sorted(
            (r for r in rows if r["cpu_percent"] is not None),
            key=lambda r: r["cpu_percent"],
            reverse=True,
        )[:n]
        by_rss = sorted(rows, key=lambda r: r["rss"], reverse=True)[:n]
        for r in {id(r): r for r in by_cpu + by_rss}.values():
            try:
                r["cmdline"] = " ".join(redactor.redact_cmdline(psutil.Process(r["pid"]).cmdline()))
            except psutil.Error:
                r["cmdline"] = ""
            if r["cpu_percent"] is not None:
                r["cpu_percent"] = round(r["cpu_percent"], 1)
        return {"by_cpu": by_cpu, "by_rss": by_rss, "window_seconds": round(elapsed, 2)}


def host_facts() -> Dict[str, Any]:
    """Load, memory, swap, pressure, disks, kernel and identity of this host."""
    errors: Dict[str, str] = {}
    facts: Dict[str, Any] = {"errors": errors}
    facts["hostname"] = socket.gethostname()
    facts["kernel"] = platform.release()
    facts["kernel_version"] = _try(errors, "kernel_version", _kernel_version)
    facts["cpu_count"] = os.cpu_count()
    facts["boot_time"] = _try(errors, "boot_time", psutil.boot_time)
    facts["load"] = _try(errors, "load", lambda: list(os.getloadavg()))
    vm = _try(errors, "memory", psutil.virtual_memory)
    if vm is not None:
        facts["memory"] = {
            "total": vm.total,
            "available": vm.available,
            "used": vm.used,
            "percent": vm.percent,
        }
    sw = _try(errors, "swap", psutil.swap_memory)
    if sw is not None:
        facts["swap"] = {"total": sw.total, "used": sw.used, "percent": sw.percent}
    facts["pressure"] = _try(errors, "pressure", _pressure, {})
    facts["disks"] = _try(errors, "disks", _disks, [])
    return facts


def _kernel_version() -> str:
    with open("/proc/version", encoding="utf-8", errors="replace") as f:
        return f.read().strip()


def _disks() -> List[Dict[str, Any]]:
    out = []
    seen = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            du = shutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        out.append(
            {
                "mount": part.mountpoint,
                "fstype": part.fstype,
                "total": du.total,
                "used": du.used,
                "percent": round(100.0 * du.used / du.total, 1) if du.total else 0.0,
            }
        )
    return out[:20]
