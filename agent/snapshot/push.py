"""``snapshot --push URL``: sends the snapshot's profiles to a profile store.

One series per (target, collector), labelled like the agent's windows
(``__name__``, ``service_name``, ``hostname``, ``pid``) plus ``snapshot=<id>`` so the incident's
data can be found as one. The transport is the daemon's connect push sink
(:mod:`hostprof.push.connect`); sample ids are stable, so re-pushing the same archive's data
is dropped by the store as a repeat.
"""

from __future__ import annotations

import re
from typing import Any
from typing import Dict
from typing import List
from typing import Tuple

from hostprof._errors import DependencyError
from hostprof._errors import StorageError
from hostprof._errors import UsageError
from hostprof.encoders import pprof
from hostprof.snapshot.take import Snapshot

PROFILE_NAMES = {
    "python": "process_cpu",
    "cpu": "process_cpu",
    "offcpu": "offcpu",
    "syscalls": "syscalls",
}
"""``__name__`` per collector (Pyroscope's names where it has one)."""

_LABEL_OK = re.compile(r"[^A-Za-z0-9_.\-]")


def service_name(facts: Dict[str, Any]) -> str:
    """A service name for a process: its script or module, else its executable name.

    ``python3 /srv/app/worker.py`` -> ``worker``; ``python -m celery ...`` -> ``celery``.
    """
    cmd = [str(c) for c in facts.get("cmdline") or []]
    name = str(facts.get("name") or "python")
    if len(cmd) >= 3 and cmd[1] == "-m":
        name = cmd[2]
    elif len(cmd) >= 2 and cmd[1].endswith(".py"):
        name = cmd[1].rsplit("/", 1)[-1][: -len(".py")]
    return _LABEL_OK.sub("_", name) or "python"


def build_batch(snap: Snapshot):
    """The :class:`hostprof.push.PushBatch` of this snapshot's profiles."""
    from hostprof.push import PushBatch
    from hostprof.push import Series

    sid = snap.id
    host = str(snap.host.get("hostname") or "")
    series: List = []
    for name, prof in sorted(snap.profile.profiles.items()):
        for pid, part in sorted(prof.split_by("pid").items()):
            if not pid or len(part) == 0:
                continue
            service = service_name(snap.processes.get(int(pid), {}))
            labels: Tuple[Tuple[str, str], ...] = (
                ("__name__", PROFILE_NAMES.get(name, name)),
                ("service_name", service),
                ("hostname", host),
                ("pid", pid),
                ("collector", name),
                ("snapshot", sid),
            )
            raw = pprof.to_message(part.drop_labels("pid")).SerializeToString()
            series.append(Series(labels, raw, f"snapshot-{sid}-{pid}-{name}"))
    return PushBatch(
        batch_id=f"snapshot-{sid}",
        start_ns=snap.profile.start_ns,
        duration_ns=snap.profile.duration_ns,
        series=tuple(series),
    )


def push(snap: Snapshot, url: str, timeout: float = 10.0) -> int:
    """Pushes the profiles to ``url`` (a store base URL); returns the number of series sent.

    Raises:
        UsageError: a malformed URL.
        DependencyError: the push sinks are not built into this hostprof.
        StorageError: the store rejected the push or could not be reached.
    """
    if not re.match(r"^https?://[^/\s]+", url):
        raise UsageError(
            f"bad --push URL {url!r}", "give the store's base URL, e.g. http://127.0.0.1:4040"
        )
    try:
        from hostprof.config import StoreConfig
        from hostprof.push import PushError
        from hostprof.push.connect import ConnectSink
    except ImportError as exc:
        raise DependencyError(
            f"push is not available in this build ({exc})",
            "the archive was written; upload its profiles/*.pb.gz by hand",
        ) from None
    batch = build_batch(snap)
    if not batch.series:
        return 0
    sink = ConnectSink(StoreConfig(url=url.rstrip("/")))
    try:
        sink.send(batch, timeout)
    except PushError as exc:
        raise StorageError(
            f"push to {url} failed: {exc}",
            "the archive was written; push again later or check the store",
        ) from None
    finally:
        sink.close()
    return len(batch.series)
