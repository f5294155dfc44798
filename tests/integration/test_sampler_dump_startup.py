"""``hostprof dump`` stays light: a one-shot command must not import numpy or argparse.

Start-up is most of what ``dump`` costs (reading the stacks takes a few ms; importing numpy
alone takes ~100 ms), so these tests pin what the command loads, against a real target:
``HOSTPROF_DEBUG_IMPORTS`` makes it write ``sys.modules`` at the end, and ``-X importtime``
shows every import the interpreter did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import Target
from utils import spawn

HEAVY = ("numpy", "argparse", "hostprof.native._core", "hostprof.collectors", "rich")

TARGET = """
import threading, time
def parked_worker():
    time.sleep(1000)
threading.Thread(target=parked_worker, name="parked-worker", daemon=True).start()
print("READY", flush=True)
time.sleep(1000)
"""


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = spawn(TARGET)
    try:
        yield t
    finally:
        t.kill()


def _dump(args: list, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=env, check=True
    )


@pytest.mark.parametrize("extra", [[], ["--json"], ["--locals"]])
def test_dump_loads_no_numpy(target: Target, tmp_path: Path, extra: list) -> None:
    listing = tmp_path / "modules.txt"
    # WHEN dump runs the way a user runs it (console entry point: hostprof.cli.main)
    out = _dump(
        [
            "-c",
            "import sys; from hostprof.cli import main; sys.exit(main())",
            "dump",
            "--pid",
            str(target.pid),
            *extra,
        ],
        {"HOSTPROF_DEBUG_IMPORTS": str(listing)},
    )
    # THEN it printed the stacks
    assert "parked_worker" in out.stdout
    if extra == ["--json"]:
        assert json.loads(out.stdout)["pid"] == target.pid
    # AND never loaded numpy, argparse or the sampling loop's and store's machinery
    modules = set(listing.read_text().split())
    assert "hostprof.native._sampler" in modules  # the listing is real
    loaded = {m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY}
    loaded |= {m for m in modules if any(m.startswith(h + ".") for h in HEAVY)}
    assert not loaded, sorted(loaded)


def test_dump_importtime_has_no_numpy(target: Target) -> None:
    # -X importtime lists every module the interpreter imported, in the order it did
    out = _dump(
        ["-X", "importtime", "-m", "hostprof", "dump", "--pid", str(target.pid)],
        {"PYTHONDONTWRITEBYTECODE": "1"},
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()]
    assert "hostprof.native.pyprocess" in imported
    assert not [m for m in imported if m.split(".")[0] in ("numpy", "argparse")]


def test_other_commands_and_help_still_parse(target: Target) -> None:
    # The fast path is only for plain dump command lines; the rest goes through argparse.
    help_out = _dump(["-m", "hostprof", "dump", "--help"], {})
    assert "--locals" in help_out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "hostprof", "dump", "--pid", "abc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
