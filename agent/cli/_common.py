"""Shared pieces of the subcommands: the Command protocol and common options.

argparse is imported only by the functions that build parsers: a command that parses its
command line with :meth:`Command.parse_fast` never loads it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from typing import Any
from typing import Optional
from typing import Sequence

from hostprof._errors import ProcessGoneError
from hostprof._errors import UsageError

if TYPE_CHECKING:
    import argparse


class Command:
    """One subcommand. The class docstring is its help text."""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        """Adds this command's options."""

    def parse_fast(self, argv: Sequence[str]) -> Optional[Any]:
        """Parses a plain command line without argparse, or returns None to use argparse.

        For commands where start-up time is the point (``dump``). The result must carry the
        same attributes argparse would set (``debug`` included); anything unusual (``--help``,
        a malformed value, an unknown option) must return None, so argparse reports it.
        """
        return None

    def run(self, args: argparse.Namespace, parser: Optional[argparse.ArgumentParser]) -> int:
        """Runs the command; returns the exit code. Raises HostprofError on user errors.

        ``parser`` is None when the command line came through :meth:`parse_fast`.
        """
        raise NotImplementedError


def add_pid_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Adds ``--pid PID``."""
    parser.add_argument(
        "-p", "--pid", type=int, required=required, metavar="PID", help="target process id"
    )


def check_pid(pid: Optional[int]) -> int:
    """Checks that ``pid`` names a live process; returns it."""
    if pid is None:
        raise UsageError("no target given", "pass --pid PID, or a command after '--'")
    if pid <= 0:
        raise UsageError(f"invalid pid {pid}", "pids are positive integers; see 'ps' or 'pgrep'")
    if not os.path.exists(f"/proc/{pid}"):
        raise ProcessGoneError(f"no process with pid {pid}", "check the pid with 'ps -p PID'")
    return pid


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value
