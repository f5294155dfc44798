"""The `hostprof snapshot` subcommand: one archive about a sick host's Python processes."""

from __future__ import annotations

import argparse
import os
import sys
import time

from hostprof._errors import EXIT_OK
from hostprof._errors import EXIT_PARTIAL
from hostprof._errors import UsageError
from hostprof.cli._common import Command
from hostprof.cli._common import positive_float

BUDGET_SLACK = 3.0
"""The whole command should take at most --profile-seconds + this (issue 7)."""

WRITE_RESERVE = 0.8
"""Seconds kept for findings, reports and the archive after the last collector stops."""


def _deadline(profile_seconds: float) -> float:
    """CLOCK_MONOTONIC time the eBPF collectors must stop by, counted from this process's start
    (interpreter start-up and imports are part of what the responder waits for)."""
    try:
        import psutil

        started_ago = max(0.0, time.time() - psutil.Process().create_time())
    except Exception:
        started_ago = 0.0
    return time.monotonic() - started_ago + profile_seconds + BUDGET_SLACK - WRITE_RESERVE


class SnapshotCommand(Command):
    """Everything about a sick host's Python processes, in one archive.

    Takes two all-thread stack dumps of every target 1 s apart (a hang shows as an unchanged
    stack), a short profile of all targets at once (Python stacks always; CPU, off-CPU and
    syscalls where eBPF is available), process facts (command line and environment with secrets
    redacted, memory, files, sockets, children, container) and host facts (load, memory, pressure,
    top processes), and writes summary.md, report.html, snapshot.json, stacks.txt and the profiles
    (pprof + HTML flamegraph) into one .tar.gz. Targets are never paused.

    examples:
      hostprof snapshot                               every Python process on the host
      hostprof snapshot --pid 1234 --pid 5678         two processes
      hostprof snapshot --match 'gunicorn|celery'     processes whose command line matches
      hostprof snapshot --all-python --locals -o incident.tar.gz
      hostprof snapshot --profile-seconds 10 --push http://127.0.0.1:4040
      hostprof snapshot show incident.tar.gz          print the summary of an archive

    exit codes: 0 complete; 6 written but partial (a target exited, denied access or runs an
    unsupported Python; a collector failed): the summary says what is missing.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Adds the snapshot options."""
        parser.add_argument(
            "words",
            nargs="*",
            metavar="show FILE",
            help="'show FILE.tar.gz' prints an archive's summary instead of taking a snapshot",
        )
        sel = parser.add_argument_group("targets (default: every Python process)")
        sel.add_argument(
            "-p",
            "--pid",
            type=int,
            action="append",
            metavar="PID",
            help="a target process id (repeat for several)",
        )
        sel.add_argument(
            "--match", metavar="REGEX", help="every process whose command line matches REGEX"
        )
        sel.add_argument("--all-python", action="store_true", help="every Python process")
        parser.add_argument(
            "--profile-seconds",
            type=positive_float,
            default=5.0,
            metavar="S",
            help="length of the profile window (default: 5)",
        )
        parser.add_argument(
            "--rate",
            type=int,
            default=100,
            metavar="HZ",
            help="Python sampling rate per target (default: 100; lowered "
            "automatically for many targets)",
        )
        parser.add_argument(
            "--locals",
            action="store_true",
            help="also read every frame's local variables in the second dump (summarised from "
            "memory, never executed; capped at 200 characters; secret names redacted)",
        )
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE.tar.gz",
            help="archive path (default: hostprof-snapshot-HOST-TIME.tar.gz)",
        )
        parser.add_argument(
            "--push",
            metavar="URL",
            help="also push the profiles to a store (connect push), e.g. http://127.0.0.1:4040",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        """Takes a snapshot, or shows one."""
        if args.words:
            return self._show(args.words)
        return self._take(args)

    @staticmethod
    def _show(words: list) -> int:
        if words[0] != "show" or len(words) != 2:
            raise UsageError(
                f"unexpected arguments: {' '.join(words)}",
                "use 'hostprof snapshot show FILE.tar.gz', or options only to take a snapshot",
            )
        from hostprof.snapshot.archive import read_member

        text = read_member(words[1], "summary.md").decode("utf-8", errors="replace")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return EXIT_OK

    @staticmethod
    def _take(args: argparse.Namespace) -> int:
        from hostprof.snapshot.archive import default_path
        from hostprof.snapshot.archive import write_archive
        from hostprof.snapshot.take import Options
        from hostprof.snapshot.take import take_snapshot
        from hostprof.snapshot.targets import select_targets

        if args.rate <= 0:
            raise UsageError(f"--rate must be positive, got {args.rate}", "try --rate 100")
        if args.output and not args.output.endswith((".tar.gz", ".tgz")):
            raise UsageError(
                f"--output {args.output!r} must end in .tar.gz", "e.g. -o incident.tar.gz"
            )

        def say(msg: str) -> None:
            if not args.quiet:
                print(f"hostprof: {msg}", file=sys.stderr, flush=True)

        if os.geteuid() != 0:
            say(
                "not running as root: other users' processes, locals and eBPF profiles will be "
                "missing (run with sudo for a complete snapshot)"
            )
        targets = select_targets(args.pid, args.match, args.all_python)
        say(
            f"snapshot of {len(targets)} process(es): "
            + ", ".join(str(t.pid) for t in targets[:20])
            + (" …" if len(targets) > 20 else "")
        )
        options = Options(
            profile_seconds=args.profile_seconds,
            with_locals=args.locals,
            rate=args.rate,
            deadline=_deadline(args.profile_seconds),
        )
        snap = take_snapshot(targets, options, progress=say)
        path, size = write_archive(snap, args.output or default_path(snap))
        pushed_error = None
        if args.push:
            from hostprof._errors import HostprofError
            from hostprof.snapshot.push import push

            try:
                n = push(snap, args.push)
                say(f"pushed {n} series to {args.push}")
            except HostprofError as exc:
                pushed_error = exc
        print(path)
        say(
            f"wrote {path} ({size / 1024:.0f} KiB) in {snap.elapsed_s:.1f} s; "
            f"read it with 'hostprof snapshot show {path}'"
        )
        if pushed_error is not None:
            raise pushed_error
        if snap.partial:
            for line in snap.partial_reasons():
                print(f"hostprof: partial: {line}", file=sys.stderr)
            return EXIT_PARTIAL
        return EXIT_OK
