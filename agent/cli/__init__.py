"""Command-line entry point: ``hostprof <command> ...``.

Each subcommand lives in its own module as one ``<Name>Command`` class whose docstring is its
help text. The list below is explicit on purpose: importing a module never registers anything.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

from hostprof._errors import EXIT_INTERNAL
from hostprof._errors import EXIT_USAGE
from hostprof._errors import HostprofError
from hostprof.cli._common import Command
from hostprof.cli.agent import AgentCommand
from hostprof.cli.convert import ConvertCommand
from hostprof.cli.dump import DumpCommand
from hostprof.cli.record import RecordCommand
from hostprof.cli.snapshot import SnapshotCommand
from hostprof.cli.store import StoreCommand
from hostprof.cli.top import TopCommand

COMMANDS: List[Tuple[str, Command]] = [
    ("record", RecordCommand()),
    ("top", TopCommand()),
    ("dump", DumpCommand()),
    ("snapshot", SnapshotCommand()),
    ("agent", AgentCommand()),
    ("store", StoreCommand()),
    ("convert", ConvertCommand()),
]

_DESCRIPTION = """\
hostprof: a host-resident profiler for Linux.

Reads Python stacks of live processes from outside (never pausing them), adds native and
kernel stacks from eBPF, and writes flamegraphs or pushes to a Pyroscope-compatible store.

examples:
  hostprof record --pid 1234 -o profile.html       profile a running process for 30 s... or Ctrl-C
  hostprof record -o out.html -- python app.py     launch a program and profile it
  hostprof dump --pid 1234                          every thread's Python stack, now
  hostprof top --pid 1234                           live view of the hottest functions
  hostprof snapshot --all-python -o incident.tar.gz everything about a sick host, one archive
  hostprof store serve                              the embedded profile store and web UI
  hostprof agent run                                continuous profiling daemon
  hostprof convert profile.pprof -o profile.html    convert between output formats
"""

_EPILOG = """\
exit codes: 0 ok, 1 internal error (rerun with --debug), 2 usage, 3 target not profilable,
4 missing privileges, 5 missing dependency, 6 partial result, 7 I/O error.
Run 'hostprof <command> --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    """Builds the full argument parser (pure: no side effects)."""
    parser = argparse.ArgumentParser(
        prog="hostprof",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"hostprof {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, command in COMMANDS:
        doc = inspect.cleandoc(command.__doc__ or "")
        summary = doc.splitlines()[0] if doc else name
        p = sub.add_parser(
            name,
            help=summary,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        command.prepare_parser(p)
        p.set_defaults(_command=command)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parses a command line; for tests."""
    return build_parser().parse_args(list(argv))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hostprof")
    except Exception:
        return "unknown"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "_command", None):
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or os.environ.get("HOSTPROF_DEBUG") == "1"
    try:
        return int(args._command.run(args, parser) or 0)
    except HostprofError as exc:
        if debug:
            traceback.print_exc()
        print(f"hostprof: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"hostprof: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: rerun with --debug for a traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL
