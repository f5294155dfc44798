"""Writing a snapshot to one .tar.gz, and reading its summary back (``snapshot show``).

Layout inside the archive (one top folder, so extracting never litters)::

    hostprof-snapshot-<host>-<UTC time>/
        summary.md  report.html  snapshot.json  stacks.txt
        profiles/<collector>.pb.gz    pprof (go tool pprof, Pyroscope, hostprof convert)
        profiles/flamegraph.html      interactive flamegraph of all collectors (sample-type
                                      picker), where the HTML encoder exists

Every text file and every profile string passes through the snapshot's redactor just before
it is written, so a secret found anywhere (environment, command line, URL) appears nowhere.
The archive is written to a temporary file and renamed, so a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from typing import Dict
from typing import List
from typing import Optional
from typing import Tuple

import numpy as np

from hostprof._errors import UsageError
from hostprof.encoders import pprof
from hostprof.io import atomic_output
from hostprof.model import Frame
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.snapshot import report
from hostprof.snapshot.redact import Redactor
from hostprof.snapshot.take import Snapshot

MAX_MEMBER = 64 * 1024 * 1024
"""Largest summary.md that ``show`` will read (a guard against odd archives)."""


def default_path(snap: Snapshot) -> str:
    """``hostprof-snapshot-<host>-<YYYYmmddTHHMMSSZ>.tar.gz`` in the current directory."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", str(snap.host.get("hostname") or "host"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(snap.started_ns / 1e9))
    return f"hostprof-snapshot-{host}-{stamp}.tar.gz"


def scrub_profile(profile: Profile, redactor: Redactor) -> Profile:
    """The profile with every frame and label string scrubbed (a copy only if needed)."""
    dirty = any(
        redactor.scrub(s) != s for f in profile.frames for s in (f.function, f.file)
    ) or any(
        redactor.scrub(s) != s
        for i in range(len(profile.labels))
        for kv in profile.labels[i]
        for s in kv
    )
    if not dirty:
        return profile
    out = profile.empty_like()
    out.windows = list(profile.windows)
    for frames, labels, values in profile.items():
        clean = [
            Frame(redactor.scrub(f.function), redactor.scrub(f.file), f.line, f.kind)
            for f in frames
        ]
        out.add(clean, list(values), {redactor.scrub(k): redactor.scrub(v) for k, v in labels})
    return out


def combined_profile(profiles: Dict[str, Profile]) -> Optional[Profile]:
    """All collectors' profiles as one profile with one column per sample type.

    One interactive page then shows every collector through its sample-type picker, so the
    archive carries the flamegraph page's scripts once, not once per collector.
    """
    if not profiles:
        return None
    # Python first: it keeps the plain sample-type names and is the page's first view. A name
    # another collector already used (samples:count, cpu:nanoseconds) gets the collector's
    # name in front, so columns of different collectors are never summed together.
    order = sorted(profiles, key=lambda n: (n != "python", n))
    types: List[SampleType] = []
    columns: Dict[str, List[int]] = {}
    for name in order:
        columns[name] = []
        for st in profiles[name].sample_types:
            taken = {str(t) for t in types}
            if str(st) in taken:
                st = SampleType(f"{name} {st.type}", st.unit)
            types.append(st)
            columns[name].append(len(types) - 1)
    out = Profile(types)
    for name in order:
        prof = profiles[name]
        sids, lids, vals = prof.arrays()
        out.windows.extend(prof.windows)
        if not len(sids):
            continue
        frames, offsets = prof.stacks.export()
        stack_map = out.stacks.intern_many(frames, offsets, out.frames.intern_all(prof.frames))
        label_map = np.fromiter(
            (out.labels.intern(prof.labels[i]) for i in range(len(prof.labels))),
            dtype=np.uint32,
            count=len(prof.labels),
        )
        wide = np.zeros((len(sids), len(types)), dtype=np.int64)
        for j, col in enumerate(columns[name]):
            wide[:, col] = vals[:, j]
        out.add_stacks(stack_map[sids], wide, label_map[lids])
    return out


def _html_flamegraph(profile: Profile, title: str) -> Optional[bytes]:
    """The HTML encoder's interactive flamegraph, or None when that encoder is not built."""
    try:
        from hostprof.encoders import html as html_encoder
    except ImportError:
        return None
    buf = io.BytesIO()
    try:
        html_encoder.write(profile, buf, title=title)
    except TypeError:  # an encoder without a title option
        buf = io.BytesIO()
        html_encoder.write(profile, buf)
    return buf.getvalue()


def render_files(snap: Snapshot) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """Every archive member's bytes by relative path; and the file index for snapshot.json."""
    red = snap.redactor
    files: Dict[str, bytes] = {}
    index: Dict[str, str] = {}
    interactive: Dict[str, str] = {}
    for name, prof in snap.profile.profiles.items():
        clean = scrub_profile(prof, red)
        snap.profile.profiles[name] = clean
        path = f"profiles/{name}.pb.gz"
        files[path] = pprof.encode(clean)
        index[path] = f"pprof profile: {name}"
    combined = combined_profile(snap.profile.profiles)
    page = None
    if combined is not None:
        try:
            page = _html_flamegraph(combined, "hostprof snapshot — all collectors")
        except Exception as exc:  # the report still has its inline SVGs
            snap.unavailable["interactive flamegraph"] = f"HTML encoder failed: {exc}"
    if page is not None:
        hpath = "profiles/flamegraph.html"
        files[hpath] = red.scrub(page.decode("utf-8")).encode("utf-8")
        index[hpath] = "interactive flamegraph of every collector (pick the sample type)"
        interactive = {name: hpath for name in snap.profile.profiles}
    if snap.profile.profiles and not interactive:
        snap.unavailable.setdefault(
            "interactive flamegraphs", "HTML encoder not built into this hostprof"
        )
    index.update(
        {
            "summary.md": "human summary, findings first",
            "report.html": "summary with flamegraphs, offline",
            "stacks.txt": "both dumps of every thread",
            "snapshot.json": "everything, machine-readable",
        }
    )
    files["summary.md"] = red.scrub(report.summary_md(snap)).encode("utf-8")
    files["report.html"] = red.scrub(report.report_html(snap, interactive)).encode("utf-8")
    files["stacks.txt"] = red.scrub(report.stacks_txt(snap)).encode("utf-8")
    text = report.dumps_json(report.snapshot_json(snap, index))
    files["snapshot.json"] = red.scrub_json(text).encode("utf-8")
    return files, index


def write_archive(snap: Snapshot, path: str) -> Tuple[str, int]:
    """Writes the archive atomically; returns (path, size in bytes).

    Raises:
        StorageError: the file cannot be written (nothing partial is left).
    """
    files, _ = render_files(snap)
    top = os.path.basename(path)
    for suffix in (".tar.gz", ".tgz"):
        if top.endswith(suffix):
            top = top[: -len(suffix)]
    # 0600: environments are redacted, but stacks and locals are private too.
    with (
        atomic_output(path, mode=0o600) as raw,
        tarfile.open(fileobj=raw, mode="w:gz", compresslevel=9) as tar,
    ):
        now = time.time()
        for rel in sorted(files, key=_member_order):
            data = files[rel]
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            info.mtime = int(now)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return path, os.path.getsize(path)


def _member_order(rel: str) -> Tuple[int, str]:
    # summary first, so 'tar tzf | head' and 'snapshot show' find it fast.
    first = ["summary.md", "snapshot.json", "report.html", "stacks.txt"]
    return (first.index(rel) if rel in first else len(first), rel)


def read_member(path: str, name: str) -> bytes:
    """Reads ``<top>/<name>`` from a snapshot archive.

    Raises:
        UsageError: not a readable snapshot archive, or the member is missing.
    """
    try:
        tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 (closed by the 'with' below)
    except FileNotFoundError:
        raise UsageError(
            f"no such file: {path}", "give the path of a hostprof snapshot .tar.gz"
        ) from None
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(
            f"{path} is not a snapshot archive ({exc})", "hostprof snapshot writes .tar.gz files"
        ) from None
    with tar:
        candidates: List[tarfile.TarInfo] = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and (m.name == name or m.name.endswith("/" + name))
            and m.name.count("/") <= 1
        ]
        if not candidates:
            raise UsageError(f"{path} has no {name}", "is it a hostprof snapshot archive?")
        member = candidates[0]
        if member.size > MAX_MEMBER:
            raise UsageError(f"{name} in {path} is implausibly large ({member.size} bytes)", "")
        f = tar.extractfile(member)
        assert f is not None
        return f.read()
