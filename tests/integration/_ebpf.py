"""Helpers for the eBPF integration tests: targets driven over stdin, stack queries."""

from __future__ import annotations

import contextlib
import json
import subprocess
import textwrap
import time
from typing import Any
from typing import Dict
from typing import Iterator
from typing import List
from typing import Tuple

from hostprof.collectors._batch import RawBatch
from hostprof.model import Frame

PYENV_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
DEBIAN_PYTHON = "/usr/bin/python3.11"


class Driven:
    """A target that prints READY, then runs its workload when sent a line, prints one
    RESULT line, and waits for another line before exiting."""

    def __init__(self, source: str, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-u", "-c", textwrap.dedent(source)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            raise RuntimeError(f"target did not start: {line!r} {err[-1500:]}")

    def go(self) -> None:
        """Starts the workload."""
        self.proc.stdin.write("go\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def result(self) -> str:
        """Waits for the RESULT line and returns its payload."""
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("RESULT"):
            raise RuntimeError(f"target failed: {line!r} {self.proc.stderr.read()[-1500:]}")  # type: ignore[union-attr]
        return line[len("RESULT") :].strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                s.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def driven(source: str, python: str = PYENV_PYTHON) -> Iterator[Driven]:
    t = Driven(source, python)
    try:
        yield t
    finally:
        t.kill()


def traced_run(source: str, collector: Any) -> Tuple[Dict[str, Any], RawBatch, Any]:
    """Makes a collector with ``collector([target pid])``, lets the target run once, and
    returns the target's RESULT, the collector's one drain after it, and the (stopped)
    collector for its stats."""
    with driven(source) as t:
        c = collector([t.pid])
        c.start()
        try:
            t.go()
            truth = json.loads(t.result())
            return truth, c.drain(), c
        finally:
            c.stop()


def rows(batch: RawBatch) -> Iterator[Tuple[List[Frame], Tuple[int, ...], int, int]]:
    """(frames root first, values, pid, tid) per row."""
    offs = batch.stack_offsets.tolist()
    sf = batch.stack_frames.tolist()
    vals = batch.values.tolist()
    for i in range(len(batch)):
        yield (
            [batch.frames[j] for j in sf[offs[i] : offs[i + 1]]],
            tuple(vals[i]),
            int(batch.pid[i]),
            int(batch.tid[i]),
        )


def concat(batches: List[RawBatch]) -> List[Tuple[List[Frame], Tuple[int, ...], int, int]]:
    out = []
    for b in batches:
        out.extend(rows(b))
    return out


def python_functions(frames: List[Frame]) -> List[str]:
    from hostprof.model import FrameKind

    return [f.function for f in frames if f.kind == FrameKind.PYTHON]


def poll_until_ready(
    target: Driven, collectors: list, limit: float = 60.0, every: float = 0.25
) -> Dict[str, List[RawBatch]]:
    """Drains every collector every ``every`` seconds until the target has printed a line
    (its RESULT) or ``limit`` seconds pass; batches by collector name."""
    import select

    out: Dict[str, List[RawBatch]] = {c.name: [] for c in collectors}
    end = time.monotonic() + limit
    stdout = target.proc.stdout
    while time.monotonic() < end:
        ready, _, _ = select.select([stdout], [], [], every)
        for c in collectors:
            out[c.name].append(c.drain())
        if ready:
            break
    return out


def poll(collectors: list, seconds: float, every: float = 0.25) -> Dict[str, List[RawBatch]]:
    """Drains every collector every ``every`` seconds for ``seconds``; batches by name."""
    out: Dict[str, List[RawBatch]] = {c.name: [] for c in collectors}
    end = time.monotonic() + seconds
    while True:
        time.sleep(min(every, max(0.0, end - time.monotonic())))
        for c in collectors:
            out[c.name].append(c.drain())
        if time.monotonic() >= end:
            return out
