"""The `hostprof snapshot` subcommand (being built: see the open issues)."""

from __future__ import annotations

import argparse

from hostprof._errors import UsageError
from hostprof.cli._common import Command


class SnapshotCommand(Command):
    """hostprof snapshot (not available yet in this build)."""

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        raise UsageError("'hostprof snapshot' is not available in this build yet")
