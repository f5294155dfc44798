"""The py-spy fallback of the snapshot (used when hostprof's reader cannot read a target)."""

from __future__ import annotations

import os
import time

import pytest

from hostprof._errors import ProcessGoneError
from hostprof.model import SAMPLES
from hostprof.model import Profile
from hostprof.snapshot.profiling import _PySpyRun
from hostprof.snapshot.profiling import parse_pyspy_raw
from hostprof.snapshot.readers import find_pyspy
from hostprof.snapshot.readers import pyspy_dump
from tests.utils import target

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="reading other processes needs root"),
    pytest.mark.skipif(find_pyspy() is None, reason="py-spy is not installed"),
]

SPIN_AND_WAIT = """
import threading, time
def spin_here():
    x = 0
    while True:
        x += 1
def wait_here(token="abc"):
    threading.Event().wait()
threading.Thread(target=spin_here, name="spinner", daemon=True).start()
threading.Thread(target=wait_here, name="waiter", daemon=True).start()
print("READY", flush=True)
while True:
    time.sleep(1)
"""


def test_pyspy_dump_gives_names_gil_and_capped_locals() -> None:
    with target(SPIN_AND_WAIT) as t:
        dump = pyspy_dump(t.pid, with_locals=True)
    by_name = {th.name: th for th in dump.threads}
    assert {"spinner", "waiter", "MainThread"} <= set(by_name)
    assert by_name["spinner"].frames[-1].function == "spin_here"  # root first, leaf last
    assert by_name["waiter"].in_gc is None  # py-spy cannot tell
    waiter_frame = next(f for f in by_name["waiter"].frames if f.function == "wait_here")
    assert waiter_frame.locals is not None and "token" in waiter_frame.locals
    assert dump.source == "py-spy"


def test_pyspy_dump_of_an_exited_process_says_so() -> None:
    with target(SPIN_AND_WAIT) as t:
        pid = t.pid
    with pytest.raises(ProcessGoneError):
        pyspy_dump(pid, with_locals=False)


def test_pyspy_record_fallback_profiles_threads() -> None:
    exe = find_pyspy()
    assert exe
    with target(SPIN_AND_WAIT) as t:
        run = _PySpyRun(exe, [t.pid], rate=50)
        run.start()
        time.sleep(1.5)
        run.finish()
    assert not run.errors
    rows = run.profile.to_dict()
    spinner = [
        (frames, dict(labels)) for (frames, labels) in rows if frames[-1].function == "spin_here"
    ]
    assert spinner and spinner[0][1]["thread_name"] == "spinner"
    assert spinner[0][1]["pid"] == str(t.pid)


def test_parse_pyspy_raw() -> None:
    p = Profile([SAMPLES])
    text = (
        "thread (16): worker;run (/a/b.py:3);work (/a/b.py:9) 7\n"
        "thread (17);main (/a/c.py:1) 2\n"
        "garbage line\n"
    )
    assert parse_pyspy_raw(42, text, p) == 9
    d = {
        frames[-1].function: (frames, dict(labels), v)
        for (frames, labels), v in p.to_dict().items()
    }
    assert d["work"][0][-1].file == "/a/b.py" and d["work"][0][-1].line == 9
    assert d["work"][2] == (7,)
    assert d["work"][1]["thread_name"] == "worker"
    assert d["work"][1]["thread_id"] == "16"
    assert d["main"][1]["pid"] == "42"
