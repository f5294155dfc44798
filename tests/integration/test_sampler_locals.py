"""`dump --locals`: each frame's local variables, summarised, on every interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "native"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _pythons import sampler_pythons
from utils import target

from hostprof.native.pyprocess import attach

SOURCE = "\n".join(
    [
        "import threading, time",
        "def work(n, label, ratio=0.5, items=None):",
        "    total = n * 2",
        "    name = label.upper()",
        "    data = b'\\x00\\x01abc'",
        "    nothing = None",
        "    flag = True",
        "    big = 10 ** 30",
        "    def inner():",
        "        return total",
        "    time.sleep(100)",
        "threading.Thread(target=work, args=(21, 'worker'), kwargs={'items': [1, 2, 3]},",
        "                 daemon=True).start()",
        "time.sleep(0.3)",
        "print('READY', flush=True)",
        "time.sleep(100)",
    ]
)

PYTHONS = sampler_pythons()


@pytest.mark.parametrize("name", sorted(PYTHONS))
def test_dump_locals(name: str) -> None:
    with target(SOURCE, PYTHONS[name]) as t:
        proc = attach(t.pid)
        try:
            stacks = proc.stacks(locals=True)
        finally:
            proc.close()
    worker = next(s for s in stacks if s.frames and s.frames[-1].function == "work")
    assert worker.locals is not None
    assert len(worker.locals) == len(worker.frames)
    got = worker.locals[-1]
    assert got["n"] == "21"
    assert got["label"] == "'worker'"
    assert got["ratio"] == "0.5"
    assert got["items"] == "<list of 3>"
    assert got["name"] == "'WORKER'"
    assert got["data"] == repr(b"\x00\x01abc")
    assert got["nothing"] == "None"
    assert got["flag"] == "True"
    assert got["big"] == str(10**30)
    assert got["total"] == "42"  # a cell (captured by inner): its contents are shown
    assert got["inner"].startswith("<function object at 0x")
    assert worker.locals[-2]["self"].startswith("<Thread object at 0x")
