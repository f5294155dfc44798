"""The `hostprof top` subcommand (being built: see the open issues)."""

from __future__ import annotations

import argparse

from hostprof._errors import UsageError
from hostprof.cli._common import Command


class TopCommand(Command):
    """hostprof top (not available yet in this build)."""

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        raise UsageError("'hostprof top' is not available in this build yet")
