"""The HTML flamegraph in real headless Chromium: it renders, searches, zooms and resets.

Assertions read the canvas pixels and the renderer's record of drawn frames; screenshots go to
the artifacts folder (artifacts/html-*.png).
"""

from __future__ import annotations

import colorsys
import io
import random
import time
from pathlib import Path
from typing import Any
from typing import Dict
from typing import Iterator

import numpy as np
import pytest

from hostprof.encoders import html
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from tests._browser import Browser
from tests._browser import Page
from tests._browser import browser
from tests._flame_profiles import sample_profile as _sample_profile
from tests.conftest import require_tool

pytestmark = pytest.mark.browser


def sample_profile() -> Profile:
    return _sample_profile(prefix_stack=False)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    require_tool("chromium")
    with browser(width=1400, height=900) as b:
        yield b


def open_page(chromium: Browser, path: Path) -> Page:
    page = chromium.new_page()
    page.navigate(path.as_uri())
    page.wait_for(
        "window.hostprofFlamegraph && hostprofFlamegraph.drawn.length > 0", message="first render"
    )
    return page


def frame(page: Page, name: str) -> Dict[str, Any]:
    """The drawn rectangle of the first frame called ``name``, in viewport coordinates."""
    found = page.evaluate(
        f"""(() => {{
          const fg = hostprofFlamegraph;
          const f = fg.drawn.find(d => d.name === {name!r});
          if (!f) return null;
          const r = fg.canvas.getBoundingClientRect();
          return Object.assign({{cx: r.left + f.x + f.w / 2, cy: r.top + f.y + f.h / 2,
                                 width: fg.canvas.clientWidth}}, f);
        }})()"""
    )
    assert found, (
        f"{name} is not drawn; drawn: {page.evaluate('hostprofFlamegraph.drawn.map(d => d.name)')}"
    )
    return found


def pixel(page: Page, f: Dict[str, Any]) -> list:
    """RGBA of the canvas pixel a few px inside a frame's left edge (clear of its label)."""
    return page.evaluate(
        f"""Array.from(hostprofFlamegraph.canvas.getContext('2d')
              .getImageData({int(f["x"]) + 2}, {int(f["y"]) + 2}, 1, 1).data)"""
    )


def hue(rgba: list) -> float:
    """The HSL hue (degrees) of an RGBA pixel."""
    h, _l, _s = colorsys.rgb_to_hls(*(c / 255 for c in rgba[:3]))
    return h * 360


def is_grey(rgba: list) -> bool:
    r, g, b, _a = rgba
    return max(r, g, b) - min(r, g, b) < 30


def test_renders_searches_zooms_and_resets(
    chromium: Browser, tmp_path: Path, artifacts: Path
) -> None:
    # GIVEN a self-contained HTML flamegraph of a known profile
    out = tmp_path / "profile.html"
    with out.open("wb") as f:
        html.write(sample_profile(), f, title="test profile")
    page = open_page(chromium, out)

    # THEN it renders every function, coloured by kind, with nothing fetched from anywhere
    names = set(page.evaluate("hostprofFlamegraph.drawn.map(d => d.name)"))
    assert {
        "<module>",
        "run",
        "work_hard",
        "idle_wait",
        "memcpy",
        "do_syscall_64",
        "<gc gen=2>",
    } <= names
    work = frame(page, "work_hard")
    width = work["width"]
    assert work["w"] == pytest.approx(width * 1100 / 1300, abs=1.5)
    # Python frames are amber/orange, native red/salmon, kernel blue, markers violet
    assert 22 <= hue(pixel(page, work)) <= 52
    assert hue(pixel(page, frame(page, "memcpy"))) <= 18
    assert 190 <= hue(pixel(page, frame(page, "do_syscall_64"))) <= 222
    assert 255 <= hue(pixel(page, frame(page, "<gc gen=2>"))) <= 285
    assert page.evaluate("document.title") == "test profile"
    assert all(u.startswith("file://") for u in page.requests), page.requests
    page.screenshot(artifacts / "html-flamegraph.png")

    # WHEN hovering a frame THEN the tooltip shows its samples, share and location
    page.mouse("mouseMoved", work["cx"], work["cy"])
    tip = page.wait_for(
        "(() => { const t = document.querySelector('.hfg-tooltip');"
        " return !t.hidden && t.innerText; })()",
        message="tooltip",
    )
    assert "work_hard" in tip and "app.py:20" in tip and "84.6%" in tip and "1.10 µs" in tip
    page.screenshot(artifacts / "html-flamegraph-tooltip.png", full_page=False)

    # WHEN searching for a function THEN its frames keep their colour, the rest are dimmed,
    # and the matched share is shown
    page.evaluate("document.getElementById('hp-search').focus()")
    page.type_text("work_hard")
    page.wait_for(
        "document.getElementById('hp-matched').textContent.includes('84.6%')", message="match %"
    )
    assert page.evaluate("hostprofFlamegraph.searchResult.ticks") == 1100
    assert not is_grey(pixel(page, frame(page, "work_hard")))
    assert is_grey(pixel(page, frame(page, "idle_wait")))
    assert frame(page, "work_hard")["matched"] and not frame(page, "idle_wait")["matched"]
    page.screenshot(artifacts / "html-flamegraph-search.png")
    page.evaluate("document.getElementById('hp-search').value = ''")
    page.evaluate("document.getElementById('hp-search').dispatchEvent(new Event('input'))")
    page.wait_for("!hostprofFlamegraph.matched", message="search cleared")

    # WHEN clicking a frame THEN it fills the width, its child scales with it, its siblings go
    work = frame(page, "work_hard")
    page.click(work["cx"], work["cy"])
    page.wait_for("hostprofFlamegraph.zoom !== null", message="zoom")
    zoomed = frame(page, "work_hard")
    assert zoomed["x"] == pytest.approx(0, abs=0.5) and zoomed["w"] == pytest.approx(width, abs=1)
    assert frame(page, "memcpy")["w"] == pytest.approx(width * 100 / 1100, abs=1.5)
    assert frame(page, "run")["w"] == pytest.approx(width, abs=1)  # ancestors span the width
    assert "idle_wait" not in page.evaluate("hostprofFlamegraph.drawn.map(d => d.name)")
    assert page.evaluate("document.getElementById('hp-reset').disabled") is False
    assert "work_hard" in page.evaluate("document.getElementById('hp-crumbs').textContent")
    page.screenshot(artifacts / "html-flamegraph-zoom.png")

    # WHEN pressing reset THEN the whole profile is back
    reset = page.evaluate(
        "(() => { const r = document.getElementById('hp-reset').getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    page.click(*reset)
    page.wait_for("hostprofFlamegraph.zoom === null", message="reset")
    assert frame(page, "work_hard")["w"] == pytest.approx(width * 1100 / 1300, abs=1.5)
    assert "idle_wait" in page.evaluate("hostprofFlamegraph.drawn.map(d => d.name)")
    assert page.errors == []


def test_thread_and_sample_type_views(chromium: Browser, tmp_path: Path, artifacts: Path) -> None:
    out = tmp_path / "threads.html"
    out.write_text(html.render(sample_profile()))
    page = open_page(chromium, out)

    def choose(select_id: str, value: str) -> None:
        page.evaluate(
            f"(() => {{ const s = document.getElementById({select_id!r}); s.value = {value!r};"
            " s.dispatchEvent(new Event('change')); })()"
        )

    # GIVEN the merged view of both threads
    assert page.evaluate("hostprofFlamegraph.numTicks") == 1300
    options = page.evaluate(
        "Array.from(document.querySelectorAll('#hp-thread option')).map(o => o.textContent)"
    )
    assert options[:2] == ["All threads, merged", "All threads, one root per thread"]
    assert any(o.startswith("worker-1 (101)") for o in options)
    # WHEN one thread is picked THEN only its samples are shown
    worker = page.evaluate(
        "Array.from(document.querySelectorAll('#hp-thread option'))"
        ".find(o => o.textContent.startsWith('worker-1')).value"
    )
    choose("hp-thread", worker)
    assert page.evaluate("hostprofFlamegraph.numTicks") == 500
    assert "memcpy" not in page.evaluate("hostprofFlamegraph.drawn.map(d => d.name)")
    # WHEN split per thread THEN each thread is a root frame of its own
    choose("hp-thread", "split")
    level1 = page.evaluate(
        "hostprofFlamegraph.drawn.filter(d => d.level === 1).map(d => [d.name, Math.round(d.w)])"
    )
    assert [n for n, _ in level1] == ["thread: MainThread (100)", "thread: worker-1 (101)"]
    page.screenshot(artifacts / "html-flamegraph-threads.png")
    # WHEN the sample type changes THEN the values are that type's
    assert page.evaluate("document.getElementById('hp-type-field').hidden") is False
    choose("hp-type", "1")
    assert page.evaluate("hostprofFlamegraph.numTicks") == 130
    assert page.errors == []


def big_profile(n_stacks: int, seed: int = 7) -> Profile:
    """``n_stacks`` distinct stacks 8-40 deep over 3,400 functions, 8 threads."""
    rng = random.Random(seed)
    p = Profile([SAMPLES])
    funcs = [
        Frame(f"mod{i % 50}.func_{i}", f"pkg/mod{i % 50}.py", i % 400 + 1) for i in range(3000)
    ]
    funcs += [Frame(f"native_{i}", "libfoo.so", 0, FrameKind.NATIVE) for i in range(300)]
    funcs += [Frame(f"kern_{i}", "", 0, FrameKind.KERNEL) for i in range(100)]
    ids: list = []
    offsets = [0]
    for _ in range(n_stacks):
        depth = rng.randint(8, 40)
        stack = [0, 1 + rng.randrange(5)]
        while len(stack) < depth:
            if len(stack) > 6:
                stack.append(rng.randrange(len(funcs)))
            else:
                stack.append((stack[-1] * 7 + rng.randrange(3)) % 200)
        ids.extend(stack)
        offsets.append(len(ids))
    remap = p.frames.intern_all(funcs)
    labels = np.array(
        [
            p.labels.intern({"thread_id": str(100 + i % 8), "thread_name": f"worker-{i % 8}"})
            for i in range(8)
        ],
        dtype=np.uint32,
    )
    p.add_batch(
        np.array(ids, dtype=np.uint32),
        np.array(offsets, dtype=np.int64),
        np.array([rng.randint(1, 100) for _ in range(n_stacks)], dtype=np.int64),
        labels[np.arange(n_stacks) % 8],
        remap,
    )
    return p


def test_100k_distinct_stacks_stay_usable(
    chromium: Browser, tmp_path: Path, artifacts: Path
) -> None:
    # GIVEN a profile of 100,000 distinct stacks
    profile = big_profile(100_000)
    buf = io.BytesIO()
    html.write(profile, buf)
    out = tmp_path / "big.html"
    out.write_bytes(buf.getvalue())
    # WHEN it is opened
    started = time.monotonic()
    page = open_page(chromium, out)
    load_s = time.monotonic() - started
    # THEN the renderer culls sub-pixel frames instead of drawing every node, and search and
    # zoom still work on the whole tree
    nodes = page.evaluate("hostprofFlamegraph.model.nodes")
    drawn = page.evaluate("hostprofFlamegraph.drawn.length")
    assert nodes > 1_000_000 and 0 < drawn < nodes / 20
    result = page.evaluate("hostprofFlamegraph.search('func_1234')")
    assert result["frames"] > 0 and 0 < result["percent"] < 100
    page.evaluate("hostprofFlamegraph.search('')")
    target = page.evaluate(
        "hostprofFlamegraph.drawn.filter(d => d.level === 6).sort((a, b) => b.w - a.w)[0]"
    )
    deep_before = page.evaluate("hostprofFlamegraph.drawn.filter(d => d.level > 8).length")
    page.evaluate(f"hostprofFlamegraph.zoomTo({target['level']}, {target['index']})")
    zoomed = page.evaluate("hostprofFlamegraph.drawn.find(d => d.level === 6)")
    assert zoomed["name"] == target["name"]
    assert zoomed["x"] == pytest.approx(0, abs=0.5)
    assert zoomed["w"] == pytest.approx(
        page.evaluate("hostprofFlamegraph.canvas.clientWidth"), abs=1
    )
    # Zooming in reveals deep frames that were sub-pixel before.
    assert page.evaluate("hostprofFlamegraph.drawn.filter(d => d.level > 8).length") > deep_before
    page.evaluate("hostprofFlamegraph.reset()")
    page.screenshot(artifacts / "html-flamegraph-100k.png", full_page=False)
    render_ms = page.evaluate("hostprofFlamegraph.lastRenderMs")
    print(
        f"100k stacks: {len(buf.getvalue()) / 1e6:.1f} MB, {nodes} nodes, load {load_s:.2f} s, "
        f"render {render_ms:.0f} ms, {drawn} frames drawn"
    )
    assert page.errors == []


def test_svg_zoom_search_reset(chromium: Browser, tmp_path: Path, artifacts: Path) -> None:
    # GIVEN the standalone SVG flamegraph of the known profile
    from hostprof.encoders import svg

    out = tmp_path / "profile.svg"
    out.write_text(svg.render(sample_profile()))
    page = chromium.new_page()
    page.navigate(out.as_uri())
    page.wait_for("window.hp && hp.frames && hp.frames.length > 0", message="svg init")

    def rect(name: str) -> Dict[str, Any]:
        return page.evaluate(
            f"""(() => {{ const g = hp.frames.find(g => g.getAttribute('data-n') === {name!r});
              const r = g.querySelector('rect'); const b = r.getBoundingClientRect();
              return {{x: +r.getAttribute('x'), w: +r.getAttribute('width'),
                       fill: r.getAttribute('fill'),
                       shown: g.style.display !== 'none', cx: b.left + 3, cy: b.top + b.height / 2,
                       label: g.querySelector('text').textContent}}; }})()"""
        )

    usable = svg.WIDTH - 2 * svg.PAD
    assert rect("work_hard")["w"] == pytest.approx(usable * 1100 / 1300, abs=0.05)
    assert rect("work_hard")["label"] == "work_hard"
    page.screenshot(artifacts / "svg-flamegraph.png", full_page=False)

    # WHEN a frame is clicked THEN it fills the width and its sibling disappears
    work = rect("work_hard")
    page.click(work["cx"], work["cy"])
    page.wait_for("hp.zoomed !== null && hp.zoomed !== undefined", message="svg zoom")
    assert rect("work_hard")["w"] == pytest.approx(usable, abs=0.05)
    assert rect("memcpy")["w"] == pytest.approx(usable * 100 / 1100, abs=0.05)
    assert not rect("idle_wait")["shown"]
    assert page.evaluate("document.getElementById('reset').style.display") == ""

    # WHEN "Search" is clicked and a term typed into the prompt THEN matches turn magenta
    page.answer_dialogs("idle|syscall")
    search = page.evaluate(
        "(() => { const b = document.getElementById('search').getBoundingClientRect();"
        " return [b.left + b.width / 2, b.top + b.height / 2]; })()"
    )
    page.click(*search)
    page.wait_for("hp.term === 'idle|syscall'", message="svg search")
    assert page.dialogs and "Search" in page.dialogs[0]
    assert rect("idle_wait")["fill"] == "rgb(224,64,251)"
    assert rect("do_syscall_64")["fill"] == "rgb(224,64,251)"
    assert rect("work_hard")["fill"] != "rgb(224,64,251)"
    # idle_wait and its child do_syscall_64 overlap: 150 of 1300 counted once
    assert page.evaluate("hp.matchedPercent") == pytest.approx(100 * 150 / 1300, abs=0.01)
    assert page.evaluate("document.getElementById('matched').textContent") == "Matched: 11.5%"

    # WHEN "Reset Zoom" is clicked THEN the whole profile is back
    reset = page.evaluate(
        "(() => { const b = document.getElementById('reset').getBoundingClientRect();"
        " return [b.left + b.width / 2, b.top + b.height / 2]; })()"
    )
    page.click(*reset)
    page.wait_for("hp.zoomed === null", message="svg reset")
    assert rect("idle_wait")["shown"]
    assert rect("work_hard")["w"] == pytest.approx(usable * 1100 / 1300, abs=0.05)
    page.screenshot(artifacts / "svg-flamegraph-search.png", full_page=False)
    assert page.errors == []


def test_zoom_survives_a_thread_switch(chromium: Browser, tmp_path: Path) -> None:
    out = tmp_path / "keep.html"
    out.write_text(html.render(sample_profile()))
    page = open_page(chromium, out)
    # GIVEN a zoom on work_hard in the merged view
    work = frame(page, "work_hard")
    page.click(work["cx"], work["cy"])
    page.wait_for("hostprofFlamegraph.zoom !== null", message="zoom")
    # WHEN the view switches to one thread that also runs work_hard
    page.evaluate(
        "(() => { const s = document.getElementById('hp-thread');"
        " s.value = Array.from(s.options).find(o => o.textContent.startsWith('worker-1')).value;"
        " s.dispatchEvent(new Event('change')); })()"
    )
    # THEN work_hard is still the zoomed frame, with that thread's value
    zoomed = page.evaluate(
        "hostprofFlamegraph.node(hostprofFlamegraph.zoom.level, hostprofFlamegraph.zoom.index)"
    )
    assert zoomed["name"] == "work_hard" and zoomed["total"] == 300
    assert frame(page, "work_hard")["w"] == pytest.approx(work["width"], abs=1)
    assert "work_hard" in page.evaluate("document.getElementById('hp-crumbs').textContent")
    # and again for the other thread
    page.evaluate(
        "(() => { const s = document.getElementById('hp-thread');"
        " s.value = Array.from(s.options).find(o => o.textContent.startsWith('MainThread')).value;"
        " s.dispatchEvent(new Event('change')); })()"
    )
    zoomed = page.evaluate(
        "hostprofFlamegraph.node(hostprofFlamegraph.zoom.level, hostprofFlamegraph.zoom.index)"
    )
    assert zoomed["name"] == "work_hard" and zoomed["total"] == 800
    choose_split = (
        "(() => { const s = document.getElementById('hp-thread'); s.value = 'split';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    # WHEN the view changes to one where that call path does not exist (split: a thread frame
    # sits above <module>) THEN the zoom is dropped, not left stale
    page.evaluate(choose_split)
    assert page.evaluate("hostprofFlamegraph.zoom") is None
    assert page.evaluate("document.getElementById('hp-reset').disabled") is True
    assert "Click a frame" in page.evaluate("document.getElementById('hp-crumbs').textContent")
    assert page.errors == []
