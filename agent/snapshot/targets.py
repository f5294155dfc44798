"""Which processes a snapshot looks at: explicit pids, a cmdline regex, or every Python process.

A process is "Python" when its executable's name starts with ``python`` (``python3.11``,
``python3.13t``) or when it maps a ``libpython`` shared library (embedded interpreters, uwsgi,
gunicorn workers started through a launcher). hostprof's own process is never a target.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import List
from typing import Optional
from typing import Sequence

import psutil

from hostprof._errors import ProcessGoneError
from hostprof._errors import UsageError

_PYTHON_EXE = re.compile(r"^python\d*(\.\d+)?[a-z]*$")


@dataclasses.dataclass(frozen=True)
class Target:
    """One process selected for the snapshot."""

    pid: int
    """Process id."""
    name: str
    """Process name (comm), for display."""
    create_time: float
    """psutil start time, to notice pid reuse between steps."""
    is_python: bool
    """Whether it looks like a CPython process (stacks are only read from those)."""


def is_python_process(proc: psutil.Process) -> bool:
    """Whether ``proc`` runs a CPython interpreter (by executable name or mapped libpython).

    The executable link and the maps of another user's process are not readable without
    privileges, but its comm and command line are: those are tried too, so that running
    unprivileged still finds the targets (and then reports what it cannot read of them).
    """
    names = []
    for getter in (proc.exe, proc.name, lambda: (proc.cmdline() or [""])[0]):
        try:
            names.append(os.path.basename(getter() or ""))
        except (psutil.Error, OSError):
            continue
    if any(_PYTHON_EXE.match(n) for n in names):
        return True
    try:
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                if "/libpython" in line:
                    return True
    except OSError:
        pass
    return False


def _excluded() -> set:
    """hostprof itself is never a target (its helpers, e.g. py-spy, start after selection)."""
    return {os.getpid()}


def _target(proc: psutil.Process) -> Target:
    return Target(
        pid=proc.pid,
        name=proc.name(),
        create_time=proc.create_time(),
        is_python=is_python_process(proc),
    )


def select_targets(
    pids: Optional[Sequence[int]] = None,
    match: Optional[str] = None,
    all_python: bool = False,
) -> List[Target]:
    """Resolves the target options to processes.

    Exactly one of ``pids``, ``match`` or ``all_python`` should be given; with none, every
    Python process is selected (the useful default at 3 a.m.).

    Raises:
        UsageError: a bad regex, or nothing matched.
        ProcessGoneError: an explicit pid does not exist.
    """
    chosen = [bool(pids), match is not None, all_python]
    if sum(chosen) > 1:
        raise UsageError(
            "choose one of --pid, --match and --all-python",
            "give several --pid options to snapshot several processes",
        )
    excluded = _excluded()
    if pids:
        out = []
        for pid in dict.fromkeys(pids):
            if pid <= 0:
                raise UsageError(f"invalid pid {pid}", "pids are positive integers; see 'ps'")
            try:
                out.append(_target(psutil.Process(pid)))
            except psutil.NoSuchProcess:
                raise ProcessGoneError(
                    f"no process with pid {pid}", "check the pid with 'ps -p PID'"
                ) from None
            except psutil.AccessDenied:
                # Still a target: the snapshot records what it could not read.
                out.append(Target(pid, "?", 0.0, True))
        return out
    regex = None
    if match is not None:
        try:
            regex = re.compile(match)
        except re.error as exc:
            raise UsageError(
                f"bad --match regex {match!r}: {exc}", "quote the regex for the shell"
            ) from None
    out = []
    for proc in psutil.process_iter():
        if proc.pid in excluded:
            continue
        try:
            if regex is not None:
                cmdline = " ".join(proc.cmdline()) or proc.name()
                if not regex.search(cmdline):
                    continue
                out.append(_target(proc))
            elif is_python_process(proc):
                out.append(_target(proc))
        except psutil.Error:
            continue  # exited or a kernel thread without a cmdline
    if not out:
        what = f"matching {match!r}" if regex is not None else "running Python"
        raise UsageError(
            f"no process {what} was found",
            "list candidates with 'ps -eo pid,args | grep python', then pass --pid PID",
        )
    return sorted(out, key=lambda t: t.pid)
