"""The `hostprof dump` subcommand (being built: see the open issues)."""

from __future__ import annotations

import argparse

from hostprof._errors import UsageError
from hostprof.cli._common import Command


class DumpCommand(Command):
    """hostprof dump (not available yet in this build)."""

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        raise UsageError("'hostprof dump' is not available in this build yet")
