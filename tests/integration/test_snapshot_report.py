"""The snapshot's reports as a reader meets them: report.html in headless Chromium (offline),
``snapshot show``, and the archive's shape and size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Tuple

import pytest

from hostprof.snapshot.readers import core_dump_fn
from hostprof.snapshot.readers import find_pyspy
from tests.conftest import require_tool
from tests.utils import target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="reading other processes needs root")

HOSTPROF = [sys.executable, "-m", "hostprof"]

BUSY = """
import threading, time

def crunch_numbers():
    total = 0
    while True:
        for i in range(10000):
            total += i * i

def wait_forever():
    while True:
        time.sleep(0.1)

threading.Thread(target=crunch_numbers, name="cruncher", daemon=True).start()
threading.Thread(target=wait_forever, name="waiter", daemon=True).start()
print("READY", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def busy_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path, int]:
    """One snapshot of a busy process, shared by this module's tests: (archive, top dir, pid)."""
    if core_dump_fn()[0] is None and find_pyspy() is None:
        pytest.skip("neither hostprof's stack reader nor py-spy is available")
    tmp = tmp_path_factory.mktemp("snap")
    out = tmp / "busy.tar.gz"
    with target(BUSY) as t:
        res = subprocess.run(
            [*HOSTPROF, "snapshot", "--pid", str(t.pid), "--profile-seconds", "1", "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert res.returncode == 0, res.stderr
    with tarfile.open(out, "r:gz") as tar:
        tar.extractall(tmp / "x", filter="data")
    (top,) = list((tmp / "x").iterdir())
    return out, top, t.pid


def test_report_html_renders_offline_in_chromium(
    busy_snapshot: Tuple[Path, Path, int], artifacts: Path, tmp_path: Path
) -> None:
    chromium = require_tool("chromium")
    _, top, pid = busy_snapshot
    report = top / "report.html"
    html = report.read_text()
    # GIVEN a report that references nothing outside itself
    for ref in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert ref not in html
    assert "<script" not in html  # readable where scripts are stripped
    # WHEN headless Chromium renders it (no network) and dumps the DOM and a screenshot
    shot = artifacts / "snapshot_report.png"
    if shot.exists():
        shot.unlink()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    res = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    ).stdout
    # THEN the parsed page has the findings first and a drawn flamegraph with the hot function
    assert dom.index('id="findings"') < dom.index('id="flamegraphs"') < dom.index('id="processes"')
    assert dom.count("<rect") >= 3
    assert "crunch_numbers" in dom
    assert f"pid {pid}" in dom
    # PNG header: a real image was produced
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_show_prints_the_summary(busy_snapshot: Tuple[Path, Path, int]) -> None:
    archive, top, _pid = busy_snapshot
    res = subprocess.run(
        [*HOSTPROF, "snapshot", "show", str(archive)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == (top / "summary.md").read_text()
    assert res.stdout.startswith("# hostprof snapshot")
    assert "## Findings" in res.stdout
    assert "`crunch_numbers`" in res.stdout  # the top function table


def test_snapshot_show_rejects_a_non_archive_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.tar.gz"
    bogus.write_text("not an archive")
    res = subprocess.run(
        [*HOSTPROF, "snapshot", "show", str(bogus)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("hostprof: error:") and "not a snapshot archive" in lines[0]
    assert "Traceback" not in res.stderr


def test_archive_is_small_and_complete(busy_snapshot: Tuple[Path, Path, int]) -> None:
    archive, top, pid = busy_snapshot
    names = {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}
    assert {"summary.md", "report.html", "snapshot.json", "stacks.txt"} <= names
    assert "profiles/python.pb.gz" in names
    data = json.loads((top / "snapshot.json").read_text())
    assert data["version"] == 1 and data["kind"] == "hostprof-snapshot"
    (tgt,) = data["targets"]
    assert tgt["pid"] == pid and tgt["status"] == "ok"
    threads = {t["name"] for t in tgt["stacks"]["dumps"][1]["threads"]}
    assert {"cruncher", "waiter", "MainThread"} <= threads
    assert tgt["facts"]["memory"]["uss"] > 0
    assert data["host"]["top"]["by_rss"]
    # kilobytes, not megabytes (the interactive page's scripts are the fixed part)
    assert archive.stat().st_size < 150_000


def test_interactive_flamegraph_of_all_collectors_renders(
    busy_snapshot: Tuple[Path, Path, int], artifacts: Path
) -> None:
    require_tool("chromium")
    from tests._browser import browser

    _, top, _pid = busy_snapshot
    page_path = top / "profiles" / "flamegraph.html"
    if not page_path.exists():
        pytest.skip("the HTML flamegraph encoder is not built")
    with browser(width=1280, height=900) as b:
        page = b.new_page()
        page.navigate(page_path.as_uri())
        page.wait_for(
            "window.hostprofFlamegraph && hostprofFlamegraph.drawn.length > 0",
            message="first render",
        )
        names = page.evaluate("hostprofFlamegraph.drawn.map(d => d.name)")
        page.screenshot(artifacts / "snapshot_flamegraph.png")
        # The combined page opens on the Python profile; nothing was fetched from the network.
        assert "crunch_numbers" in names
        assert not page.errors, page.errors
        assert all(u.startswith(("file:", "data:", "blob:")) for u in page.requests), page.requests
