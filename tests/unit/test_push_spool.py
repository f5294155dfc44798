"""The spool: atomic records, oldest first, bounded with counted drops, SIGKILL-safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hostprof.push import PushBatch
from hostprof.push import Series
from hostprof.push.spool import Spool


def _batch(i: int, size: int = 100) -> PushBatch:
    return PushBatch(
        batch_id=f"b{i:04d}",
        start_ns=1_700_000_000_000_000_000 + i * 10**10,
        duration_ns=10**10,
        series=(
            Series(
                (("__name__", "process_cpu"), ("service_name", "s")), os.urandom(size), f"id{i}"
            ),
        ),
    )


def test_roundtrip_and_oldest_first(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 10**7)
    for i in (3, 1, 2):
        spool.put(_batch(i))
    assert len(spool) == 3
    seen = []
    while (item := spool.oldest()) is not None:
        name, batch = item
        seen.append(batch.batch_id)
        assert batch == _batch(int(batch.batch_id[1:])) or batch.series[0].sample_id
        spool.remove(name)
    assert seen == ["b0001", "b0002", "b0003"]
    assert os.listdir(tmp_path) == []


def test_same_batch_twice_is_one_record(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 10**7)
    spool.put(_batch(1))
    spool.put(_batch(1))
    assert len(spool) == 1
    assert len(Spool(str(tmp_path), 10**7)) == 1


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    one = len(_batch(0, 1000).to_bytes()) + 16
    spool = Spool(str(tmp_path), one * 3 + 10)
    for i in range(5):
        spool.put(_batch(i, 1000))
    assert len(spool) == 3
    assert spool.dropped == 2
    assert spool.size_bytes <= spool.max_bytes
    assert [spool.oldest()[1].batch_id] == ["b0002"]


def test_torn_record_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 10**7)
    spool.put(_batch(1))
    spool.put(_batch(2))
    first = sorted(os.listdir(tmp_path))[0]
    data = (tmp_path / first).read_bytes()
    (tmp_path / first).write_bytes(data[: len(data) // 2])  # a torn file under the final name
    reopened = Spool(str(tmp_path), 10**7)
    _name, batch = reopened.oldest()
    assert batch.batch_id == "b0002"
    assert reopened.corrupt == 1


WRITER = textwrap.dedent(
    """
    import os, sys
    from hostprof.push import PushBatch, Series
    from hostprof.push.spool import Spool
    spool = Spool(sys.argv[1], 10**9)
    i = int(sys.argv[2])
    print("READY", flush=True)
    while True:
        payload = bytes([i % 251]) * 400_000
        spool.put(PushBatch(f"w{i:06d}", i, 10, (Series((("k", "v"),), payload, f"s{i}"),)))
        i += 1
    """
)


def test_sigkill_mid_write_leaves_nothing_partial_and_no_duplicates(tmp_path: Path) -> None:
    # GIVEN a writer that spools 400 kB records slowly (chunks with sleeps between them)
    env = dict(os.environ, HOSTPROF_TEST_SPOOL_WRITE_DELAY_S="0.01")
    partial_seen = 0
    start = 0
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout.readline().startswith(b"READY")
        # WHEN it is SIGKILLed at an arbitrary point of a write
        time.sleep(0.15 + 0.11 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        partial_seen += sum(n.startswith(".tmp-") for n in os.listdir(tmp_path))
        # THEN reopening discards the partial write and every record reads back whole
        spool = Spool(str(tmp_path), 10**9)
        assert not any(n.startswith(".tmp-") for n in os.listdir(tmp_path))
        ids = []
        for name in spool.names():
            batch = spool._read(name)
            assert batch is not None, f"{name} unreadable"
            payload = batch.series[0].profile
            i = int(batch.batch_id[1:])
            assert payload == bytes([i % 251]) * 400_000
            ids.append(i)
        assert len(ids) == len(set(ids))
        start = max(ids) + 1 if ids else start
    assert partial_seen >= 3, "the kills should have landed mid-write"
    assert len(Spool(str(tmp_path), 10**9)) >= 6


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a full file system")
def test_put_on_full_disk_raises_oserror(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount tmpfs")
    try:
        spool = Spool(str(mnt), 10**9)
        with pytest.raises(OSError):
            spool.put(_batch(1, 200_000))
        assert not os.listdir(mnt)
    finally:
        subprocess.run(["umount", str(mnt)])
