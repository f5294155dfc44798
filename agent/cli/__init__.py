"""Command-line entry point: ``hostprof <command> ...``.

Each subcommand lives in its own module as one ``<Name>Command`` class whose docstring is its
help text. The list below is explicit on purpose: importing a module never registers anything.

Start-up time matters for one-shot commands (``hostprof dump`` is what an incident responder
types while a process misbehaves), so this module imports argparse, inspect and traceback only
when it needs them, and a command may take a plain command line without argparse at all
(:meth:`Command.parse_fast`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING
from typing import List
from typing import Optional
from typing import Sequence
from typing import Tuple

from hostprof._errors import EXIT_INTERNAL
from hostprof._errors import EXIT_USAGE
from hostprof._errors import HostprofError
from hostprof.cli._common import Command

if TYPE_CHECKING:
    import argparse

COMMANDS: List[Tuple[str, str]] = [
    ("record", "hostprof.cli.record:RecordCommand"),
    ("top", "hostprof.cli.top:TopCommand"),
    ("dump", "hostprof.cli.dump:DumpCommand"),
    ("snapshot", "hostprof.cli.snapshot:SnapshotCommand"),
    ("agent", "hostprof.cli.agent:AgentCommand"),
    ("store", "hostprof.cli.store:StoreCommand"),
    ("convert", "hostprof.cli.convert:ConvertCommand"),
]
"""(subcommand, "module:Class"). Only the command being run is imported: ``hostprof dump``
must not pay for the store's web server or bcc, and an incident responder waits on it."""

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


def load_command(name: str) -> Command:
    """Imports and instantiates one subcommand."""
    target = dict(COMMANDS)[name]
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()


def _wanted_command(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named on a command line, if any (the first non-option word)."""
    names = dict(COMMANDS)
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in names else None
    return None


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """Builds the argument parser (pure: no side effects).

    Args:
        only: build just this subcommand's parser (the others are listed without importing
            them); None builds every subcommand, as top-level --help needs their summaries.
    """
    import argparse
    import inspect

    class _VersionAction(argparse.Action):
        """``--version``, looked up only when asked for (importlib.metadata is slow)."""

        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
            super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

        def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
            print(f"hostprof {_version()}")
            parser.exit()

    parser = argparse.ArgumentParser(
        prog="hostprof",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, _target in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, add_help=False)
            continue
        command = load_command(name)
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
    return build_parser(_wanted_command(argv)).parse_args(list(argv))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hostprof")
    except Exception:
        return "unknown"


def _fast_path(argv: Sequence[str]) -> Optional[Tuple[Command, object]]:
    """(command, args) when the command line is one a command parses without argparse."""
    if not argv or argv[0] not in dict(COMMANDS):
        return None
    command = load_command(argv[0])
    args = command.parse_fast(argv[1:])
    return None if args is None else (command, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    fast = _fast_path(argv)
    parser: Optional[argparse.ArgumentParser] = None
    if fast is not None:
        command, args = fast
    else:
        parser = build_parser(_wanted_command(argv))
        args = parser.parse_args(argv)
        command = getattr(args, "_command", None)
        if not command:
            parser.print_help()
            return EXIT_USAGE
    debug = getattr(args, "debug", False) or os.environ.get("HOSTPROF_DEBUG") == "1"
    try:
        return int(command.run(args, parser) or 0)  # type: ignore[arg-type]
    except HostprofError as exc:
        if debug:
            import traceback

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
            import traceback

            traceback.print_exc()
        print(f"hostprof: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: rerun with --debug for a traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL
