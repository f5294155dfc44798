"""Target selection for ``hostprof snapshot`` against real processes, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
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
