"""Helpers for tests that run real target processes.

A target is a Python program given as source text (``python -c``), so it runs the same way
under the host's interpreters and the chroot interpreters (whose file paths resolve inside the
chroot). It signals readiness by printing ``READY`` on stdout once its threads are set up; the
test blocks on that line instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict
from typing import Iterator
from typing import List
from typing import Optional

PYTHONS_DIR = Path(os.environ.get("HOSTPROF_PYTHONS", "/var/cache/hostprof/pythons"))

# Interpreters the tests run targets under, by short name: (path, description).
CANDIDATE_PYTHONS: Dict[str, str] = {
    "3.11-pyenv": sys.executable
    if "pyenv" in os.path.realpath(sys.executable)
    else str(Path.home() / ".pyenv/versions/3.11.7/bin/python3.11"),
    "3.11-debian": "/usr/bin/python3.11",
    "3.9": str(PYTHONS_DIR / "bin/python3.9"),
    "3.13": str(PYTHONS_DIR / "bin/python3.13"),
    "3.14": str(PYTHONS_DIR / "bin/python3.14"),
    "3.15": str(PYTHONS_DIR / "bin/python3.15"),
}


def installed_pythons() -> Dict[str, str]:
    """The candidate interpreters that exist here."""
    return {k: v for k, v in CANDIDATE_PYTHONS.items() if os.path.exists(v)}


def real_python(python: str) -> str:
    """The interpreter binary behind a venv/pyenv shim path (the target must be a real one)."""
    return os.path.realpath(python)


class Target:
    """A running target process; kill() on exit."""

    def __init__(self, proc: subprocess.Popen, ready_line: str) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.ready_line = ready_line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream:
                with contextlib.suppress(Exception):
                    stream.close()


def spawn(
    source: str,
    python: Optional[str] = None,
    args: Optional[List[str]] = None,
    timeout: float = 30.0,
    env: Optional[Dict[str, str]] = None,
) -> Target:
    """Starts ``python -c source`` and waits until it prints a line starting with READY.

    The source is dedented. Raises RuntimeError (with the target's stderr) if it exits or
    times out first.
    """
    exe = python or real_python(sys.executable)
    proc = subprocess.Popen(
        [exe, "-u", "-c", textwrap.dedent(source), *(args or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    line = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            if line.startswith(b"READY"):
                return Target(proc, line.decode().strip())
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
    proc.kill()
    raise RuntimeError(f"target did not get ready (exit {proc.poll()}): {err[-2000:]}")


@contextlib.contextmanager
def target(source: str, python: Optional[str] = None, **kwargs: object) -> Iterator[Target]:
    """Context manager around :func:`spawn` that always kills the target."""
    t = spawn(source, python, **kwargs)  # type: ignore[arg-type]
    try:
        yield t
    finally:
        t.kill()
