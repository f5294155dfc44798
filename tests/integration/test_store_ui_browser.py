"""The store's web UI in real headless Chromium against a real `hostprof store serve`.

Profiles go in through the legacy ``/ingest`` endpoint as folded text; the test then drives the
page the way a user would: pick a service, read the flamegraph, add a label filter, compare two
time ranges. Screenshots go to artifacts/store-ui*.png.
"""

from __future__ import annotations

import colorsys
import contextlib
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator
from typing import Tuple

import pytest

from tests._browser import Browser
from tests._browser import Page
from tests._browser import browser
from tests._browser import wait_http
from tests.conftest import require_tool

pytestmark = pytest.mark.browser

# Window A (20 min ago, env=prod): mostly work_hard. Window B (5 min ago, env=staging): mostly
# idle_wait, plus a new parse_json. At 100 Hz one sample is 10 ms of CPU.
WINDOW_A = (
    "main (app.py:1);run (app.py:5);work_hard (app.py:20) 70\n"
    "main (app.py:1);run (app.py:5);idle_wait (app.py:30) 20\n"
    "main (app.py:1);run (app.py:5);work_hard (app.py:20);memcpy [libc.so.6] 10\n"
)
WINDOW_B = (
    "main (app.py:1);run (app.py:5);work_hard (app.py:20) 20\n"
    "main (app.py:1);run (app.py:5);idle_wait (app.py:30) 70\n"
    "main (app.py:1);run (app.py:5);parse_json (app.py:44);do_syscall_64_[k] 50\n"
)
OTHER = "serve (web.py:3);handle (web.py:9) 40\n"
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingest(base: str, name: str, folded: str, start: int, token: str = "") -> None:
    params = urllib.parse.urlencode(
        {"name": name, "from": start, "until": start + 10, "format": "folded", "sampleRate": 100}
    )
    req = urllib.request.Request(f"{base}/ingest?{params}", data=folded.encode(), method="POST")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@contextlib.contextmanager
def run_store(data: Path, token: str = "") -> Iterator[str]:
    """Runs `hostprof store serve` on a free port; yields its base URL."""
    port = free_port()
    log = open(data / f"store-{port}.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "hostprof", "store", "serve", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--data", str(data / f"db-{port}"), "--log-level", "warning"]
    if token:
        cmd += ["--token", token]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/services", timeout=30, proc=proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, int]]:
    """A real store with two services; yields (base URL, time of window B)."""
    require_tool("chromium")
    with run_store(tmp_path_factory.mktemp("store")) as base:
        now = int(time.time())
        ingest(base, "checkout.cpu{env=prod}", WINDOW_A, now - 1200)
        ingest(base, "checkout.cpu{env=staging}", WINDOW_B, now - 300)
        ingest(base, "api-gateway.cpu{env=prod}", OTHER, now - 600)
        yield base, now - 300


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    require_tool("chromium")
    with browser(width=1400, height=1000) as b:
        yield b


def settled(page: Page, renders: int) -> None:
    page.wait_for(
        f"window.hostprofStore && hostprofStore.renders > {renders} && hostprofStore.loading === 0",
        message="the UI to finish loading",
    )


def drawn_names(page: Page) -> list:
    return page.evaluate("hostprofStore.fg.drawn.map(d => d.name)")


def click_element(page: Page, selector: str) -> None:
    x, y = page.evaluate(
        f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView();"
        " const r = e.getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    page.click(x, y)


def test_pick_a_service_and_see_its_flamegraph(
    store: Tuple[str, int], chromium: Browser, artifacts: Path
) -> None:
    base, _ = store
    page = chromium.new_page()
    # GIVEN the UI at the store's root
    page.navigate(base + "/")
    settled(page, 0)
    services = page.evaluate(
        "Array.from(document.querySelectorAll('#st-services li')).map(l => l.dataset.service)"
    )
    assert services == ["api-gateway", "checkout"]

    # WHEN the user clicks the checkout service
    before = page.evaluate("hostprofStore.renders")
    click_element(page, "#st-services li[data-service='checkout']")
    settled(page, before)

    # THEN its CPU flamegraph shows the functions from both windows, with real totals
    assert page.evaluate("hostprofStore.state.type") == CPU
    names = drawn_names(page)
    for fn in ("main", "run", "work_hard", "idle_wait", "parse_json", "memcpy", "do_syscall_64"):
        assert fn in names, (fn, names)
    assert "handle" not in names
    assert page.evaluate("hostprofStore.fg.numTicks") == 240 * 10_000_000  # 240 samples at 100 Hz
    work = page.evaluate("hostprofStore.fg.drawn.find(d => d.name === 'work_hard')")
    width = page.evaluate("hostprofStore.fg.canvas.clientWidth")
    assert work["w"] == pytest.approx(width * 100 / 240, abs=1.5)
    top = page.evaluate(
        "Array.from(document.querySelectorAll('#st-top tbody tr')).map(r => r.innerText)"
    )
    # work_hard and idle_wait both have 90 samples of self time; work_hard's total is larger
    assert top[0].split() == [
        "work_hard",
        "app.py:20",
        "900.00",
        "ms",
        "37.5%",
        "1.00",
        "s",
        "41.7%",
    ]
    assert top[1].startswith("idle_wait")
    # and the timeline has both windows' data
    assert page.evaluate("hostprofStore.timeline.samples.filter(v => v > 0).length") == 2
    assert page.evaluate("document.getElementById('st-summary').innerText").startswith("2.40 s")
    page.screenshot(artifacts / "store-ui.png")

    # WHEN searching THEN the match share is shown
    page.evaluate("document.getElementById('st-search').focus()")
    page.type_text("idle")
    page.wait_for(
        "document.getElementById('st-matched').textContent === 'matched 37.5%'", message="search"
    )

    # WHEN a frame is clicked THEN it is zoomed to the full width
    x, y = page.evaluate(
        "(() => { const fg = hostprofStore.fg;"
        " const f = fg.drawn.find(d => d.name === 'work_hard');"
        " const r = fg.canvas.getBoundingClientRect();"
        " return [r.left + f.x + 3, r.top + f.y + 5]; })()"
    )
    page.click(x, y)
    page.wait_for("hostprofStore.fg.zoom !== null", message="zoom")
    zoomed = page.evaluate("hostprofStore.fg.drawn.find(d => d.name === 'work_hard')")
    assert zoomed["w"] == pytest.approx(width, abs=1)
    assert page.errors == []
    origin = base + "/"
    assert all(u.startswith(origin) or u.startswith("data:") for u in page.requests), page.requests


def test_label_filter_narrows_the_flamegraph(store: Tuple[str, int], chromium: Browser) -> None:
    base, _ = store
    page = chromium.new_page()
    page.navigate(base + "/#service=checkout")
    settled(page, 0)
    # GIVEN the label names of the service's series
    page.wait_for(
        "document.querySelectorAll('#st-filter-name option').length > 1", message="label names"
    )
    names = page.evaluate(
        "Array.from(document.querySelectorAll('#st-filter-name option')).map(o => o.value)"
    )
    assert names == ["", "env"]
    # WHEN the user adds env = prod
    page.evaluate(
        "(() => { const s = document.getElementById('st-filter-name'); s.value = 'env';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    page.wait_for(
        "document.querySelectorAll('#st-filter-values option').length === 2", message="label values"
    )
    values = page.evaluate(
        "Array.from(document.querySelectorAll('#st-filter-values option')).map(o => o.value)"
    )
    assert values == ["prod", "staging"]
    page.evaluate("document.getElementById('st-filter-value').value = 'prod'")
    before = page.evaluate("hostprofStore.renders")
    click_element(page, "#st-filter-add")
    settled(page, before)
    # THEN only window A's samples are left, and the chip and the URL say so
    assert page.evaluate("hostprofStore.query()") == CPU + '{service_name="checkout",env="prod"}'
    assert page.evaluate("hostprofStore.fg.numTicks") == 100 * 10_000_000
    assert "parse_json" not in drawn_names(page)
    assert page.evaluate("document.querySelector('.st-chip').textContent").startswith("env = prod")
    assert "f=env%3Dprod" in page.evaluate("location.hash")
    assert page.errors == []


def test_diff_of_two_time_ranges(
    store: Tuple[str, int], chromium: Browser, artifacts: Path
) -> None:
    base, window_b = store
    page = chromium.new_page()
    page.navigate(base + "/#service=checkout")
    settled(page, 0)
    # WHEN the user switches to the diff and picks window A as baseline, B as comparison
    before = page.evaluate("hostprofStore.renders")
    click_element(page, "#st-mode-diff")
    settled(page, before)
    before = page.evaluate("hostprofStore.renders")
    page.evaluate(
        f"hostprofStore.state.left = {{from: {window_b - 900 - 30}, until: {window_b - 900 + 40}}};"
        " hostprofStore.state.side = 'right';"
        f" hostprofStore.selectTime({window_b - 30}, {window_b + 40})"
    )
    settled(page, before)
    # THEN the flamegraph is a diff: work_hard shrank (green), idle_wait grew (red)
    assert page.evaluate("hostprofStore.fg.format") == "double"
    assert page.evaluate("[hostprofStore.fg.leftTicks, hostprofStore.fg.rightTicks]") == [
        100 * 10_000_000,
        140 * 10_000_000,
    ]

    def rgb(name: str) -> list:
        return page.evaluate(
            f"""(() => {{ const fg = hostprofStore.fg;
              const f = fg.drawn.find(d => d.name === {name!r});
              const px = fg.canvas.getContext('2d').getImageData(f.x + 2, f.y + 2, 1, 1);
              return Array.from(px.data); }})()"""
        )

    r, g, _b, _ = rgb("work_hard")
    assert g > r, "work_hard shrank from 80% to 14%: green"
    r, g, _b, _ = rgb("idle_wait")
    assert r > g, "idle_wait grew from 20% to 50%: red"
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('#st-top tbody tr')).map(r => r.innerText)"
    )
    assert any(row.startswith("idle_wait") and "+30.00 pp" in row for row in rows), rows
    page.screenshot(artifacts / "store-ui-diff.png")
    assert page.errors == []


def test_store_errors_are_shown_not_thrown(store: Tuple[str, int], chromium: Browser) -> None:
    base, _ = store
    page = chromium.new_page()
    # GIVEN a shared link whose label filter is a broken regex
    page.navigate(base + "/#service=checkout&f=env%3D~(")
    # THEN the store's one-line error is shown in the page, and nothing throws
    text = page.wait_for(
        "(() => { const e = document.getElementById('st-error');"
        " return !e.hidden && e.textContent; })()",
        message="the error banner",
    )
    assert "regex" in text
    assert page.errors == []


SDK_SCRIPT = """
import sys, time, pyroscope
pyroscope.configure(application_name="sdk-ui-demo", server_address=sys.argv[1], upload_interval=1)
def crunch_numbers_leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def crunch_numbers_outer(n):
    return sum(crunch_numbers_leaf(2000) for _ in range(n))
t = time.time()
while time.time() - t < 3:
    crunch_numbers_outer(20)
pyroscope.shutdown()
print("DONE", flush=True)
"""


def test_pyroscope_sdk_profile_in_the_ui(
    store: Tuple[str, int], chromium: Browser, tmp_path: Path, artifacts: Path
) -> None:
    pytest.importorskip("pyroscope")
    base, _ = store
    # GIVEN a script profiled by the real pyroscope-io SDK, pushing to the store
    script = tmp_path / "sdk_target.py"
    script.write_text(SDK_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), base], capture_output=True, text=True, timeout=60, check=False
    )
    assert "DONE" in out.stdout, (out.returncode, out.stdout[-500:], out.stderr[-2000:])
    # WHEN its service is opened in the UI
    page = chromium.new_page()
    page.navigate(base + "/#service=sdk-ui-demo")
    settled(page, 0)
    page.wait_for(
        "hostprofStore.fg.drawn.some(d => d.name === 'crunch_numbers_leaf')",
        message="the SDK's function in the flamegraph",
    )
    # THEN its functions are drawn as Python frames (amber, not native red), most time in
    # the leaf (which may sit under more than one caller path)
    leaves = page.evaluate("hostprofStore.fg.drawn.filter(d => d.name === 'crunch_numbers_leaf')")
    width = page.evaluate("hostprofStore.fg.canvas.clientWidth")
    assert sum(f["w"] for f in leaves) > 0.5 * width, (leaves, drawn_names(page))
    leaf = max(leaves, key=lambda f: f["w"])
    rgba = page.evaluate(
        f"Array.from(hostprofStore.fg.canvas.getContext('2d')"
        f".getImageData({leaf['x'] + 2}, {leaf['y'] + 2}, 1, 1).data)"
    )
    h, _l, _s = colorsys.rgb_to_hls(*(c / 255 for c in rgba[:3]))
    assert 22 <= h * 360 <= 52, rgba
    page.screenshot(artifacts / "store-ui-sdk.png")
    assert page.errors == []


def test_token_protected_store(chromium: Browser, tmp_path: Path) -> None:
    # GIVEN a store that needs a token, opened the way a browser user would after the login
    # prompt: credentials in the URL (basic auth, any user name, the token as password)
    with run_store(tmp_path, token="s3cret") as base:
        ingest(base, "secure-app.cpu", WINDOW_A, int(time.time()) - 120, token="s3cret")
        page = chromium.new_page()
        page.navigate(base.replace("http://", "http://ops:s3cret@") + "/")
        settled(page, 0)
        # THEN the UI's own requests are authorised too, and the profile is drawn
        assert page.evaluate("document.getElementById('st-error').hidden") is True
        assert "work_hard" in drawn_names(page)
        assert page.errors == []


def test_drag_on_the_timeline_picks_a_time_range(
    store: Tuple[str, int], chromium: Browser, artifacts: Path
) -> None:
    base, window_b = store
    page = chromium.new_page()
    page.navigate(base + "/#service=checkout")
    settled(page, 0)
    # GIVEN the last hour's timeline, with window A (20 min ago) and window B (5 min ago)
    box = page.evaluate(
        "(() => { const r = document.getElementById('st-timeline').getBoundingClientRect();"
        " return {left: r.left, top: r.top, width: r.width, height: r.height,"
        " from: hostprofStore.state.from, until: hostprofStore.state.until}; })()"
    )

    def x_of(t: float) -> float:
        return box["left"] + (t - box["from"]) / (box["until"] - box["from"]) * box["width"]

    # WHEN the user drags across window B only
    y = box["top"] + box["height"] / 3
    before = page.evaluate("hostprofStore.renders")
    page.mouse("mouseMoved", x_of(window_b - 120), y)
    page.mouse("mousePressed", x_of(window_b - 120), y, "left", 1)
    page.mouse("mouseMoved", x_of(window_b), y, "left")
    page.mouse("mouseMoved", x_of(window_b + 120), y, "left")
    page.mouse("mouseReleased", x_of(window_b + 120), y, "left", 1)
    settled(page, before)
    # THEN the range is that span, and only window B's samples are drawn
    st = page.evaluate("hostprofStore.state")
    assert st["range"] == "custom"
    assert abs(st["from"] - (window_b - 120)) < 15 and abs(st["until"] - (window_b + 120)) < 15
    assert page.evaluate("hostprofStore.fg.numTicks") == 140 * 10_000_000
    assert "memcpy" not in drawn_names(page) and "parse_json" in drawn_names(page)
    assert page.evaluate("document.getElementById('st-range').value") == "custom"
    page.screenshot(artifacts / "store-ui-range.png")
    assert page.errors == []


def test_diff_of_two_label_values(
    store: Tuple[str, int], chromium: Browser, artifacts: Path
) -> None:
    base, _ = store
    page = chromium.new_page()
    # GIVEN the diff view comparing two values of a label (a shared link)
    page.navigate(base + "/#service=checkout&mode=diff&by=label")
    settled(page, 0)
    page.wait_for("hostprofStore.fg.format === 'double'", message="the label diff")
    # THEN the first label and its first two values are compared over the whole range
    st = page.evaluate("hostprofStore.state")
    assert (st["diffLabel"], st["leftValue"], st["rightValue"]) == ("env", "prod", "staging")
    assert page.evaluate("[hostprofStore.fg.leftTicks, hostprofStore.fg.rightTicks]") == [
        100 * 10_000_000,
        140 * 10_000_000,
    ]
    assert "lv=prod" in page.evaluate("location.hash")
    summary = page.evaluate("document.getElementById('st-summary').innerText")
    assert summary.startswith("env=prod 1.00 s → env=staging 1.40 s"), summary
    # WHEN the user swaps the sides THEN the colours swap: work_hard grew from staging to prod
    before = page.evaluate("hostprofStore.renders")
    page.evaluate(
        "(() => { const l = document.getElementById('st-diff-left'); l.value = 'staging';"
        " l.dispatchEvent(new Event('change')); })()"
    )
    settled(page, before)
    before = page.evaluate("hostprofStore.renders")
    page.evaluate(
        "(() => { const r = document.getElementById('st-diff-right'); r.value = 'prod';"
        " r.dispatchEvent(new Event('change')); })()"
    )
    settled(page, before)
    assert page.evaluate("[hostprofStore.fg.leftTicks, hostprofStore.fg.rightTicks]") == [
        140 * 10_000_000,
        100 * 10_000_000,
    ]
    f = page.evaluate("hostprofStore.fg.drawn.find(d => d.name === 'work_hard')")
    r, g, _b, _a = page.evaluate(
        f"Array.from(hostprofStore.fg.canvas.getContext('2d')"
        f".getImageData({f['x'] + 2}, {f['y'] + 2}, 1, 1).data)"
    )
    assert r > g, "work_hard: 14% of staging, 80% of prod: red"
    page.screenshot(artifacts / "store-ui-diff-labels.png")
    assert page.errors == []


def test_empty_store_explains_itself(chromium: Browser, tmp_path: Path) -> None:
    # GIVEN a store nothing has been sent to yet
    with run_store(tmp_path) as base:
        page = chromium.new_page()
        page.navigate(base + "/")
        settled(page, 0)
        # THEN the page says how to send profiles, draws no flamegraph, and shows no error
        hint = page.evaluate("document.querySelector('#st-services .st-empty-item').textContent")
        assert "/ingest" in hint
        assert page.evaluate("document.querySelector('.hfg-empty').hidden") is False
        assert page.evaluate("document.getElementById('st-error').hidden") is True
        assert page.errors == []


def test_many_services_get_a_filter_box(chromium: Browser, tmp_path: Path) -> None:
    with run_store(tmp_path) as base:
        now = int(time.time())
        for i in range(9):
            ingest(base, f"svc-{i}.cpu", OTHER, now - 100)
        page = chromium.new_page()
        page.navigate(base + "/")
        settled(page, 0)
        # GIVEN nine services, WHEN the user types into the filter box THEN only matches stay
        assert page.evaluate("document.getElementById('st-service-filter').hidden") is False
        page.evaluate("document.getElementById('st-service-filter').focus()")
        page.type_text("svc-7")
        listed = page.evaluate(
            "Array.from(document.querySelectorAll('#st-services li')).map(l => l.dataset.service)"
        )
        assert listed == ["svc-0", "svc-7"]  # the selected service stays listed
        assert page.errors == []
