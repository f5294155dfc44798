"""The `hostprof dump` subcommand: every thread's Python stack of a live process, now.

It is run by hand while something misbehaves, so its start-up is kept short: the usual
command lines are parsed without argparse (:meth:`DumpCommand.parse_fast`), and nothing here
imports numpy, json (unless ``--json``) or the sampling loop's machinery. ``HOSTPROF_DEBUG_IMPORTS``
set to a file name makes the command write the modules it loaded there, one per line (the
tests check that numpy is not among them).
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING
from typing import Any
from typing import Dict
from typing import List
from typing import Optional
from typing import Sequence

from hostprof.cli._common import Command
from hostprof.cli._common import add_pid_option
from hostprof.cli._common import check_pid
from hostprof.native.pyprocess import attach

if TYPE_CHECKING:
    import argparse

    from hostprof.model import Frame
    from hostprof.native.pyprocess import PyProcess
    from hostprof.native.pyprocess import ThreadStack

_FLAGS = {"--json": "json", "--locals": "locals", "--debug": "debug"}


class DumpCommand(Command):
    """Print every thread's Python stack of a running process, without pausing it.

    For each thread: OS thread id and name, whether it holds the GIL, whether it is running
    the cyclic garbage collector, and its OS state (running, sleeping, disk wait). Frames are
    printed innermost last, like a Python traceback.

    examples:
      hostprof dump --pid 1234              human-readable stacks
      hostprof dump --pid 1234 --json       machine-readable (one JSON object)
      hostprof dump --pid 1234 --locals     with each frame's local variables
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_pid_option(parser, required=True)
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")
        parser.add_argument(
            "--locals",
            action="store_true",
            help="also show each frame's local variables (summarised, never executed)",
        )

    def parse_fast(self, argv: Sequence[str]) -> Optional[SimpleNamespace]:
        """``--pid N`` / ``-p N`` / ``--pid=N`` with ``--json``, ``--locals``, ``--debug``;
        anything else goes to argparse (help, errors, abbreviations)."""
        args = SimpleNamespace(pid=None, json=False, locals=False, debug=False)
        words = list(argv)
        while words:
            word = words.pop(0)
            if word in _FLAGS:
                setattr(args, _FLAGS[word], True)
                continue
            if word in ("-p", "--pid") and words:
                value = words.pop(0)
            elif word.startswith("--pid="):
                value = word[len("--pid=") :]
            else:
                return None
            if not value.isdigit() or args.pid is not None:
                return None
            args.pid = int(value)
        return args if args.pid is not None else None

    def run(self, args: argparse.Namespace, parser: Optional[argparse.ArgumentParser]) -> int:
        pid = check_pid(args.pid)
        proc = attach(pid)
        try:
            stacks = proc.stacks(locals=args.locals)
            if args.json:
                import json

                json.dump(to_json(proc, stacks), sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                sys.stdout.write(to_text(proc, stacks, args.locals))
        finally:
            proc.close()
            _write_loaded_modules()
        return 0


def to_json(proc: PyProcess, stacks: List[ThreadStack]) -> Dict[str, Any]:
    """The dump as a JSON-able dict (frames innermost last). ``tid`` is the host's thread id
    (as /proc, ps and eBPF tools show it), ``ns_tid`` the target's own (its PID namespace's:
    they differ in containers)."""
    return {
        "pid": proc.pid,
        "python": proc.version,
        "threads": [
            {
                "tid": s.tid,
                "ns_tid": s.ns_tid,
                "thread_id": s.thread_id,
                "name": s.name,
                "holds_gil": s.holds_gil,
                "in_gc": s.in_gc,
                "os_state": s.os_state,
                "frames": [
                    _frame_json(f, s.locals[i] if s.locals else None)
                    for i, f in enumerate(s.frames)
                ],
            }
            for s in stacks
        ],
    }


def _frame_json(f: Frame, local_vars: Optional[Dict[str, str]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"function": f.function, "file": f.file, "line": f.line}
    if local_vars is not None:
        out["locals"] = local_vars
    return out


def to_text(proc: PyProcess, stacks: List[ThreadStack], show_locals: bool = False) -> str:
    """The dump as traceback-like text."""
    lines = [f"Process {proc.pid}: Python {proc.version} ({proc.binary})"]
    for s in stacks:
        marks = [s.os_state]
        if s.holds_gil:
            marks.append("holds the GIL")
        if s.in_gc:
            marks.append("in GC")
        lines.append("")
        ns = f" (tid {s.ns_tid} in its PID namespace)" if s.ns_tid and s.ns_tid != s.tid else ""
        lines.append(f"Thread {s.tid}{ns} {s.name!r} ({', '.join(marks)})")
        if not s.frames:
            lines.append("    (no Python frames)")
        for i, f in enumerate(s.frames):
            if f.file:
                lines.append(f"    {f.function} ({f.file}:{f.line})")
            else:
                lines.append(f"    {f.function}")
            if s.locals is not None:
                for name, value in s.locals[i].items():
                    lines.append(f"        {name} = {value}")
        if show_locals and s.frames and s.locals is None:
            lines.append("    (locals unavailable: the stack moved while being read)")
    return "\n".join(lines) + "\n"


def _write_loaded_modules() -> None:
    """With ``HOSTPROF_DEBUG_IMPORTS=FILE``, writes the names of the loaded modules to FILE
    (a debugging aid for start-up time, and how the tests see what dump imported)."""
    path = os.environ.get("HOSTPROF_DEBUG_IMPORTS")
    if path:
        with open(path, "w") as f:
            f.write("\n".join(sorted(sys.modules)) + "\n")
