"""Target selection for ``hostprof snapshot`` against real processes, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from hostprof._errors import ProcessGoneError
from hostprof._errors import UsageError
from hostprof.snapshot.targets import select_targets
from tests.utils import target

HOSTPROF = [sys.executable, "-m", "hostprof"]

IDLE = """
import time
print("READY", flush=True)
while True:
    time.sleep(1)
"""


def test_match_selects_by_command_line_and_all_python_finds_python() -> None:
    with target(IDLE, args=["--marker-7c1e"]) as t:
        by_regex = select_targets(match=r"marker-7c1e")
        assert [x.pid for x in by_regex] == [t.pid]
        assert by_regex[0].is_python
        everything = {x.pid for x in select_targets(all_python=True)}
        assert t.pid in everything
        assert os.getpid() not in everything  # never the snapshot itself


def test_selection_errors_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="bad --match regex"):
        select_targets(match="(")
    with pytest.raises(UsageError, match="no process matching"):
        select_targets(match="no-such-process-3f9a1b")
    with pytest.raises(UsageError, match="choose one of"):
        select_targets(pids=[1], all_python=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProcessGoneError):
        select_targets(pids=[gone.pid])


@pytest.mark.skipif(os.geteuid() != 0, reason="reading other processes needs root")
def test_non_python_target_gets_facts_only_and_is_not_partial(tmp_path: Path) -> None:
    # GIVEN a process that is not Python
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "snap.tar.gz"
        res = subprocess.run(
            [
                *HOSTPROF,
                "snapshot",
                "--pid",
                str(sleeper.pid),
                "--profile-seconds",
                "1",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    # THEN it is recorded with its facts, and the snapshot is complete
    assert res.returncode == 0, res.stderr
    with tarfile.open(out) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/snapshot.json"))
        data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    (tgt,) = data["targets"]
    assert tgt["status"] == "not-python"
    assert tgt["facts"]["cmdline"] == ["sleep", "60"]
    assert tgt["facts"]["memory"]["rss"] > 0


def test_cli_bad_input_is_one_line() -> None:
    for args, needle in (
        (["--pid", "999999999"], "no process with pid"),
        (["--pid", "1", "-o", "x.zip"], "must end in .tar.gz"),
        (["show"], "unexpected arguments"),
        (["show", "/nonexistent/x.tar.gz"], "no such file"),
    ):
        res = subprocess.run(
            [*HOSTPROF, "snapshot", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode in (2, 3), (args, res.stderr)
        first = res.stderr.strip().splitlines()[0]
        assert first.startswith("hostprof: error:") and needle in first, (args, res.stderr)
        assert "Traceback" not in res.stderr


DEADLOCK_LITE = """
import threading, time
a = threading.Lock(); b = threading.Lock(); barrier = threading.Barrier(3)
def grab_a_then_b():
    with a:
        barrier.wait()
        with b:
            pass
def grab_b_then_a():
    with b:
        barrier.wait()
        with a:
            pass
threading.Thread(target=grab_a_then_b, daemon=True).start()
threading.Thread(target=grab_b_then_a, daemon=True).start()
barrier.wait()
print("READY", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run targets as two users")
def test_unreadable_process_is_recorded_and_the_rest_go_on(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    real = os.path.realpath(sys.executable)
    probe = subprocess.run(
        [*nobody, sys.executable, "-c", "import hostprof.cli"], capture_output=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run this checkout's Python (its folders are private)")
    # GIVEN a root-owned target and a nobody-owned one, and a snapshot taken as nobody
    root_owned = subprocess.Popen([real, "-u", "-c", IDLE], stdout=subprocess.PIPE)
    own = subprocess.Popen([*nobody, real, "-u", "-c", DEADLOCK_LITE], stdout=subprocess.PIPE)
    # pytest's tmp_path sits under a 0700 folder nobody cannot enter
    shared = Path(tempfile.mkdtemp(prefix="hostprof-snap-"))
    shared.chmod(0o777)
    out = shared / "snap.tar.gz"
    try:
        for p in (root_owned, own):
            assert p.stdout is not None and p.stdout.readline().startswith(b"READY")
        res = subprocess.run(
            [
                *nobody,
                sys.executable,
                "-m",
                "hostprof",
                "snapshot",
                "--pid",
                str(root_owned.pid),
                "--pid",
                str(own.pid),
                "--profile-seconds",
                "1",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        for p in (root_owned, own):
            p.kill()
            p.wait()
    data_dir = tmp_path / "x"
    data_dir.mkdir()
    if out.exists():
        shutil.move(str(out), data_dir / "snap.tar.gz")
    shutil.rmtree(shared, ignore_errors=True)
    out = data_dir / "snap.tar.gz"
    # THEN the archive is written, the exit code says partial, the unreadable target says why
    assert res.returncode == 6, res.stderr
    assert "not running as root" in res.stderr
    with tarfile.open(out) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/snapshot.json"))
        data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    by_pid = {t["pid"]: t for t in data["targets"]}
    denied = by_pid[root_owned.pid]
    assert denied["status"] == "failed"
    assert any("permission" in r for r in denied["reasons"]), denied["reasons"]
    # AND the readable target was fully dumped, its deadlock found
    mine = by_pid[own.pid]
    assert mine["status"] in ("ok", "partial"), mine["reasons"]  # no eBPF as nobody
    assert all(d is not None for d in mine["stacks"]["dumps"])
    suspects = data["findings"]["deadlock_suspects"]
    assert [s["pid"] for s in suspects] == [own.pid]
