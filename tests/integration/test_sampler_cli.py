"""`hostprof record` and `hostprof dump` end to end, against real targets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conftest import require_tool
from utils import real_python
from utils import target

HOSTPROF = str(Path(sys.executable).parent / "hostprof")

WORKLOAD = "\n".join(
    [
        "import threading, time, sys",  # 1
        "def hot():",  # 2
        "    x = 0",  # 3
        "    while True:",  # 4
        "        x += 1",  # 5
        "threading.Thread(target=hot, name='hot-thread', daemon=True).start()",  # 6
        "print('READY', flush=True)",  # 7
        "time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 60)",  # 8
    ]
)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([HOSTPROF, *args], capture_output=True, text=True, timeout=timeout)


def test_record_pprof_is_valid_for_go_pprof(tmp_path: Path) -> None:
    go = require_tool("go")
    out = tmp_path / "p.pprof"
    with target(WORKLOAD) as t:
        proc = run("record", "--pid", str(t.pid), "-d", "1", "-r", "200", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "samples in" in proc.stderr and "sampling efficiency" in proc.stderr
    top = subprocess.run(
        [go, "tool", "pprof", "-top", "-sample_index=samples", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert top.returncode == 0, top.stderr
    lines = [ln for ln in top.stdout.splitlines() if ln.strip().endswith(" hot")]
    assert lines, top.stdout
    # hot is the only running code: nearly all (non-idle) samples are its own.
    assert float(lines[0].split()[1].rstrip("%")) > 90, top.stdout


def test_record_folded_with_threads(tmp_path: Path) -> None:
    out = tmp_path / "p.folded"
    with target(WORKLOAD) as t:
        proc = run("record", "--pid", str(t.pid), "-d", "1", "--threads", "--idle", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    stacks = {}
    for line in out.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        stacks[stack] = int(count)
    hot = [s for s in stacks if s.startswith("<thread hot-thread (")]
    main = [s for s in stacks if s.startswith("<thread MainThread (")]
    assert hot and main, list(stacks)
    assert any(s.endswith("hot (<string>:4)") or s.endswith("hot (<string>:5)") for s in hot)
    assert any(s.endswith("<module> (<string>:8)") for s in main)


def test_record_target_exits_midway(tmp_path: Path) -> None:
    out = tmp_path / "p.folded"
    with target(WORKLOAD, args=["3.0"]) as t:
        start = time.monotonic()
        proc = run("record", "--pid", str(t.pid), "-d", "30", "-o", str(out))
        took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert took < 10
    assert f"process {t.pid} exited" in proc.stderr and "wrote what was collected" in proc.stderr
    assert "hot (<string>" in out.read_text()


def test_record_ctrl_c_writes_profile(tmp_path: Path) -> None:
    out = tmp_path / "p.speedscope.json"
    with target(WORKLOAD) as t:
        rec = subprocess.Popen(
            [HOSTPROF, "record", "--pid", str(t.pid), "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert rec.stderr is not None
        first = rec.stderr.readline()  # "recording ...": the session is running
        assert "recording" in first, first
        time.sleep(1.0)
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "interrupted" in err
    doc = json.loads(out.read_text())
    assert "hot" in {f["name"] for f in doc["shared"]["frames"]}


def test_record_launches_a_program(tmp_path: Path) -> None:
    out = tmp_path / "p.folded"
    script = "\n".join(
        [
            "import time",
            "def spin():",
            "    t = time.time() + 3",
            "    while time.time() < t:",
            "        pass",
            "spin()",
        ]
    )
    proc = run(
        "record", "-r", "200", "-o", str(out), "--", real_python(sys.executable), "-c", script
    )
    assert proc.returncode == 0, proc.stderr
    assert "exited" in proc.stderr
    text = out.read_text()
    assert "spin (<string>:" in text
    total = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines())
    assert total >= 20


def test_dump_json_and_text() -> None:
    with target(WORKLOAD) as t:
        time.sleep(0.1)
        proc = run("dump", "--pid", str(t.pid), "--json")
        text = run("dump", "--pid", str(t.pid))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["pid"] == t.pid and doc["python"].startswith("3.11")
    threads = {th["name"]: th for th in doc["threads"]}
    assert set(threads) == {"MainThread", "hot-thread"}
    hot = threads["hot-thread"]
    assert hot["frames"][-1]["function"] == "hot" and hot["frames"][-1]["line"] in (4, 5)
    assert hot["holds_gil"] and not hot["in_gc"]
    main = threads["MainThread"]
    assert main["tid"] == t.pid and main["os_state"] == "sleeping" and not main["holds_gil"]
    assert main["frames"] == [{"function": "<module>", "file": "<string>", "line": 8}]
    assert text.returncode == 0
    assert "Thread" in text.stdout and "'hot-thread'" in text.stdout
    assert "holds the GIL" in text.stdout


def test_dump_locals_cli() -> None:
    with target(WORKLOAD) as t:
        time.sleep(0.1)
        text = run("dump", "--pid", str(t.pid), "--locals")
        doc = json.loads(run("dump", "--pid", str(t.pid), "--locals", "--json").stdout)
    assert text.returncode == 0, text.stderr
    assert "        x = " in text.stdout  # hot()'s counter, under its frame
    hot = next(th for th in doc["threads"] if th["name"] == "hot-thread")
    assert int(hot["frames"][-1]["locals"]["x"]) >= 0


def test_record_follows_python_subprocesses(tmp_path: Path) -> None:
    """--subprocesses also samples Python children started after recording began."""
    out = tmp_path / "p.folded"
    child = "\n".join(["def child_work():", "    while True:", "        pass", "child_work()"])
    parent = "\n".join(
        [
            "import subprocess, sys, time",
            "print('READY', flush=True)",
            "time.sleep(1.0)",
            f"p = subprocess.Popen([sys.executable, '-c', {child!r}])",
            "time.sleep(60)",
        ]
    )
    with target(parent) as t:
        proc = run("record", "--pid", str(t.pid), "-d", "6", "--subprocesses", "-o", str(out))
        for c in __import__("psutil").Process(t.pid).children():
            c.kill()
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "child_work (<string>:" in text, text
