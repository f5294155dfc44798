"""The HTML flamegraph encoder: the embedded trie is the profile, and the page is self-contained.

The browser side (rendering, search, zoom) is tested in tests/integration/test_html_browser.py.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict
from typing import Tuple

import pytest

from hostprof.encoders import html
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from tests._flame_profiles import MAIN
from tests._flame_profiles import sample_profile as _sample_profile


def sample_profile() -> Profile:
    return _sample_profile(prefix_stack=True)


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="hostprof-data">(.*?)</script>', page, re.S)
    assert m, "the page has no embedded data"
    return json.loads(m.group(1))


def decode_trie(
    doc: dict,
) -> Dict[Tuple[Tuple[Frame, ...], Tuple[Tuple[str, str], ...]], Tuple[int, ...]]:
    """Rebuilds {(stack, labels): values} from the embedded trie, as the page's script does."""
    fr = doc["frames"]
    frames = [
        Frame(name, fr["files"][fr["file"][i]], fr["line"][i], FrameKind(fr["kind"][i]))
        for i, name in enumerate(fr["names"])
    ]
    parent = [-1]
    frame_of = [-1]
    p = 0
    for delta, f in zip(doc["nodes"]["parentDelta"], doc["nodes"]["frame"]):
        p += delta
        assert delta >= 0
        parent.append(p)
        frame_of.append(f)

    def stack(node: int) -> Tuple[Frame, ...]:
        out = []
        while node > 0:
            out.append(frames[frame_of[node]])
            node = parent[node]
        return tuple(reversed(out))

    rows = doc["rows"]
    result = {}
    for r, node in enumerate(rows["node"]):
        labels = tuple(sorted(doc["labelSets"][rows["labels"][r]].items()))
        key = (stack(node), labels)
        values = tuple(col[r] for col in rows["values"])
        assert key not in result
        result[key] = values
    return result


def test_embedded_trie_holds_exactly_the_profile() -> None:
    # GIVEN a profile with several threads, kinds, sample types and a prefix stack
    profile = sample_profile()
    # WHEN it is written as HTML
    buf = io.BytesIO()
    html.write(profile, buf)
    doc = embedded(buf.getvalue().decode())
    # THEN the embedded trie decodes to the same samples, frames and labels
    assert decode_trie(doc) == profile.to_dict()
    assert [t["type"] for t in doc["sampleTypes"]] == ["cpu", "samples"]
    assert [t["total"] for t in doc["sampleTypes"]] == list(profile.totals())


def test_siblings_are_contiguous_and_sorted_by_name() -> None:
    doc = html.build_document(sample_profile())
    names = doc["frames"]["names"]
    parent = 0
    children: Dict[int, list] = {}
    for i, (delta, f) in enumerate(zip(doc["nodes"]["parentDelta"], doc["nodes"]["frame"]), 1):
        parent += delta
        children.setdefault(parent, []).append((i, names[f]))
    for kids in children.values():
        ids = [i for i, _ in kids]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert [n for _, n in kids] == sorted(n for _, n in kids)


def test_file_size_follows_distinct_stacks_not_samples() -> None:
    # GIVEN the same 200 distinct stacks with few samples and with a million times more
    def build(scale: int, n: int = 200) -> Profile:
        p = Profile([SAMPLES])
        for i in range(n):
            p.add([MAIN, Frame(f"f{i % 17}", "m.py", i % 17), Frame(f"g{i}", "m.py", i)], [scale])
        return p

    small = len(html.render(build(1)))
    many = len(html.render(build(1_000_000)))
    wider = len(html.render(build(1, 2000)))
    # THEN more samples cost only the extra digits; more distinct stacks grow the file
    assert many - small < 200 * 7
    assert wider - small > 10 * (many - small)


def test_page_is_self_contained() -> None:
    page = html.render(sample_profile())
    assert page.startswith("<!doctype html>")
    lowered = page.lower()
    for needle in (
        "http://",
        "https://",
        "<link",
        "@import",
        " src=",
        "//cdn",
        "fetch(",
        "xmlhttprequest",
    ):
        assert needle not in lowered, needle
    assert "HostprofFlamegraph" in page  # the renderer is inlined, not referenced


def test_script_breaking_names_are_escaped() -> None:
    # GIVEN function names that would end the <script> element or open a comment
    p = Profile([SAMPLES])
    evil = Frame("</script><script>alert(1)</script>", "x.py", 1)
    p.add([evil, Frame("<!--", "y.py", 2)], [3])
    page = html.render(p, title="</title><b>x</b>")
    # THEN the data block still parses and holds the names verbatim
    assert page.count("</script>") == 3  # data, renderer, page script
    doc = embedded(page)
    assert sorted(doc["frames"]["names"]) == ["<!--", "</script><script>alert(1)</script>"]
    assert "<title>&lt;/title&gt;&lt;b&gt;x&lt;/b&gt;</title>" in page


def test_sample_type_picks_the_initial_view() -> None:
    doc = html.build_document(sample_profile(), sample_type="samples")
    assert doc["defaultType"] == 1
    with pytest.raises(KeyError):
        html.build_document(sample_profile(), sample_type="wall")


def test_empty_profile_still_writes_a_page() -> None:
    doc = embedded(html.render(Profile([SAMPLES])))
    assert doc["rows"]["node"] == []
    assert doc["nodes"]["frame"] == []


def test_convert_writes_html(tmp_path: Path) -> None:
    # GIVEN a folded file, WHEN `hostprof convert` writes .html, THEN it embeds those stacks
    src = tmp_path / "in.folded"
    src.write_text("main (app.py:1);work (app.py:5) 42\nmain (app.py:1);memcpy [libc.so.6] 8\n")
    out = tmp_path / "out.html"
    proc = subprocess.run(
        [sys.executable, "-m", "hostprof", "convert", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = embedded(out.read_text())
    assert sorted(doc["frames"]["names"]) == ["main", "memcpy", "work"]
    assert doc["sampleTypes"][0]["total"] == 50
