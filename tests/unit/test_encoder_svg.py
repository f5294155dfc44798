"""The standalone SVG flamegraph: valid SVG, widths proportional to values, one sample type."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict

import pytest

from hostprof import encoders
from hostprof.encoders import svg
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import Profile
from tests.unit.test_encoder_html import sample_profile

NS = {"s": "http://www.w3.org/2000/svg"}


def frames_of(doc: str) -> Dict[str, list]:
    """{function: [(depth, x, width, fill, title), ...]} of the drawn frames."""
    root = ET.fromstring(doc.encode())
    out: Dict[str, list] = {}
    for g in root.iterfind(".//s:g[@class='f']", NS):
        rect = g.find("s:rect", NS)
        title = g.find("s:title", NS).text
        out.setdefault(g.get("data-n"), []).append(
            (
                int(g.get("data-d")),
                float(rect.get("x")),
                float(rect.get("width")),
                rect.get("fill"),
                title,
            )
        )
    return out


def test_widths_follow_values_and_parse_as_svg() -> None:
    # GIVEN the sample profile (cpu: 1304 in all, work_hard 1100 of it, memcpy 100 below)
    doc = svg.render(sample_profile())
    frames = frames_of(doc)
    usable = svg.WIDTH - 2 * svg.PAD
    ((d_all, x_all, w_all, _f, _t),) = frames["all"]
    ((d_work, x_work, w_work, _f, title),) = frames["work_hard"]
    ((d_mem, x_mem, w_mem, _f, _t),) = frames["memcpy"]
    # THEN widths are the values' shares, children sit inside their parents, depth grows
    assert (d_all, x_all, w_all) == (0, svg.PAD, pytest.approx(usable))
    assert w_work == pytest.approx(usable * 1100 / 1304, abs=0.01)
    assert w_mem == pytest.approx(usable * 100 / 1304, abs=0.01)
    assert x_work <= x_mem and x_mem + w_mem <= x_work + w_work + 0.01
    assert (d_work, d_mem) == (3, 4)
    assert title == "work_hard (app.py:20) — 1.10 µs (84.36%), self 1.00 µs"
    # siblings in name order, left to right
    order = sorted(("<gc gen=2>", "idle_wait", "work_hard"), key=lambda n: frames[n][0][1])
    assert order == ["<gc gen=2>", "idle_wait", "work_hard"]


def test_second_sample_type_and_kind_colours() -> None:
    doc = svg.render(sample_profile(), sample_type="samples")
    frames = frames_of(doc)
    assert frames["work_hard"][0][4].startswith("work_hard (app.py:20) — 110 (83.97%)")
    hue = {
        n: float(re.match(r"hsl\(([\d.]+)", frames[n][0][3]).group(1))
        for n in ("work_hard", "memcpy", "do_syscall_64", "<gc gen=2>")
    }
    assert 22 <= hue["work_hard"] <= 52 and hue["memcpy"] <= 18
    assert 190 <= hue["do_syscall_64"] <= 222 and 255 <= hue["<gc gen=2>"] <= 285


def test_tiny_frames_are_left_out() -> None:
    p = Profile([SAMPLES])
    p.add([Frame("big", "a.py", 1)], [10_000_000])
    p.add([Frame("tiny", "a.py", 2)], [1])
    frames = frames_of(svg.render(p))
    assert "big" in frames and "tiny" not in frames


def test_names_are_escaped() -> None:
    p = Profile([SAMPLES])
    p.add([Frame('a<b>&"c', "x.py", 1), Frame("]]></script>", "y.py", 2)], [5])
    frames = frames_of(svg.render(p, title="<t>"))
    assert set(frames) == {"all", 'a<b>&"c', "]]></script>"}


def test_svg_extension_selects_svg(tmp_path: Path) -> None:
    assert encoders.format_for_path("flame.svg") == "svg"
    src = tmp_path / "in.folded"
    # A folded file may start with "<" (a marker or <module>): still folded, not markup.
    src.write_text("<module> (app.py:1);work (app.py:5) 42\n<gc> 3\n")
    out = tmp_path / "out.svg"
    proc = subprocess.run(
        [sys.executable, "-m", "hostprof", "convert", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    frames = frames_of(out.read_text())
    assert {"<module>", "work", "<gc>"} <= set(frames)
    buf = io.BytesIO()
    svg.write(sample_profile(), buf)
    assert buf.getvalue().startswith(b'<?xml version="1.0"')
