"""Encoders: round trips (property-based), merge algebra, speedscope schema, convert CLI."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from hostprof.cli import main as cli_main
from hostprof.encoders import folded
from hostprof.encoders import pprof
from hostprof.encoders import speedscope
from hostprof.model import CPU_NS
from hostprof.model import SAMPLES
from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile

_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=";()[]<> \n"),
    min_size=1,
    max_size=12,
)
_file = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/.", min_size=1, max_size=12)


@st.composite
def frames(draw) -> Frame:
    kind = draw(st.sampled_from(list(FrameKind)))
    name = draw(_name)
    if kind == FrameKind.PYTHON:
        return Frame(name, draw(_file), draw(st.integers(0, 10_000)), kind)
    if kind == FrameKind.NATIVE:
        return Frame(name, draw(st.one_of(st.just(""), _file)), 0, kind)
    if kind == FrameKind.SYNTHETIC:
        return Frame.synthetic(f"<{name}>")
    return Frame(name, "", 0, kind)


@st.composite
def profiles(draw, labelled: bool = True, n_types: int = 1) -> Profile:
    pool = draw(st.lists(frames(), min_size=1, max_size=8, unique=True))
    p = Profile([CPU_NS, SAMPLES][:n_types])
    for _ in range(draw(st.integers(0, 12))):
        stack = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
        values = [draw(st.integers(1, 10**12)) for _ in range(n_types)]
        labels = (
            {"thread_id": str(draw(st.integers(1, 3)))}
            if labelled and draw(st.booleans())
            else None
        )
        p.add(stack, values, labels)
    return p


def _roundtrip(module, p: Profile) -> Profile:
    buf = io.BytesIO()
    module.write(p, buf)
    return module.read(buf.getvalue())


@settings(max_examples=300, deadline=None)
@given(profiles(labelled=False))
def test_folded_roundtrip_is_identity(p: Profile) -> None:
    q = _roundtrip(folded, p)
    assert {k[0]: v for k, v in q.to_dict().items()} == {k[0]: v for k, v in p.to_dict().items()}


@settings(max_examples=300, deadline=None)
@given(profiles(labelled=True, n_types=2))
def test_pprof_roundtrip_is_identity(p: Profile) -> None:
    q = _roundtrip(pprof, p)
    assert q.to_dict() == p.to_dict()
    assert q.sample_types == p.sample_types


@settings(max_examples=200, deadline=None)
@given(profiles(), profiles(), profiles())
def test_merge_is_associative_and_commutative(a: Profile, b: Profile, c: Profile) -> None:
    assert a.merge(b).to_dict() == b.merge(a).to_dict()
    assert a.merge(b).merge(c).to_dict() == a.merge(b.merge(c)).to_dict()
    assert a.merge(b, c).totals() == tuple(
        x + y + z for x, y, z in zip(a.totals(), b.totals(), c.totals())
    )


def test_folded_reads_py_spy_style_and_rejects_garbage() -> None:
    p = folded.read(b"main (app.py:3);work (app.py:10) 7\nmain (app.py:3) 3\n\n")
    assert p.totals() == (10,)
    assert Frame("work", "app.py", 10) in list(p.frames)
    import pytest

    from hostprof._errors import FormatError

    with pytest.raises(FormatError, match="line 1"):
        folded.read(b"no-count-here\n")
    with pytest.raises(FormatError, match="not a number"):
        folded.read(b"a;b x\n")


def test_pprof_rejects_garbage_and_gzip_bombs() -> None:
    import gzip

    import pytest

    from hostprof._errors import FormatError

    with pytest.raises(FormatError):
        pprof.decode(b"\x12\xff\xff\xff")
    bomb = gzip.compress(b"\0" * (8 << 20))
    with pytest.raises(FormatError, match="limit"):
        pprof.decode(bomb, limit=1 << 20)


def test_speedscope_document_follows_the_schema() -> None:
    # Field names and types from speedscope's file-format-schema.json (SampledProfile).
    p = Profile([CPU_NS])
    a, b = Frame("main", "app.py", 1), Frame("deflate", "libz.so.1", 0, FrameKind.NATIVE)
    p.add([a, b], 30, {"thread_id": "7", "thread_name": "MainThread"})
    p.add([a], 10, {"thread_id": "8"})
    buf = io.BytesIO()
    speedscope.write(p, buf)
    doc = json.loads(buf.getvalue())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert isinstance(doc["shared"]["frames"], list)
    for fr in doc["shared"]["frames"]:
        assert isinstance(fr["name"], str)
        assert set(fr) <= {"name", "file", "line", "col"}
    assert len(doc["profiles"]) == 2
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled"
        assert prof["unit"] in {
            "none",
            "nanoseconds",
            "microseconds",
            "milliseconds",
            "seconds",
            "bytes",
        }
        assert len(prof["samples"]) == len(prof["weights"])
        assert prof["endValue"] - prof["startValue"] == sum(prof["weights"])
        for s in prof["samples"]:
            assert all(0 <= i < len(doc["shared"]["frames"]) for i in s)
    names = {p_["name"] for p_ in doc["profiles"]}
    assert names == {"MainThread (7)", "thread 8"}


def test_convert_cli_folded_to_pprof_and_back(tmp_path) -> None:
    src = tmp_path / "in.folded"
    src.write_text("main (app.py:3);work (app.py:10) 7\nmain (app.py:3) 3\n")
    assert cli_main(["convert", str(src), "-o", str(tmp_path / "out.pprof")]) == 0
    assert (
        cli_main(["convert", str(tmp_path / "out.pprof"), "-o", str(tmp_path / "back.folded")]) == 0
    )
    assert (tmp_path / "back.folded").read_text() == (
        "main (app.py:3) 3\nmain (app.py:3);work (app.py:10) 7\n"
    )


def test_convert_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert cli_main(["convert", str(tmp_path / "missing"), "-o", str(tmp_path / "x.pprof")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hostprof: error: cannot read") and "Traceback" not in err
    bad = tmp_path / "bad.folded"
    bad.write_text("oops\n")
    assert cli_main(["convert", str(bad), "-o", str(tmp_path / "x.pprof")]) == 2
    assert cli_main(["convert", str(bad), "-o", str(tmp_path / "x.weird")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
