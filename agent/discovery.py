"""Target discovery: which processes to profile, found by scanning /proc against the rules.

A scan reads one small file per process (``/proc/PID/stat``, for the start time); only
processes not seen before are classified (exe, cmdline, uid, cgroup and, when the executable
is not obviously Python, ``/proc/PID/maps`` for libpython). Results are cached per
(pid, start time), so PID reuse is a new process and the cache never outgrows the process table.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple

from hostprof.config import Rule

TargetKey = Tuple[int, int]
"""(pid, start time in clock ticks since boot): unique over the host's uptime."""

_PYTHON_EXE = re.compile(r"^python(\d+(\.\d+)?)?[a-z]?$")
_UNIT = re.compile(r"/([^/]+)\.service(/|$)")
_CONTAINER = re.compile(
    r"(?:docker|containerd|crio|libpod|cri-containerd)[-/:]([0-9a-f]{12,64})|/docker/([0-9a-f]{12,64})"
)
_SAFE_VALUE = re.compile(r"[^A-Za-z0-9_.:-]+")


@dataclasses.dataclass(frozen=True)
class ProcessFacts:
    """What discovery knows about one process."""

    pid: int
    start_ticks: int
    """Start time (``/proc/PID/stat`` field 22): with the pid, the process's identity."""
    exe: str
    """Executable path (``/proc/PID/exe``), empty when unreadable."""
    cmdline: Tuple[str, ...]
    uid: int
    user: str
    cgroup: str
    """The process's cgroup v2 path (or the v1 paths joined)."""
    systemd_unit: str
    """``foo`` for ``.../foo.service``, else empty."""
    container_id: str
    """Container id found in the cgroup path, else empty."""
    is_python: bool
    """A CPython interpreter, or a program that maps libpython."""

    @property
    def key(self) -> TargetKey:
        return self.pid, self.start_ticks

    def default_name(self) -> str:
        """The executable's name; for a Python interpreter, the script or ``-m`` module."""
        exe_name = os.path.basename(self.exe) or (self.cmdline[0] if self.cmdline else "unknown")
        if self.is_python and _PYTHON_EXE.match(exe_name):
            args = list(self.cmdline[1:])
            while args:
                a = args.pop(0)
                if a == "-m" and args:
                    return args[0]
                if a == "-c":
                    return exe_name
                if a.startswith("-"):
                    continue
                stem = os.path.basename(a)
                return stem[:-3] if stem.endswith(".py") else stem
        return exe_name


@dataclasses.dataclass(frozen=True)
class Match:
    """A process chosen by a rule."""

    facts: ProcessFacts
    rule: Rule
    service_name: str


def service_name_for(facts: ProcessFacts, rule: Rule) -> str:
    """Rule's name, else the systemd unit, else the container, else the executable name."""
    name = (
        rule.service_name
        or facts.systemd_unit
        or (f"container-{facts.container_id[:12]}" if facts.container_id else "")
        or facts.default_name()
    )
    return _SAFE_VALUE.sub("_", name)[:100] or "unknown"


def rule_matches(rule: Rule, facts: ProcessFacts) -> bool:
    """Whether every matcher set on ``rule`` matches ``facts``."""
    if rule.python_only and not facts.is_python:
        return False
    if rule.pids and facts.pid not in rule.pids:
        return False
    if rule.exe is not None and not re.search(rule.exe, facts.exe):
        return False
    if rule.cmdline is not None and not re.search(rule.cmdline, " ".join(facts.cmdline)):
        return False
    if rule.user is not None and rule.user not in (facts.user, str(facts.uid)):
        return False
    if rule.cgroup is not None and not re.search(rule.cgroup, facts.cgroup):
        return False
    return not (
        rule.container_id is not None
        and not (facts.container_id and facts.container_id.startswith(rule.container_id))
    )


def choose(rules: Sequence[Rule], facts: ProcessFacts) -> Optional[Match]:
    """The first matching rule decides: include gives a Match, exclude (or none) gives None."""
    for rule in rules:
        if rule_matches(rule, facts):
            if rule.action == "exclude":
                return None
            return Match(facts, rule, service_name_for(facts, rule))
    return None


YOUNG_S = 5.0
"""Non-matching processes younger than this are re-checked each scan (they may exec)."""
_HZ = os.sysconf("SC_CLK_TCK")


def _read_cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def read_start_ticks(pid: int) -> Optional[int]:
    """The start time of ``pid`` in clock ticks, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def read_facts(
    pid: int, start: Optional[int] = None, check_python: bool = True
) -> Optional[ProcessFacts]:
    """Classifies one process; None when it is gone or a kernel thread.

    With ``check_python=False`` the (costlier) libpython check is skipped and ``is_python``
    says only whether the executable is named like an interpreter.
    """
    if start is None:
        start = read_start_ticks(pid)
    if start is None:
        return None
    base = f"/proc/{pid}"
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = ""
    try:
        with open(f"{base}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw and not exe:
        return None  # kernel thread
    cmdline = tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0"))
    try:
        uid = os.stat(base).st_uid
    except OSError:
        return None
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        with open(f"{base}/cgroup", encoding="utf-8", errors="replace") as f:
            cg_lines = f.read().splitlines()
    except OSError:
        cg_lines = []
    paths = [ln.split(":", 2)[2] for ln in cg_lines if ln.count(":") >= 2]
    cgroup = next((ln.split(":", 2)[2] for ln in cg_lines if ln.startswith("0::")), ";".join(paths))
    units = _UNIT.findall(cgroup)
    unit = units[-1][0] if units else ""
    m = _CONTAINER.search(cgroup)
    container = (m.group(1) or m.group(2)) if m else ""
    if container:
        unit = ""  # a unit inside a container is the runtime's scope, not the service
    exe_name = os.path.basename(exe.replace(" (deleted)", ""))
    is_python = bool(_PYTHON_EXE.match(exe_name))
    if not check_python:
        return ProcessFacts(pid, start, exe, cmdline, uid, user, cgroup, unit, container, is_python)
    is_python = is_python and _maps_python(pid, require=False)
    if not is_python:
        is_python = _maps_python(pid, require=True)
    return ProcessFacts(pid, start, exe, cmdline, uid, user, cgroup, unit, container, is_python)


def _maps_python(pid: int, require: bool) -> bool:
    """Whether the process maps libpython (``require``) or is at least not a shim script.

    Without ``require``, an interpreter-named executable counts as Python unless its maps are
    readable and show no interpreter at all (e.g. a shell script named ``python``).
    """
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return not require
    if b"libpython" in maps:
        return True
    if require:
        return False
    # A statically linked interpreter (Debian's) maps only its own binary: accept it.
    return b"python" in maps


class Discovery:
    """Keeps the set of matched targets up to date across scans."""

    def __init__(self, rules: Sequence[Rule], exclude_pids: Iterable[int] = ()) -> None:
        self.rules = tuple(rules)
        self.exclude_pids: Set[int] = set(exclude_pids)
        self._seen: Dict[TargetKey, Optional[Match]] = {}
        self._cmdlines: Dict[TargetKey, bytes] = {}
        self._inodes: Dict[int, Tuple[int, int]] = {}
        self._uptime_ticks = 0.0
        self.scans = 0

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Replaces the rules; every process is classified again on the next scan."""
        self.rules = tuple(rules)
        self._seen.clear()

    def scan(self) -> Tuple[List[Match], List[TargetKey]]:
        """Rescans /proc. Returns (newly matched targets, keys of matched targets now gone)."""
        self.scans += 1
        with open("/proc/uptime", "rb") as f:
            self._uptime_ticks = float(f.read().split()[0]) * _HZ
        alive: Dict[TargetKey, None] = {}
        new: List[Match] = []
        inodes: Dict[int, Tuple[int, int]] = {}
        with os.scandir("/proc") as it:
            entries = [(e.name, e.inode()) for e in it if e.name.isdigit()]
        for name, ino in entries:
            pid = int(name)
            if pid in self.exclude_pids:
                continue
            # procfs gives each process directory a fresh inode number, so an unchanged one
            # means the same process: its start time need not be read again (one open per
            # process per scan saved). A changed one is checked by start time (PID reuse).
            known = self._inodes.get(pid)
            if known is not None and known[0] == ino:
                start = known[1]
            else:
                start = read_start_ticks(pid)
                if start is None:
                    continue
            inodes[pid] = (ino, start)
            key = (pid, start)
            alive[key] = None
            if key in self._seen:
                if self._seen[key] is not None or not self._young(start):
                    continue
                # A fresh process that did not match may not have exec'd yet (fork, then
                # exec): same pid and start time, new program. Look again while it is young.
                cmdline = _read_cmdline(pid)
                if cmdline == self._cmdlines.get(key):
                    continue
            match = self._classify(pid, start)
            if match is False:
                continue  # gone, or too young to judge cheaply: look again next scan
            self._seen[key] = match
            if match is None and self._young(start):
                self._cmdlines[key] = _read_cmdline(pid)
            else:
                self._cmdlines.pop(key, None)
            if match is not None:
                new.append(match)
        self._inodes = inodes
        gone = [k for k, m in self._seen.items() if k not in alive and m is not None]
        for k in [k for k in self._seen if k not in alive]:
            del self._seen[k]
        for k in [k for k in self._cmdlines if k not in alive or not self._young(k[1])]:
            del self._cmdlines[k]
        return new, gone

    def _classify(self, pid: int, start: int):
        """The Match for a new process, None for no match, False to decide on a later scan.

        Cheap facts first: the libpython check (reading ``/proc/PID/maps``) runs only when a
        Python-only rule would match on everything else, and not for a process younger than
        a second whose executable is not an interpreter (most such processes are short-lived
        tools; an embedding program is checked on a later scan).
        """
        facts = read_facts(pid, start, check_python=False)
        if facts is None:
            return False
        as_python = choose(self.rules, dataclasses.replace(facts, is_python=True))
        as_other = choose(self.rules, dataclasses.replace(facts, is_python=False))
        if as_python == as_other:
            return as_other  # the answer does not depend on it being Python
        if facts.is_python:
            is_python = _maps_python(pid, require=False)
        elif self._uptime_ticks - start < _HZ:
            return False
        else:
            is_python = _maps_python(pid, require=True)
        return choose(self.rules, dataclasses.replace(facts, is_python=is_python))

    def _young(self, start_ticks: int) -> bool:
        return self._uptime_ticks - start_ticks < YOUNG_S * _HZ

    def forget(self, key: TargetKey) -> None:
        """Classifies ``key`` again on the next scan (after a failed attach was retried)."""
        self._seen.pop(key, None)

    def matched(self) -> List[Match]:
        """Currently matched targets."""
        return [m for m in self._seen.values() if m is not None]
