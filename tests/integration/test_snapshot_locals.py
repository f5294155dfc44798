"""`hostprof snapshot --locals` reads locals with hostprof's own core, with py-spy out of reach.

The CLI runs under an interpreter whose environment has no py-spy anywhere (not on PATH, not
beside the interpreter), so the locals in the archive can only come from the sampling core.
Targets run on pyenv 3.11 and on chroot interpreters (3.13, 3.14: tagged stack references,
3.13t: free-threaded).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any
from typing import Dict
from typing import List

import pytest

from hostprof.snapshot.readers import core_dump_fn
from tests.utils import PYTHONS_DIR
from tests.utils import installed_pythons
from tests.utils import target

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="reading other processes needs root"),
    pytest.mark.skipif(core_dump_fn()[0] is None, reason="hostprof's native core is not built"),
]

TOKEN = "tok-LOCAL-9e8d7c6b5a"
URL_PASSWORD = "urlpw-LOCAL-77aa31"

HOLDS_LOCALS = f"""
import threading, time

def handle_request(n):
    count = 4242
    long_text = "L" * 300 + "-END-OF-LONG-TEXT"
    config = {{"a": 1, "b": 2, "c": 3}}
    api_token = "{TOKEN}"
    header = api_token                      # the secret again, under a harmless name
    dsn = "postgres://app:{URL_PASSWORD}@db.internal:5432/app"
    ready.set()
    while True:
        time.sleep(0.05)

ready = threading.Event()
threading.Thread(target=handle_request, args=(7,), name="handler", daemon=True).start()
ready.wait()
print("READY", flush=True)
while True:
    time.sleep(1)
"""

PYTHONS = {k: v for k, v in installed_pythons().items() if k in ("3.11-pyenv", "3.13", "3.14")}
if (PYTHONS_DIR / "bin/python3.13t").exists():  # free-threaded: no GIL, locals read the same way
    PYTHONS["3.13t"] = str(PYTHONS_DIR / "bin/python3.13t")


@pytest.fixture(scope="module")
def no_pyspy_env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A copy of this venv's layout (interpreter symlink, pyvenv.cfg, lib) without py-spy, and
    a PATH with every directory holding a py-spy removed."""
    venv = Path(sys.prefix)
    root = tmp_path_factory.mktemp("venv-without-py-spy")
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    shutil.copy(venv / "pyvenv.cfg", root / "pyvenv.cfg")
    (root / "lib").symlink_to(venv / "lib")
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not os.path.exists(os.path.join(d, "py-spy"))
    )
    env = {**os.environ, "PATH": path}
    python = str(root / "bin" / "python")
    # The environment really has no py-spy: neither PATH nor the snapshot's own lookup finds it.
    assert shutil.which("py-spy", path=path) is None
    found = subprocess.run(
        [python, "-c", "from hostprof.snapshot.readers import find_pyspy; print(find_pyspy())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None", found.stdout + found.stderr
    return {"python": python, "env": env}


def _snapshot(tmp_path: Path, no_pyspy: Dict[str, Any], pid: int) -> Path:
    out = tmp_path / "snap.tar.gz"
    res = subprocess.run(
        [
            *(no_pyspy["python"], "-m", "hostprof", "snapshot", "--pid", str(pid)),
            *("--profile-seconds", "1", "--locals", "-o", str(out)),
        ],
        env=no_pyspy["env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    with tarfile.open(out, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (top,) = [p for p in (tmp_path / "x").iterdir() if p.is_dir()]
    return top


def _frame_locals(stacks: Dict[str, Any], dump: Dict[str, Any], function: str) -> List[Dict]:
    """The locals of every frame named ``function`` in one dump of snapshot.json."""
    out = []
    for th in dump["threads"]:
        for pos, fid in enumerate(th["stack"]):
            if stacks["frames"][fid]["function"] == function:
                out.append(th.get("locals", {}).get(str(pos)))
    return out


@pytest.mark.parametrize("version", sorted(PYTHONS))
def test_locals_come_from_the_core_capped_and_redacted(
    version: str, tmp_path: Path, no_pyspy_env: Dict[str, Any]
) -> None:
    # GIVEN a process on this interpreter whose handler frame holds known locals
    with target(HOLDS_LOCALS, python=PYTHONS[version]) as t:
        # WHEN a snapshot with locals is taken where no py-spy can be found
        top = _snapshot(tmp_path, no_pyspy_env, t.pid)
    data = json.loads((top / "snapshot.json").read_text())
    stacks = data["targets"][0]["stacks"]
    # THEN both dumps were read by hostprof's core, and the second one has its locals too
    # (the first opens the profile window and stays stacks-only, to be quick)
    assert all(d is not None for d in stacks["dumps"]), stacks["errors"]
    first, second = stacks["dumps"]
    assert first["source"] == second["source"] == "hostprof"
    assert first["locals_source"] is None
    assert _frame_locals(stacks, first, "handle_request") == [None]
    assert second["locals_source"] == "hostprof"
    assert not any("py-spy" in n for n in first["notes"] + second["notes"])
    (loc,) = _frame_locals(stacks, second, "handle_request")
    # AND the int, the dict and the argument are there (the core summarises containers)
    assert loc["n"] == "7"
    assert loc["count"] == "4242"
    assert loc["config"] == "<dict of 3>"
    # AND the long string is cut, within the 200-character cap
    assert len(loc["long_text"]) <= 200
    assert loc["long_text"].startswith("'" + "L" * 60)
    assert "-END-OF-LONG-TEXT" not in loc["long_text"]
    # AND the secret-named local is redacted, the same value under another name too, and
    # the URL keeps everything but its credentials
    assert loc["api_token"] == "<REDACTED>"
    assert loc["header"] == "'<REDACTED>'"
    assert loc["dsn"] == "'postgres://<REDACTED>@db.internal:5432/app'"
    # AND stacks.txt shows them under the frame
    text = (top / "stacks.txt").read_text()
    block = text[text.index("handle_request (") :]
    for line in (
        "count = 4242",
        "config = <dict of 3>",
        "api_token = <REDACTED>",
        "dsn = 'postgres://<REDACTED>@db.internal:5432/app'",
    ):
        assert f"        {line}\n" in block, line
    # AND summary.md says locals were taken
    assert "locals read by hostprof;" in (top / "summary.md").read_text()
    # AND the secrets appear nowhere in the archive, compressed profiles included
    for p in top.rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            assert TOKEN.encode() not in raw, p.name
            assert URL_PASSWORD.encode() not in raw, p.name


def test_locals_stop_at_the_budget_deadline_and_say_so() -> None:
    from hostprof.snapshot.corereader import CoreReader

    # GIVEN a process with locals and the core reader
    with target(HOLDS_LOCALS) as t:
        reader = CoreReader()
        try:
            # WHEN its locals deadline has passed already, and then when it has not
            reader.locals_deadline = time.monotonic() - 1.0
            late = reader(t.pid, True)
            reader.locals_deadline = time.monotonic() + 60.0
            in_time = reader(t.pid, True)
        finally:
            reader.close()
    # THEN the late dump has stacks but no locals, and says why
    handler = [th for th in late.threads if th.name == "handler"]
    assert handler and [f.function for f in handler[0].frames][-1] == "handle_request"
    assert all(f.locals is None for th in late.threads for f in th.frames)
    assert any("out of the snapshot's time budget" in n for n in late.notes), late.notes
    # AND in time, the same reader reads them
    (frame,) = [f for th in in_time.threads for f in th.frames if f.function == "handle_request"]
    assert frame.locals is not None and frame.locals["count"] == "4242"
