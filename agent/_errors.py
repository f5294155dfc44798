"""Error hierarchy and exit codes.

Every error a user can cause is a HostprofError: the CLI prints ``hostprof: error: <message>``
and, on the next line, ``hint: <hint>`` and exits with the error's code. Tracebacks appear only
with ``--debug``.

Exit codes (documented in the README):
    0  success
    1  internal error (a bug: rerun with --debug and report it)
    2  usage error (bad arguments, bad config, unreadable input file)
    3  target error (no such process, not Python, exited, unsupported version)
    4  permission error (needs root, CAP_SYS_PTRACE, CAP_BPF/CAP_PERFMON)
    5  missing dependency (bcc, go, chromium...)
    6  partial result (some targets could not be read; the rest was written)
    7  I/O error (disk full, store unreachable and no spool)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_PERMISSION = 4
EXIT_DEPENDENCY = 5
EXIT_PARTIAL = 6
EXIT_IO = 7


class HostprofError(Exception):
    """An error with a one-line message and a hint saying what to do."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(HostprofError):
    """Bad arguments, configuration or input files."""

    exit_code = EXIT_USAGE


class TargetError(HostprofError):
    """The target process cannot be profiled (gone, not Python, unsupported)."""

    exit_code = EXIT_TARGET


class ProcessGoneError(TargetError):
    """The target process does not exist or exited."""


class UnsupportedPythonError(TargetError):
    """The target's interpreter version or build is not supported."""


class PermissionDeniedError(HostprofError):
    """Missing privileges (ptrace, BPF, perf)."""

    exit_code = EXIT_PERMISSION


class DependencyError(HostprofError):
    """A system dependency is missing."""

    exit_code = EXIT_DEPENDENCY


class PartialResultError(HostprofError):
    """Some targets failed; what could be collected was written."""

    exit_code = EXIT_PARTIAL


class StorageError(HostprofError):
    """Writing output failed (disk full, permissions, store unreachable)."""

    exit_code = EXIT_IO


class FormatError(UsageError):
    """Input data is malformed (bad folded line, bad protobuf)."""
